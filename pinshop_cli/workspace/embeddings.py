"""Embedding parts: `embeddings/<kind>/` is a PartStore (one folder per kind, so each folder
is a homogeneous dataset) of rows (id, kind, model_id, source_hash, vector).

A row is *current* when its source still matches: a product row's hash equals the catalog's
image or text hash, a crop row's id is in detections.parquet. Changed or removed items drop
out without rewrites, and every reader sees exactly one current vector per id.

Versions make staleness cheap: the catalog and detections files carry a content version in
their Parquet footer, a part store's manifest has its own, and a snapshot is the hash of
both, so checking an index against the workspace reads two small files, not the vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .integrity import DETECTIONS_FIX, require_catalog, require_parquet
from .layout import EMBEDDING_KINDS, Workspace
from .parts import PartStore
from .storage import query_arrow, sha256_text, sql_path

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

#: The catalog column each product kind's source_hash must equal.
SOURCE_HASH = {"product_image": "image_sha256", "product_text": "product_text_hash"}


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


def store(ws: Workspace, kind: str) -> PartStore:
    return PartStore(ws.embeddings_dir / kind, REMAKE["crop" if kind == "crop" else "product"])


#: The command that embeds a lost part's rows again.
REMAKE = {"product": "`pinshop ingest CATALOG`", "crop": "`pinshop ingest --pins DIR`"}


def detection_store(ws: Workspace) -> PartStore:
    return PartStore(ws.detection_parts_dir, REMAKE["crop"])


def repair_stores(ws: Workspace, full: bool = True, writing: tuple[str, ...] = ()
                  ) -> list[str]:
    """Every part store of the workspace repaired (see PartStore.repair), and an empty
    manifest for each store of the kinds about to be `writing` (see PartStore.ensure): for
    writers holding the lock. Returns notes on what was dropped or listed again."""
    stores = [store(ws, kind) for kind in EMBEDDING_KINDS] + [detection_store(ws)]
    stores += [PartStore(directory) for directory in sorted(ws.root.glob("parts/*"))
               if directory != ws.detection_parts_dir and not directory.is_symlink()]
    stores.append(ws.history_store())
    notes: list[str] = []
    for part_store in stores:
        if part_store.directory.is_dir():
            notes += part_store.repair(full)
    for kind in writing:
        store(ws, kind).ensure()
        if kind == "crop":
            detection_store(ws).ensure()
        elif kind == "product_image":  # product photos' colours, written beside them
            PartStore(ws.color_parts_dir).ensure()
    return notes


def vectors_table(kind: str, model_id: str, ids: pa.Array, source_hashes: pa.Array,
                  vectors: np.ndarray) -> pa.Table:
    import pyarrow as pa

    dim = int(vectors.shape[1])
    flat = pa.array(vectors.astype("float32").ravel(), type=pa.float32())
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "kind": pa.array([kind] * len(ids), pa.string()),
        "model_id": pa.array([model_id] * len(ids), pa.string()),
        "source_hash": pa.array(source_hashes, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
    })


def write_part(ws: Workspace, kind: str, model_id: str, ids: pa.Array | list[str],
               source_hashes: pa.Array | list[str], vectors: np.ndarray, key: str) -> None:
    store(ws, kind).append(vectors_table(kind, model_id, ids, source_hashes, vectors), key)


def parts_sql(ws: Workspace, kind: str, notes: list[str] | None = None) -> str | None:
    """A FROM-clause reading the live parts of a kind, or None when there are none (parts
    found damaged are left out, and named in `notes`)."""
    files = store(ws, kind).files(notes)
    if not files:
        return None
    return f"read_parquet([{', '.join(sql_path(p) for p in files)}])"


def source_sql(ws: Workspace, kind: str) -> str:
    """(id, h): what each current row must match."""
    if kind == "crop":
        return f"(SELECT det_id AS id, NULL AS h FROM read_parquet({sql_path(ws.detections)}))"
    return (f"(SELECT id, {SOURCE_HASH[kind]} AS h, category "
            f"FROM read_parquet({sql_path(ws.catalog)}) WHERE {SOURCE_HASH[kind]} IS NOT NULL)")


def current_rows_sql(ws: Workspace, kind: str, columns: str = "e.id, e.model_id, "
                     "e.source_hash, e.vector") -> str | None:
    """SQL selecting the current rows of a kind (one per id), for `$model`."""
    parts = parts_sql(ws, kind)
    source = ws.detections if kind == "crop" else ws.catalog
    if parts is None or not source.exists():
        return None
    join = "s.id = e.id" if kind == "crop" else "s.id = e.id AND s.h = e.source_hash"
    return (f"SELECT {columns} FROM {parts} e JOIN {source_sql(ws, kind)} s ON {join} "
            "WHERE e.model_id = $model "
            "QUALIFY row_number() OVER (PARTITION BY e.id ORDER BY e.source_hash) = 1")


def to_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column of equal-length float32 lists (fixed-size, or variable-size as the ingest
    stages carry them) as a contiguous (n, dim) float32 array."""
    import numpy as np
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, 0), np.float32)
    flat = array.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(len(array), -1), dtype=np.float32)


def load_embeddings(ws: Workspace, kind: str, model_id: str) -> EmbeddingSet:
    import numpy as np

    sql = current_rows_sql(ws, kind)
    if sql is None:
        return EmbeddingSet(kind, model_id, [], np.zeros((0, 0), np.float32))
    table = query_arrow(sql + " ORDER BY e.id", {"model": model_id})
    return EmbeddingSet(kind, model_id, table.column("id").to_pylist(),
                        to_matrix(table.column("vector")))


def table_version(path: Path, kind: str) -> str:
    """The content version of `kind`'s source rows, written into the table's Parquet footer
    (else its size and time, for files written before versions existed); DamagedFileError
    when the file is there but unreadable."""
    import pyarrow.parquet as pq

    if not path.exists():
        return "absent"
    if kind == "crop":
        require_parquet(path, DETECTIONS_FIX)
    else:
        require_catalog(path)
    metadata = pq.read_metadata(path).metadata or {}
    key = f"pinshop_version_{kind}".encode()
    if key in metadata:
        return metadata[key].decode()
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def snapshot_hash(ws: Workspace, kind: str, model_id: str) -> str:
    """Identifies the current embeddings of a kind; an index built from another is stale."""
    source = ws.detections if kind == "crop" else ws.catalog
    return sha256_text(kind, model_id, store(ws, kind).manifest().version,
                       table_version(source, kind))
