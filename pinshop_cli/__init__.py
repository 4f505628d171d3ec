"""pinshop: batch shopping-catalog processing as a library.

    from pinshop_cli import (ShoppingAssistant, build_indexes, get_chat_model, ingest,
                             ingest_events, match, recommend)
    ingest("ws", "catalog.csv", pins="photos/")
    build_indexes("ws")
    result = match(["photo.jpg"], workspace="ws", top_k=5)
    ingest_events("events.csv", "ws")
    recs = recommend("ws", user="u1")
    reply = ShoppingAssistant("ws", get_chat_model()).ask("a green sofa under 1500")

Names resolve lazily so that importing the package (and `pinshop --help`) stays light:
torch, ultralytics and open_clip load only when a model is actually used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (
    MissingWeightsError,
    ModelMismatchError,
    PinshopError,
    StaleIndexError,
    UnknownModelError,
    WorkspaceLockedError,
)

_LAZY = {
    "ingest": "pipeline", "IngestConfig": "pipeline", "IngestSummary": "pipeline",
    "build_indexes": "index", "index_status": "index", "load_index": "index",
    "match": "matching", "MatchResult": "matching", "Match": "matching",
    "run_sql": "sql", "connect": "sql", "run_demo": "demo",
    "Workspace": "workspace", "load_catalog": "catalog", "write_report": "report",
    "get_detector": "models", "get_embedder": "models", "register": "models",
    "get_chat_model": "models",
    "recommend": "recommender", "recommend_all": "recommender", "evaluate": "recommender",
    "RecommendConfig": "recommender", "ingest_events": "events",
    "ShoppingAssistant": "assistant", "generate_events": "synth",
}  # fmt: skip

__all__ = [*_LAZY, "PinshopError", "UnknownModelError", "MissingWeightsError",
           "WorkspaceLockedError", "StaleIndexError", "ModelMismatchError"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pinshop_cli' has no attribute {name!r}")
