"""Events ingestion: CSV/Parquet interactions into events.parquet, validated in DuckDB.

Rejected rows (unknown item ids, bad timestamps, unknown event types, ...) go to
rejects/events.parquet with their line number and reason. Re-ingesting a file is
idempotent: events.parquet is the distinct union of what it held and the new rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import PinshopError
from .storage import query_arrow, sql_path, write_parquet
from .workspace import Workspace

#: Default strength of each event type (an explicit `weight` column overrides it).
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "save": 4.0, "cart": 6.0, "purchase": 10.0}
REQUIRED = ("user_id", "item_id", "event", "ts")


@dataclass
class EventsSummary:
    rows_ok: int
    rows_rejected: int
    added: int  # rows not already in events.parquet
    total: int


def _reader(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return f"read_csv({sql_path(path)}, header = true, all_varchar = true)"
    if suffix == ".parquet":
        return f"read_parquet({sql_path(path)})"
    raise PinshopError(f"unsupported events format {suffix!r}: use .csv or .parquet")


def ingest_events(path: str | Path, workspace: str | Path | None = None) -> EventsSummary:
    """Validate and append an events file to the workspace's events.parquet."""
    path = Path(path)
    if not path.is_file():
        raise PinshopError(f"events file not found: {path}")
    ws = Workspace.open(workspace)
    if not ws.catalog.exists():
        raise PinshopError(f"no catalog in {ws.root}: events refer to catalog item ids; "
                           "run `pinshop ingest CATALOG` first")
    columns = query_arrow(f"SELECT * FROM {_reader(path)} LIMIT 0").column_names
    if missing := [c for c in REQUIRED if c not in columns]:
        raise PinshopError(f"{path.name} lacks column(s) {', '.join(missing)}; "
                           f"events need {', '.join(REQUIRED)} (weight optional)")
    weight = "CAST(weight AS VARCHAR)" if "weight" in columns else "NULL"
    weights = " ".join(f"WHEN '{e}' THEN {w}" for e, w in EVENT_WEIGHTS.items())
    events = ", ".join(f"'{e}'" for e in EVENT_WEIGHTS)
    # Line numbers count the CSV header as line 1; for Parquet they are row numbers.
    first = 2 if path.suffix.lower() == ".csv" else 1
    checked_sql = f"""
        WITH raw AS (
            SELECT row_number() OVER () + {first - 1} AS line,
                   trim(CAST(user_id AS VARCHAR)) AS user_id,
                   trim(CAST(item_id AS VARCHAR)) AS item_id,
                   lower(trim(CAST(event AS VARCHAR))) AS event,
                   CAST(ts AS VARCHAR) AS ts_raw, {weight} AS weight_raw
            FROM {_reader(path)}
        ), parsed AS (
            SELECT *, coalesce(try_cast(ts_raw AS TIMESTAMPTZ)::TIMESTAMP,
                               to_timestamp(try_cast(ts_raw AS DOUBLE))::TIMESTAMP) AS ts,
                      try_cast(weight_raw AS DOUBLE) AS weight
            FROM raw
        )
        SELECT p.*, CASE
            WHEN p.user_id IS NULL OR p.user_id = '' THEN 'missing user_id'
            WHEN p.item_id IS NULL OR p.item_id = '' THEN 'missing item_id'
            WHEN p.event IS NULL OR p.event NOT IN ({events})
                THEN 'unknown event type ' || coalesce('''' || p.event || '''', 'NULL')
            WHEN p.ts IS NULL THEN 'bad timestamp ' || coalesce('''' || p.ts_raw || '''', 'NULL')
            WHEN p.weight_raw IS NOT NULL AND trim(p.weight_raw) <> ''
                 AND (p.weight IS NULL OR p.weight < 0)
                THEN 'bad weight ''' || p.weight_raw || ''''
            WHEN c.id IS NULL THEN 'unknown item id ''' || p.item_id || ''''
        END AS reason
        FROM parsed p LEFT JOIN read_parquet({sql_path(ws.catalog)}) c ON c.id = p.item_id
    """
    with ws.lock():
        checked = query_arrow(f"SELECT * FROM ({checked_sql}) ORDER BY line")
        rejects = query_arrow(
            f"SELECT '{path.name}' AS source, line, item_id AS id, reason, "
            "concat_ws(',', user_id, item_id, event, ts_raw, weight_raw) AS raw "
            "FROM checked WHERE reason IS NOT NULL ORDER BY line", tables={"checked": checked})
        new = query_arrow(
            f"SELECT user_id, item_id, event, ts, "
            f"coalesce(weight, CASE event {weights} END) AS weight "
            "FROM checked WHERE reason IS NULL", tables={"checked": checked})
        union = "SELECT * FROM new"
        if ws.events.exists():
            union = f"SELECT * FROM read_parquet({sql_path(ws.events)}) UNION ALL {union}"
        merged = query_arrow(f"SELECT DISTINCT * FROM ({union}) ORDER BY ts, user_id, item_id",
                             tables={"new": new})
        before = query_arrow(f"SELECT count(*) AS n FROM read_parquet({sql_path(ws.events)})"
                             ).column("n")[0].as_py() if ws.events.exists() else 0
        write_parquet(merged, ws.events)
        write_parquet(rejects, ws.rejects_dir / "events.parquet")
    return EventsSummary(new.num_rows, rejects.num_rows, merged.num_rows - before,
                         merged.num_rows)
