"""Run the app on uvicorn: one process, the Shop loaded once and kept warm."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from ..errors import PinshopError
from ..shop import Shop


class _Stopped(Exception):
    """SIGTERM arrived: uvicorn has finished the requests in flight and re-raised it."""


def serve(workspace: str | Path | None, token: str, host: str = "127.0.0.1", port: int = 8000,
          chat_model: str = "qwen2.5-coder-1.5b", models_dir: str | None = None,
          runtime: str = "auto", device: str = "auto",
          ready: Callable[[str, list[str]], None] | None = None) -> None:
    """Serve `workspace` until SIGINT or SIGTERM (uvicorn finishes the requests in flight,
    then the Shop lets go of its catalog, indexes and chat workers, its live changes
    folded into catalog.parquet and the price history). The address is bound and the
    workspace loaded first, so that a port in use or a missing workspace is an error
    before `ready` is called with the address served and notes for the operator (a chat
    model that is not here)."""
    import uvicorn

    from ..retrieval.updates import fold_left_behind
    from .app import create_app

    sock = listen(host, port)
    with sock, _sigterm_raises(), Shop(workspace, models_dir, runtime, device) as shop:
        fold_left_behind(shop.ws)  # a killed server's changes reach the price history now
        shop.match([], text="warm up", top_k=1)  # catalog, text model, index: before requests
        app = create_app(shop, token, chat_model)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10)
        if ready is not None:
            bound_host, bound_port = sock.getsockname()[:2]
            note = chat_model_note(chat_model, models_dir)
            ready(f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:"
                  f"{bound_port}", [note] if note else [])
        uvicorn.Server(config).run(sockets=[sock])


def chat_model_note(name: str, models_dir: str | None = None) -> str | None:
    """Why POST /chat will not answer at once, said when the server starts (a client's
    first chat was the first sign); None when the model is here."""
    from ..models.registry import find_spec, model_status
    from ..models.resolve import offline

    spec = find_spec(name)
    if spec is None:
        path = Path(name).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return None
        return (f"chat model {name!r} is neither registered nor a .gguf file: POST /chat will "
                "answer with an error (see `pinshop models list`)")
    if spec.task != "chat":
        return (f"{spec.name} is a {spec.task} model, not a chat model: POST /chat will "
                "answer with an error")
    if model_status(spec, models_dir).present:
        return None
    chunks = spec.files[0].chunks if spec.files else None
    if chunks is not None and chunks.installed():
        return (f"chat model {spec.name} is not joined yet: the first POST /chat joins it "
                "from its installed packages")
    if offline():
        return (f"chat model {spec.name} is not in the models folder and models are not "
                "fetched offline: POST /chat will answer with an error (`pinshop models "
                f"pull {spec.name}` where the hub is reachable)")
    return f"chat model {spec.name} is not in the models folder: the first POST /chat fetches it"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) (port 0: any free one), or a one-line error."""
    sock = None
    try:
        # IPv6 for an address with colons, as uvicorn decides; a name resolves to IPv4.
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listening now, not when uvicorn starts: connections made after "serving on" queue
        # up, and a second server on the port fails here rather than after announcing.
        sock.listen(2048)
    except (OSError, UnicodeError) as exc:
        if sock is not None:
            sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PinshopError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


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
