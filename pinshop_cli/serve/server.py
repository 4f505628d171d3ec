"""Run the app on uvicorn: one process, the Shop loaded once and kept warm."""

from __future__ import annotations

from pathlib import Path

from ..shop import Shop


def serve(workspace: str | Path | None, token: str, host: str = "127.0.0.1", port: int = 8000,
          chat_model: str = "qwen2.5-coder-1.5b", models_dir: str | None = None,
          runtime: str = "auto", device: str = "auto") -> None:
    """Serve `workspace` until SIGINT or SIGTERM (uvicorn finishes the requests in flight,
    then the Shop lets go of its catalog, indexes and chat workers)."""
    import uvicorn

    from .app import create_app

    with Shop(workspace, models_dir, runtime, device) as shop:
        shop.match([], text="warm up", top_k=1)  # catalog, text model, index: before requests
        app = create_app(shop, token, chat_model)
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
