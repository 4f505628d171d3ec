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
    DamagedFileError,
    MissingWeightsError,
    ModelMismatchError,
    PinshopError,
    StaleIndexError,
    UnknownModelError,
    WorkspaceLockedError,
)

_LAZY = {
    "ingest": "ingestion.pipeline", "IngestConfig": "ingestion.pipeline",
    "IngestSummary": "ingestion.pipeline",
    "build_indexes": "index.hnsw", "index_status": "index.hnsw", "load_index": "index.hnsw",
    "match": "retrieval.match", "MatchResult": "retrieval.match", "Match": "retrieval.match",
    "run_sql": "sql", "connect": "sql", "run_demo": "demo",
    "Workspace": "workspace.layout", "load_catalog": "io.catalog",
    "write_report": "report.html",
    "get_detector": "models", "get_embedder": "models", "register": "models",
    "get_chat_model": "models",
    "recommend": "recommendation.api", "recommend_all": "recommendation.api",
    "evaluate": "recommendation.api", "RecommendConfig": "recommendation.config",
    "ingest_events": "io.events",
    "ShoppingAssistant": "assistant.session", "generate_events": "synth.events",
}  # fmt: skip

__all__ = [*_LAZY, "PinshopError", "UnknownModelError", "MissingWeightsError",
           "WorkspaceLockedError", "StaleIndexError", "ModelMismatchError", "DamagedFileError"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pinshop_cli' has no attribute {name!r}")
