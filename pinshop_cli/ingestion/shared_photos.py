"""Products that share a photo (a feed's placeholder, colour variants shot once, one
product under several ids) are embedded once: the model sees one row per photo, and the
other products get that photo's vector copied, with no model work. A photo's colour is
read by its hash (`consolidate_colors`), so it needs no copy.

A 100k-row feed with 20 distinct photos embedded 19,880 of them again (403 s here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..workspace.embeddings import part_key, parts_sql, write_part
from ..workspace.parts import PartStore
from ..workspace.storage import copy_to_parquet, query_arrow, sql_path

if TYPE_CHECKING:
    import pyarrow as pa

    from ..workspace.layout import Workspace

KIND = "product_image"


def split_shared(plan: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(one row per photo hash: the first id, the rest) of a pending plan (id, h, ...)."""
    import pyarrow.compute as pc

    first = query_arrow("SELECT *, row_number() OVER (PARTITION BY h ORDER BY id) = 1 AS first "
                        "FROM plan ORDER BY id", tables={"plan": plan})
    leading = first.column("first")
    first = first.drop_columns(["first"])
    return first.filter(leading), first.filter(pc.invert(leading))


def refused_leaders(leaders: pa.Table, refused_ids: list[str],
                    earlier: pa.Table | None = None) -> pa.Table:
    """(path, h) of the `leaders` whose ids were refused, after those refused `earlier`."""
    import pyarrow as pa

    found = query_arrow("SELECT path, h FROM leaders WHERE id IN (SELECT id FROM refused)",
                        tables={"leaders": leaders,
                                "refused": pa.table({"id": pa.array(refused_ids, pa.string())})})
    return found if earlier is None else pa.concat_tables([earlier, found])


def worth_retrying(rows: pa.Table, refused: pa.Table) -> pa.Table:
    """The `rows` (id, h, path, ...) to try at their own path, their photo's first product
    refused: those of a photo whose refused file no longer holds the bytes checked (changed
    or gone since), at a path not refused. Bytes that were refused as they are would be at
    every path (a placeholder shared by 500 products cost 500 runs of the model stage)."""
    import pyarrow as pa

    from ..workspace.storage import sha256_file

    def holds(path: str, h: str) -> bool:
        try:
            return sha256_file(Path(path)) == h
        except OSError:
            return False

    # One hash per refused photo: its first products, few (the refused are rare).
    changed = [h for path, h in zip(refused.column("path").to_pylist(),
                                    refused.column("h").to_pylist(), strict=True)
               if not holds(path, h)]
    return query_arrow("SELECT * FROM rows WHERE path NOT IN (SELECT path FROM refused) "
                       "AND h IN (SELECT h FROM changed) ORDER BY id",
                       tables={"rows": rows, "refused": refused.select(["path"]),
                               "changed": pa.table({"h": pa.array(changed, pa.string())})})


def leave_out(rows: pa.Table, done: pa.Table) -> pa.Table:
    """The `rows` whose id is not in `done`."""
    return query_arrow("SELECT * FROM rows ANTI JOIN done USING (id) ORDER BY id",
                       tables={"rows": rows, "done": done.select(["id"])})


def copy_shared(ws: Workspace, model_id: str, rows: pa.Table) -> pa.Table:
    """Write, for each of `rows` (id, h, ...) whose photo `model_id` has embedded already
    (for any product), that vector under its own id; returns the rows left (photos not
    embedded yet, or whose embedding was rejected)."""
    parts = parts_sql(ws, KIND)
    if parts is None or rows.num_rows == 0:
        return rows
    embedded = (f"SELECT source_hash AS h, any_value(vector) AS vector FROM {parts} "
                "WHERE model_id = $model GROUP BY source_hash")
    found = query_arrow(f"SELECT r.id, r.h, e.vector FROM rows r JOIN ({embedded}) e "
                        "USING (h) ORDER BY r.id", {"model": model_id}, tables={"rows": rows})
    if found.num_rows:
        import numpy as np
        import pyarrow.compute as pc

        from ..workspace.embeddings import to_matrix

        ids, hashes = found.column("id"), found.column("h")
        # Named by ids and photos, as a batch's part is: the same products copied again
        # for a new photo must not overwrite a listed part.
        write_part(ws, KIND, model_id, ids, hashes,
                   np.asarray(to_matrix(found.column("vector")), np.float32),
                   part_key(model_id, KIND, "shared", *pc.binary_join_element_wise(
                       ids, hashes, "/").to_pylist()))
    return leave_out(rows, found)


def consolidate_colors(ws: Workspace) -> None:
    """catalog.parquet with each product photo's colour beside the catalog's own `color`:
    `photo_color` (a family: blue, beige ...) and `photo_color_name` (the nearest CSS name),
    from the committed colour parts of its current image."""
    import duckdb

    from ..io.catalog import CATALOG_VERSIONS

    files = PartStore(ws.color_parts_dir).files()
    if not files or not ws.catalog.exists():
        return
    catalog = f"read_parquet({sql_path(ws.catalog)})"
    with duckdb.connect() as con:
        columns = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {catalog}").fetchall()}
        earlier = [c for c in ("photo_color", "photo_color_name") if c in columns]
        # The catalog's own row order is kept.
        query = (f"SELECT c.* EXCLUDE ({', '.join(['pinshop_row', *earlier])}), "
                 "p.color AS photo_color, p.color_name AS photo_color_name "
                 f"FROM (SELECT *, row_number() OVER () AS pinshop_row FROM {catalog}) c "
                 # a photo's colour, by its hash, under the newest rules that named it
                 "LEFT JOIN (SELECT h, arg_max(color, rules) AS color, arg_max(color_name, "
                 f"rules) AS color_name FROM {colour_rows(files)} GROUP BY h) p "
                 "ON p.h = c.image_sha256 "
                 "ORDER BY c.pinshop_row")
        copy_to_parquet(con, query, ws.catalog, CATALOG_VERSIONS, checked=True)


def colour_rows(files: list[Path]) -> str:
    """A FROM-clause over colour parts, with `rules` (1: named before rules were versioned,
    in parts without the column)."""
    source = f"read_parquet([{', '.join(sql_path(f) for f in files)}], union_by_name = true)"
    versioned = "color_rules" in query_arrow(f"SELECT * FROM {source} LIMIT 0").column_names
    return (f"(SELECT *, {'coalesce(color_rules, 1)' if versioned else '1'} AS rules "
            f"FROM {source})")


def stale_colours(ws: Workspace, model_id: str) -> pa.Table:
    """One product (id, path, h) per photo that `model_id` has embedded but whose colour was
    named under older rules (detection/colors.py RULES), or never: ingest names it again."""
    from ..detection.colors import RULES

    parts, files = parts_sql(ws, "product_image"), PartStore(ws.color_parts_dir).files()
    if parts is None or not ws.catalog.exists():
        return query_arrow("SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS path, "
                           "NULL::VARCHAR AS h WHERE false")
    named = (f"(SELECT h FROM {colour_rows(files)} WHERE rules = {RULES})" if files
             else "(SELECT NULL::VARCHAR AS h WHERE false)")
    return query_arrow(f"""
        SELECT c.id, c.image AS path, c.image_sha256 AS h
        FROM read_parquet({sql_path(ws.catalog)}) c
        SEMI JOIN (SELECT id, source_hash FROM {parts} WHERE model_id = $model) d
            ON d.id = c.id AND d.source_hash = c.image_sha256
        ANTI JOIN {named} k ON k.h = c.image_sha256
        QUALIFY row_number() OVER (PARTITION BY c.image_sha256 ORDER BY c.id) = 1
        ORDER BY c.id""", {"model": model_id})
