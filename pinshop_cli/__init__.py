"""pinshop: batch shopping-catalog processing as a library.

    import pinshop_cli

    with pinshop_cli.open("ws") as shop:          # one workspace, models loaded once
        shop.ingest("catalog.csv", pins="photos/")
        shop.index()
        result = shop.match(["photo.jpg"], top_k=5)
        shop.ingest_events("events.csv")
        recs = shop.recommend(user="u1")
        reply = shop.chat().ask("a green sofa under 1500")

Every command is a method of the Shop, named like the command. The same work is there as
free functions taking `workspace=` (`match(["photo.jpg"], workspace="ws")`,
`build_indexes(workspace="ws")`, `similar("P005", workspace="ws")`, `run_sql(...)`).

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
    "ingest": "ingestion.pipeline", "IngestConfig": "ingestion.config",
    "IngestSummary": "ingestion.config",
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
    "open": "shop", "Shop": "shop", "similar": "look.similar", "complete": "look.complete",
    "find_duplicates": "look.duplicates", "audit": "look.audit",
    "tune": "recommendation.api",
}  # fmt: skip

__all__ = [*_LAZY, "PinshopError", "UnknownModelError", "MissingWeightsError",
           "WorkspaceLockedError", "StaleIndexError", "ModelMismatchError", "DamagedFileError"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pinshop_cli' has no attribute {name!r}")
