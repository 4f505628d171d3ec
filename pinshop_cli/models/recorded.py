"""Which models a workspace was built with: chosen once at ingest, recorded in
workspace.json, and used by every later command (mixing models in one workspace is refused).
Choosing has no side effects; recording is a separate, explicit step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DamagedFileError, ModelMismatchError, PinshopError
from ..workspace.layout import RECORD_AGAIN, Workspace

if TYPE_CHECKING:
    from .base import Embedder


def workspace_embedder(ws: Workspace, requested: str | None = None,
                       models_dir: str | None = None, runtime: str = "auto",
                       device: str = "auto") -> Embedder:
    """The workspace's recorded embedder. `requested` (an ingest's --embedder) is used for
    a new workspace; naming another model than the recorded one is refused. Without a
    request, a workspace with no recorded embedder is an error (nothing ingested yet).
    The runtime is not recorded: torch and fp32 ONNX vectors agree to cosine 0.9999."""
    from .registry import get_embedder

    # An ingest (`requested`) records the models again over a damaged workspace.json.
    recorded = ws.settings(repairing=requested is not None).get("embedder")
    if recorded and requested not in (None, "auto", recorded):
        raise ModelMismatchError(
            f"workspace {ws.root} was built with embedder {recorded!r}; mixing models is "
            f"refused. Use a new workspace (-w) for {requested!r}, or drop --embedder")
    if not recorded and requested is None:
        if not ws.settings_path.exists() and any(ws.embeddings_dir.glob("*/_manifest.json")):
            raise DamagedFileError(ws.settings_path, "missing, while embeddings/ holds "
                                   "vectors", RECORD_AGAIN)
        raise PinshopError(f"workspace {ws.root} has no embeddings yet: run `pinshop ingest`")
    return get_embedder(recorded or requested or "auto", models_dir, runtime, device)


def record_embedder(ws: Workspace, embedder: Embedder) -> None:
    """Write down which embedder built the workspace (the name that rebuilds it)."""
    ws.update_settings(embedder=embedder.source, image_model_id=embedder.image_model_id,
                       text_model_id=embedder.text_model_id, shared_space=embedder.shared_space)
