"""The pins table of a run: the scanned files as rows, with the rejects the stages found
and the duplicates of pins that earlier runs kept; and the detections they end in."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..workspace.parts import PartStore
from ..workspace.storage import copy_to_parquet, query_arrow, rows_version_sql, sql_path

#: What str.splitlines breaks lines at.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

if TYPE_CHECKING:
    import pyarrow as pa

    from ..io.pins import PinFile
    from ..workspace.layout import Workspace


def pins_table(pins: list[PinFile]) -> pa.Table:
    import pyarrow as pa

    schema = pa.schema([("pin_id", pa.string()), ("path", pa.string()),
                        ("sha256", pa.string()), ("bytes", pa.int64()), ("width", pa.int32()),
                        ("height", pa.int32()), ("status", pa.string()), ("reason", pa.string())])
    return pa.Table.from_pylist([asdict(p) for p in pins], schema)


def duplicates_of_earlier(earlier: Path, pins: pa.Table) -> pa.Table:
    """This run's pins, those with the content of a pin an earlier run kept under another
    path (not scanned again now) rejected as its duplicates, as within one run (a reason
    is one line: line breaks in the path become a space, as in io/images.one_line)."""
    return query_arrow(f"""
        WITH kept AS (
            SELECT pin_id, min(path) AS path FROM read_parquet({sql_path(earlier)}) e
            WHERE status = 'ok' AND NOT EXISTS (SELECT 1 FROM new n WHERE n.path = e.path)
            GROUP BY pin_id)
        SELECT n.* REPLACE (
                   CASE WHEN k.pin_id IS NULL THEN n.status ELSE 'rejected' END AS status,
                   CASE WHEN k.pin_id IS NULL THEN n.reason ELSE 'duplicate of '
                       || regexp_replace(k.path, '[{LINE_BREAKS}]+', ' ', 'g') END AS reason)
        FROM new n LEFT JOIN kept k ON k.pin_id = n.pin_id AND n.status = 'ok'
        ORDER BY n.path""", tables={"new": pins}).cast(pins.schema)


def with_rejects(pins: pa.Table, pin_ids: list[str], reasons: list[str]) -> pa.Table:
    """The scanned pins with the stages' rejects (a file that changed since the scan)."""
    import pyarrow as pa

    if not pin_ids:
        return pins
    rejected = pa.table({"pin_id": pa.array(pin_ids, pa.string()),
                         "why": pa.array(reasons, pa.string())})
    return query_arrow(
        "SELECT p.* REPLACE (CASE WHEN r.why IS NULL THEN p.status ELSE 'rejected' END "
        "AS status, coalesce(r.why, p.reason) AS reason) FROM pins p "
        "LEFT JOIN rejected r USING (pin_id) ORDER BY p.path",
        tables={"pins": pins, "rejected": rejected}).cast(pins.schema)


def consolidate_detections(ws: Workspace, detector_id: str) -> int:
    """detections.parquet = the committed per-batch parts for the current pins and detector."""
    import duckdb

    files = PartStore(ws.detection_parts_dir).files()
    if not files or not ws.pins.exists():
        return 0
    query = (f"SELECT d.* FROM read_parquet([{', '.join(sql_path(f) for f in files)}], "
             "union_by_name = true) d "
             f"JOIN read_parquet({sql_path(ws.pins)}) p ON p.pin_id = d.pin_id "
             "AND p.status = 'ok' WHERE d.detector = $detector "
             "QUALIFY row_number() OVER (PARTITION BY d.det_id) = 1 "
             "ORDER BY d.pin_id, d.det_id")
    params = {"detector": detector_id}
    with duckdb.connect() as con:
        copy_to_parquet(con, query, ws.detections, {"crop": rows_version_sql("det_id")}, params,
                        checked=True)
        return int(con.execute(f"SELECT count(*) FROM ({query})", params).fetchall()[0][0])
