"""DuckDB over the workspace: one view per table, so users query names, not file paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PinshopError
from .storage import sql_path
from .workspace import EMBEDDING_KINDS, Workspace


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def workspace_views(ws: Workspace) -> dict[str, str]:
    """View name -> the SQL it reads, for every table present."""
    views = {}
    for name in ("catalog", "pins", "detections", "events", "recommendations"):
        path = ws.root / f"{name}.parquet"
        if path.exists():
            views[name] = f"SELECT * FROM read_parquet({sql_path(path)})"
    per_kind = []
    for kind in EMBEDDING_KINDS:
        if ws.embedding_parts(kind):
            views[f"embeddings_{kind}"] = (
                f"SELECT * FROM read_parquet({sql_path(ws.embeddings_dir / kind / '*.parquet')})")
            # Kinds differ in dimension (offline pair: 1280 vs 384), so the union view
            # carries vectors as variable-length lists.
            per_kind.append(f"SELECT id, kind, model_id, source_hash, vector::FLOAT[] AS vector "
                            f"FROM embeddings_{kind}")
    if per_kind:
        views["embeddings"] = " UNION ALL ".join(per_kind)
    for path in sorted(ws.rejects_dir.glob("*.parquet")):
        views[f"rejects_{path.stem}"] = f"SELECT * FROM read_parquet({sql_path(path)})"
    return views


def connect(workspace: str | Path | None = None) -> Any:
    """An in-memory DuckDB connection with a view per workspace table."""
    import duckdb

    ws = Workspace.open(workspace)
    con = duckdb.connect()
    for name, query in workspace_views(ws).items():
        con.execute(f"CREATE VIEW {name} AS {query}")
    return con


def run_sql(query: str, workspace: str | Path | None = None) -> QueryResult:
    import duckdb

    con = connect(workspace)
    try:
        relation = con.sql(query)
        if relation is None:  # a statement with no result set
            return QueryResult([], [])
        return QueryResult(list(relation.columns), relation.fetchall())
    except duckdb.Error as exc:
        raise PinshopError(f"SQL error: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
