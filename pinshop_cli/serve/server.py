"""Run the app on uvicorn: one process, the Shop loaded once and kept warm."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from ..shop import Shop


class _Stopped(Exception):
    """SIGTERM arrived: uvicorn has finished the requests in flight and re-raised it."""


def serve(workspace: str | Path | None, token: str, host: str = "127.0.0.1", port: int = 8000,
          chat_model: str = "qwen2.5-coder-1.5b", models_dir: str | None = None,
          runtime: str = "auto", device: str = "auto") -> None:
    """Serve `workspace` until SIGINT or SIGTERM (uvicorn finishes the requests in flight,
    then the Shop lets go of its catalog, indexes and chat workers, its live changes
    folded into catalog.parquet and the price history)."""
    import uvicorn

    from .app import create_app

    with _sigterm_raises(), Shop(workspace, models_dir, runtime, device) as shop:
        shop.match([], text="warm up", top_k=1)  # catalog, text model, index: before requests
        app = create_app(shop, token, chat_model)
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM as an exception, so that the Shop's close runs: uvicorn re-raises the signal
    it caught once it stops serving, and SIGTERM's default action would end the process
    there, the live changes not folded. Only the main thread may set a handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
