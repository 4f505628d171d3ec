"""Read and plan: what an ingest still has to do, as Arrow tables.

Work is keyed by content hashes and finished work is whatever the part manifests list, so
a plan is an anti-join in DuckDB against the committed parts: a re-run of unchanged input
plans nothing, and a killed run (on either engine) resumes with exactly the unlisted work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..workspace.embeddings import SOURCE_HASH, parts_sql
from ..workspace.layout import Workspace
from ..workspace.parts import PartStore
from ..workspace.storage import query_arrow, sql_path

if TYPE_CHECKING:
    import pyarrow as pa

#: The catalog column each product kind embeds, named as the stages read it.
PLAN_COLUMNS = {"product_image": "image AS path", "product_text": "product_text"}


def pending_products(ws: Workspace, kind: str, model_id: str) -> tuple[pa.Table, int]:
    """Catalog rows (id, h, and the column to embed) that `model_id` has not embedded for
    `kind` at their current hash, and how many rows the kind has in all."""
    hash_column = SOURCE_HASH[kind]
    rows = (f"SELECT id, {PLAN_COLUMNS[kind]}, {hash_column} AS h FROM read_parquet("
            f"{sql_path(ws.catalog)}) WHERE {hash_column} IS NOT NULL")
    parts = parts_sql(ws, kind)
    done = (f"(SELECT id, source_hash AS h FROM {parts} WHERE model_id = $model)"
            if parts else "(SELECT NULL AS id, NULL AS h WHERE false)")
    table = query_arrow(f"SELECT c.* FROM ({rows}) c ANTI JOIN {done} d "
                        "ON c.id = d.id AND c.h = d.h ORDER BY c.id",
                        {"model": model_id} if parts else None)
    total = query_arrow(f"SELECT count(*) AS n FROM ({rows})").column("n")[0].as_py()
    return table, int(total)


def pending_pins(ws: Workspace, detector_id: str, pins: pa.Table) -> pa.Table:
    """The scanned pins (status ok) that `detector_id` has not finished: (id, pin_id, path,
    h). A pin is finished when the committed detection parts hold all of its regions; a
    batch boundary may split a pin's regions, and a run killed between the two halves
    redoes the pin."""
    ok = "SELECT pin_id AS id, pin_id, path, sha256 AS h FROM pins WHERE status = 'ok'"
    files = PartStore(ws.detection_parts_dir).files()
    if not files:
        return query_arrow(ok + " ORDER BY path", tables={"pins": pins})
    # Parts written before `regions` existed always held whole pins (NULL regions).
    done = (f"SELECT pin_id FROM read_parquet([{', '.join(sql_path(f) for f in files)}], "
            "union_by_name = true) WHERE detector = $detector GROUP BY pin_id "
            "HAVING max(regions) IS NULL OR count(DISTINCT det_id) >= max(regions)")
    return query_arrow(f"SELECT * FROM ({ok}) ANTI JOIN ({done}) d USING (pin_id) "
                       "ORDER BY path", {"detector": detector_id}, tables={"pins": pins})
