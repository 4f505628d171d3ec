"""Embedding parts: one Parquet file per batch under embeddings/<kind>/ (one folder per kind,
so each folder is a homogeneous dataset), named by the content of the batch.

A part that exists is done; readers keep only rows whose source still matches the current
catalog / detections, so changed or removed items drop out without rewrites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .storage import query_arrow, sha256_text, sql_path, write_parquet
from .workspace import Workspace

if TYPE_CHECKING:
    import numpy as np


@dataclass
class EmbeddingSet:
    kind: str
    model_id: str
    ids: list[str]
    vectors: np.ndarray  # (n, dim) float32, L2-normalized

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if len(self.ids) else 0


def part_key(*parts: str) -> str:
    return sha256_text(*sorted(parts))[:20]


def write_part(ws: Workspace, kind: str, model_id: str, ids: list[str],
               source_hashes: list[str], vectors: np.ndarray, key: str) -> None:
    import pyarrow as pa

    dim = int(vectors.shape[1])
    flat = pa.array(vectors.astype("float32").ravel(), type=pa.float32())
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "kind": pa.array([kind] * len(ids), pa.string()),
        "model_id": pa.array([model_id] * len(ids), pa.string()),
        "source_hash": pa.array(source_hashes, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    write_parquet(table, ws.embeddings_dir / kind / f"{key}.parquet")


def done_keys(ws: Workspace, kind: str, model_id: str) -> set[tuple[str, str]]:
    """(id, source_hash) pairs already embedded by `model_id`."""
    import pyarrow.parquet as pq

    done: set[tuple[str, str]] = set()
    for part in ws.embedding_parts(kind):
        table = pq.read_table(part, columns=["id", "model_id", "source_hash"])
        for pid, mid, source in zip(*(table.column(c).to_pylist() for c in
                                      ("id", "model_id", "source_hash")), strict=True):
            if mid == model_id:
                done.add((pid, source))
    return done


def _current_rows_sql(ws: Workspace, kind: str) -> str:
    """SQL selecting the current (id, vector) rows of a kind: source still matches."""
    parts = ", ".join(sql_path(p) for p in ws.embedding_parts(kind))
    embeddings = f"read_parquet([{parts}])"
    if kind == "crop":
        source = f"(SELECT det_id AS id FROM read_parquet({sql_path(ws.detections)}))"
        join = "s.id = e.id"
    else:
        hash_column = "image_sha256" if kind == "product_image" else "text_hash"
        source = f"(SELECT id, {hash_column} AS h FROM read_parquet({sql_path(ws.catalog)}))"
        join = "s.id = e.id AND s.h = e.source_hash"
    return (f"SELECT e.id, e.model_id, e.source_hash, e.vector FROM {embeddings} e "
            f"JOIN {source} s ON {join} WHERE e.model_id = $model "
            "QUALIFY row_number() OVER (PARTITION BY e.id ORDER BY e.source_hash) = 1 "
            "ORDER BY e.id")


def load_embeddings(ws: Workspace, kind: str, model_id: str) -> EmbeddingSet:
    import numpy as np

    source_table = ws.detections if kind == "crop" else ws.catalog
    if not ws.embedding_parts(kind) or not source_table.exists():
        return EmbeddingSet(kind, model_id, [], np.zeros((0, 0), np.float32))
    table = query_arrow(_current_rows_sql(ws, kind), {"model": model_id})
    ids = table.column("id").to_pylist()
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    array = flat.reshape(len(ids), -1) if ids else flat.reshape(0, 0)
    return EmbeddingSet(kind, model_id, ids, np.ascontiguousarray(array, dtype=np.float32))


def snapshot_hash(ws: Workspace, kind: str, model_id: str) -> str:
    """Identifies the current embeddings of a kind; an index built from another is stale."""
    if not ws.embedding_parts(kind):
        return sha256_text(kind, model_id, "empty")
    query = (f"SELECT coalesce(string_agg(id || ':' || source_hash, ',' ORDER BY id), '') AS s "
             f"FROM ({_current_rows_sql(ws, kind)})")
    joined = query_arrow(query, {"model": model_id}).column("s")[0].as_py()
    return sha256_text(kind, model_id, joined)
