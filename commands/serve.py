from __future__ import annotations

from typing import Annotated

import typer

from ._output import (
    DeviceOption,
    ModelsDirOption,
    RuntimeOption,
    WorkspaceOption,
    err,
    note,
)


def serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on (loopback by default; 0.0.0.0 exposes it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[str | None, typer.Option(
        envvar="PINSHOP_TOKEN", show_default="generated and printed",
        help="Bearer token that live updates (PATCH /products/ID) need (or $PINSHOP_TOKEN).")
    ] = None,
    model: Annotated[str, typer.Option(
        help="Chat model for POST /chat: a registered name or a .gguf path.")
    ] = "qwen2.5-coder-1.5b",
    workspace: WorkspaceOption = None,
    models_dir: ModelsDirOption = None,
    runtime: RuntimeOption = "auto",
    device: DeviceOption = "auto",
) -> None:
    """Serve the workspace over HTTP with warm models: search, photo match, look-alikes,
    recommendations, a streaming chat, live price and stock updates, and a web page at /.
    API docs at /docs.

    Example: `pinshop serve -w pinshop-demo --port 8000`
    """
    import secrets

    from pinshop_cli.serve import serve as run_server

    generated = not token
    token = token or secrets.token_urlsafe(24)

    def ready(address: str, notes: list[str]) -> None:  # listening, the workspace loaded
        if generated:
            err.print(f"token for live updates: {token}", highlight=False)
        for message in notes:
            note(message)
        err.print(f"serving on {address} (API docs at /docs; Ctrl-C stops)", highlight=False)

    run_server(workspace, token, host, port, model, str(models_dir) if models_dir else None,
               runtime, device, ready)
