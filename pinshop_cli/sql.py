"""DuckDB over the workspace: one view per table, so users query names, not file paths.

The connection is read-only by default, enforced by DuckDB itself rather than by parsing
the user's SQL:

- every table is registered as an Arrow dataset (pyarrow reads the Parquet files, not
  DuckDB's file system), and only then is `enable_external_access` switched off, so no
  statement can touch a file: `COPY ... TO`, `ATTACH`, `INSTALL`, `LOAD` of an extension
  file, `read_text('/etc/shadow')`, `read_parquet(...)` of any path all fail;
- the default database is an empty database file opened read-only, so `CREATE TABLE` and
  `CREATE VIEW` fail (temporary tables are allowed: they live in memory and vanish);
- `lock_configuration` keeps the statement from switching any of this back on.

Built-in extensions (parquet, json, icu) are already loaded, so `LOAD json` is a no-op.

`allow_writes=True` (opt-in) uses an in-memory database and lets statements read and write
files inside the workspace directory only (`allowed_directories`), e.g.
`COPY (SELECT ...) TO '<workspace>/export.parquet'`.

A file that is not readable Parquet (a stray or half-copied file in rejects/) does not break
every query: it is skipped and named in `QueryResult.notes`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PinshopError
from .workspace.embeddings import SOURCE_HASH, store
from .workspace.layout import EMBEDDING_KINDS, Workspace

# Settings applied after the views exist; the last one locks them all.
LOCKDOWN = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_persistent_secrets = false",
    "SET python_enable_replacements = false",  # no scanning of the caller's Python variables
    "SET enable_external_access = false",
)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    notes: list[str] = field(default_factory=list)


def _readable_parquet(paths: list[Path], notes: list[str]) -> list[Path]:
    """The paths whose Parquet footer parses; the others are named in `notes`."""
    import pyarrow.parquet as pq

    good = []
    for path in paths:
        try:
            pq.read_metadata(path)
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            notes.append(f"skipped {path}: not a readable Parquet file "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
            continue
        good.append(path)
    return good


def workspace_datasets(ws: Workspace, notes: list[str] | None = None) -> dict[str, Any]:
    """View name -> pyarrow dataset, for every readable table present."""
    import pyarrow.dataset as ds

    notes = notes if notes is not None else []
    files: dict[str, list[Path]] = {}
    for name in ("catalog", "pins", "detections", "events", "recommendations", "duplicates",
                 "audit"):
        files[name] = [ws.root / f"{name}.parquet"]
    for kind in EMBEDDING_KINDS:  # the live parts; views keep the current row per id
        files[f"parts_{kind}"] = store(ws, kind).files()
    for path in sorted(ws.rejects_dir.glob("*.parquet")):
        files[f"rejects_{path.stem}"] = [path]
    datasets = {}
    for name, paths in files.items():
        if good := _readable_parquet([p for p in paths if p.is_file()], notes):
            datasets[name] = ds.dataset([str(p) for p in good], format="parquet")
    return datasets


def _current_view(kind: str, names: set[str]) -> str | None:
    """embeddings_<kind>: exactly one current vector per id. A product row is current when
    its hash still matches the catalog's; a crop when its detection is still listed."""
    source = "detections" if kind == "crop" else "catalog"
    if f"parts_{kind}" not in names or source not in names:
        return None
    if kind == "crop":
        join = "JOIN detections s ON s.det_id = e.id"
    else:
        join = f"JOIN catalog s ON s.id = e.id AND s.{SOURCE_HASH[kind]} = e.source_hash"
    return (f"SELECT e.* FROM parts_{kind} e {join} "
            "QUALIFY row_number() OVER (PARTITION BY e.id, e.model_id ORDER BY e.source_hash) = 1")


def _embeddings_view(names: set[str]) -> str | None:
    # Kinds differ in dimension (offline pair: 1280 vs 384), so the union view carries
    # vectors as variable-length lists.
    parts = [f"SELECT id, kind, model_id, source_hash, vector::FLOAT[] AS vector "
             f"FROM embeddings_{kind}" for kind in EMBEDDING_KINDS
             if f"embeddings_{kind}" in names]
    return " UNION ALL ".join(parts) or None


def _read_only_database() -> Any:
    """A connection whose default database is an empty, read-only database file. The file
    is unlinked at once: the open handle keeps it alive and nothing is left behind."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="pinshop-sql-") as tmp:
        path = os.path.join(tmp, "empty.duckdb")
        duckdb.connect(path).close()
        return duckdb.connect(path, read_only=True)


def connect(workspace: str | Path | None = None, allow_writes: bool = False,
            notes: list[str] | None = None) -> Any:
    """A locked-down DuckDB connection with a view per workspace table.

    Read-only by default; `allow_writes` allows writing files inside the workspace only.
    Files skipped as unreadable are appended to `notes` when given."""
    import duckdb

    ws = Workspace.open(workspace)
    con = duckdb.connect() if allow_writes else _read_only_database()
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamps are stored as naive UTC
        datasets = workspace_datasets(ws, notes)
        for name, dataset in datasets.items():
            con.register(name, dataset)  # a temporary view scanning the Arrow dataset
        views = set(datasets)
        for kind in EMBEDDING_KINDS:
            if current := _current_view(kind, views):
                con.execute(f"CREATE TEMP VIEW embeddings_{kind} AS {current}")
                views.add(f"embeddings_{kind}")
        if union := _embeddings_view(views):
            con.execute(f"CREATE TEMP VIEW embeddings AS {union}")
        if allow_writes:
            con.execute("SET allowed_directories = $dirs", {"dirs": [f"{ws.root}{os.sep}"]})
        for statement in LOCKDOWN:
            con.execute(statement)
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def run_sql(query: str, workspace: str | Path | None = None,
            allow_writes: bool = False) -> QueryResult:
    """Run `query` over the workspace views; DuckDB errors become one-line PinshopErrors."""
    import duckdb

    notes: list[str] = []
    con = connect(workspace, allow_writes=allow_writes, notes=notes)
    try:
        relation = con.sql(query)
        if relation is None:  # a statement with no result set
            return QueryResult([], [], notes)
        return QueryResult(list(relation.columns), relation.fetchall(), notes)
    except duckdb.PermissionException as exc:
        scope = ("files outside the workspace are off limits" if allow_writes else
                 "pinshop sql is read-only over the workspace views")
        raise PinshopError(f"SQL error: {_first_line(exc)} ({scope})") from None
    except duckdb.Error as exc:
        message = _first_line(exc)
        if "read-only mode" in message:
            message = "the connection is read-only: create TEMP tables or views instead"
        raise PinshopError(f"SQL error: {message}") from None
    finally:
        con.close()
