"""HNSW indexes over the workspace embeddings, with manifests and staleness checks.

indexes/<name>.hnsw        the hnswlib graph (labels 0..n-1)
indexes/<name>.shard<i>.hnsw  or, for a sharded index, one graph per shard (shards.py)
indexes/<name>.vectors.npy the vectors by label (exact search over small filtered sets)
indexes/<name>.ids.parquet label -> embedding id
indexes/<name>.json        manifest: model_id, kind, dim, space, M, ef_construction, count,
                           snapshot (hash of the embeddings it was built from), shards, ...
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cluster import engine_session
from ..errors import PinshopError, StaleIndexError
from ..workspace.embeddings import current_rows_sql, snapshot_hash, to_matrix
from ..workspace.layout import EMBEDDING_KINDS, Workspace
from ..workspace.storage import (
    atomic_path,
    query_arrow,
    read_parquet,
    sql_path,
    write_json,
    write_parquet,
)
from .shards import ShardedIndex, build_shards

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

SPACE = "ip"  # vectors are L2-normalized, so inner product == cosine similarity


@dataclass(frozen=True)
class IndexManifest:
    name: str
    kind: str
    category: str | None
    model_id: str
    dim: int
    space: str
    M: int
    ef_construction: int
    count: int
    snapshot: str
    built_at: str
    build_seconds: float
    size_bytes: int
    recall_at_10: float | None
    #: The shard graphs of a sharded index, in shard order; empty for one graph.
    shards: list[str] = field(default_factory=list)


@dataclass
class IndexStatus:
    manifest: IndexManifest
    stale: bool


def index_name(kind: str, category: str | None = None) -> str:
    if category is None:
        return kind
    return f"{kind}@{re.sub(r'[^a-z0-9]+', '-', category.lower()).strip('-') or 'none'}"


def model_for_kind(ws: Workspace, kind: str) -> str:
    settings = ws.settings()
    key = "text_model_id" if kind == "product_text" else "image_model_id"
    if key not in settings:
        raise PinshopError(f"workspace {ws.root} has no embeddings yet: run `pinshop ingest`")
    return str(settings[key])


def top_k_exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """(positions, scores) of the k best inner products per query, best first: the ground
    truth for recall, and the search over small filtered sets."""
    import numpy as np

    scores = queries @ vectors.T
    k = min(k, vectors.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def measure_recall(index: Any, vectors: np.ndarray, sample: int = 200, k: int = 10,
                   seed: int = 0, labels: np.ndarray | None = None) -> float:
    """recall@k of the index against exact search, queries drawn from the indexed vectors
    (`labels[i]` is the label of vectors[i]; default 0..n-1)."""
    import numpy as np

    k = min(k, vectors.shape[0])
    rng = np.random.default_rng(seed)
    picks = rng.choice(vectors.shape[0], size=min(sample, vectors.shape[0]), replace=False)
    queries = vectors[picks]
    truth = top_k_exact(vectors, queries, k)[0]
    index.set_ef(max(64, k))
    found, _ = index.knn_query(queries, k=k)
    if labels is not None:
        truth = labels[truth]
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True))
    return round(hits / (len(picks) * k), 4)


def _current(ws: Workspace, kind: str, model_id: str) -> pa.Table:
    """(id, source_hash, vector, category) of the current embeddings of a kind, read once
    per build; per-category indexes take their slices of it."""
    import pyarrow as pa

    category = "'uncategorized'" if kind == "crop" else "coalesce(s.category, 'uncategorized')"
    sql = current_rows_sql(ws, kind, f"e.id, e.source_hash, e.vector, {category} AS category")
    if sql is None:
        return pa.table({"id": pa.array([], pa.string()), "source_hash": pa.array([], pa.string()),
                         "vector": pa.array([], pa.list_(pa.float32())),
                         "category": pa.array([], pa.string())})
    return query_arrow(f"{sql} ORDER BY e.id", {"model": model_id})


def _save_graph(ws: Workspace, name: str, index: Any) -> list[str]:
    """Save an index's graph(s); returns the shard files ([] for one graph)."""
    if isinstance(index, ShardedIndex):
        return index.save_shards(ws.indexes_dir, name)
    with atomic_path(ws.indexes_dir / f"{name}.hnsw") as tmp:
        index.save_index(str(tmp))
    return []


def _save(ws: Workspace, name: str, shards: list[str], dim: int, vectors: np.ndarray,
          labels: pa.Table, kind: str, category: str | None, model_id: str, snapshot: str,
          M: int, ef_construction: int, build_seconds: float, recall: float | None
          ) -> IndexManifest:
    """With the graph(s) saved: write its vectors by label (for exact search over small
    filtered sets, memory-mapped at query time), the labels and, last, the manifest; then
    drop graph files of an earlier layout (one graph <-> N shards)."""
    import numpy as np

    with atomic_path(ws.indexes_dir / f"{name}.vectors.npy") as tmp, open(tmp, "wb") as out:
        np.save(out, vectors)
    write_parquet(labels, ws.indexes_dir / f"{name}.ids.parquet")
    graphs = [ws.indexes_dir / file for file in shards or [f"{name}.hnsw"]]
    manifest = IndexManifest(
        name=name, kind=kind, category=category, model_id=model_id, dim=dim,
        space=SPACE, M=M, ef_construction=ef_construction, count=labels.num_rows,
        snapshot=snapshot, built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=build_seconds, size_bytes=sum(g.stat().st_size for g in graphs),
        recall_at_10=recall, shards=shards,
    )
    # The manifest lands last: an index without one is ignored.
    write_json(asdict(manifest), ws.indexes_dir / f"{name}.json")
    for old in [ws.indexes_dir / f"{name}.hnsw", *ws.indexes_dir.glob(f"{name}.shard*.hnsw")]:
        if old not in graphs:
            old.unlink(missing_ok=True)
    return manifest


def _load_graph(ws: Workspace, manifest: IndexManifest, live_labels: np.ndarray,
                max_elements: int) -> Any:
    """The graph(s) of an index: an hnswlib.Index, or a ShardedIndex over its shards."""
    import hnswlib

    if manifest.shards:
        return ShardedIndex.load(ws.indexes_dir, manifest.shards, manifest.space,
                                 manifest.dim, live_labels)
    index = hnswlib.Index(space=manifest.space, dim=manifest.dim)
    index.load_index(str(ws.indexes_dir / f"{manifest.name}.hnsw"), max_elements=max_elements)
    return index


def _build_one(ws: Workspace, rows: pa.Table, name: str, kind: str, category: str | None,
               model_id: str, snapshot: str, M: int, ef_construction: int,
               recall_sample: int) -> IndexManifest:
    import hnswlib
    import numpy as np

    vectors = to_matrix(rows.column("vector"))
    started = time.perf_counter()
    index = hnswlib.Index(space=SPACE, dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=M, ef_construction=ef_construction)
    index.add_items(vectors, np.arange(len(vectors)))
    build_seconds = round(time.perf_counter() - started, 4)
    recall = measure_recall(index, vectors, recall_sample) if recall_sample else None
    return _save(ws, name, _save_graph(ws, name, index), index.dim, vectors,
                 _fresh_labels(rows), kind, category, model_id, snapshot, M, ef_construction,
                 build_seconds, recall)


def _build_sharded(ws: Workspace, rows: pa.Table, name: str, kind: str, model_id: str,
                   snapshot: str, M: int, ef_construction: int, recall_sample: int,
                   shards: int, engine: str) -> IndexManifest:
    import numpy as np

    vectors = to_matrix(rows.column("vector"))
    started = time.perf_counter()
    files = build_shards(vectors, ws.indexes_dir, name, shards, SPACE, M, ef_construction,
                         engine)
    build_seconds = round(time.perf_counter() - started, 4)
    index = ShardedIndex.load(ws.indexes_dir, files, SPACE, vectors.shape[1],
                              np.arange(len(vectors)))
    recall = measure_recall(index, vectors, recall_sample) if recall_sample else None
    return _save(ws, name, files, vectors.shape[1], vectors, _fresh_labels(rows), kind, None,
                 model_id, snapshot, M, ef_construction, build_seconds, recall)


def _fresh_labels(rows: pa.Table) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    return pa.table({"label": pa.array(np.arange(rows.num_rows), pa.int64()),
                     "id": rows.column("id"), "source_hash": rows.column("source_hash")})


def _update_one(ws: Workspace, rows: pa.Table, manifest: IndexManifest, snapshot: str,
                recall_sample: int) -> IndexManifest:
    """Bring an index up to date in place: labels of changed or removed rows are marked
    deleted, new and changed rows are added under fresh labels."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    name = manifest.name
    indexed = read_parquet(ws.indexes_dir / f"{name}.ids.parquet")
    assert indexed is not None
    keys = rows.select(["id", "source_hash"])
    gone = query_arrow("SELECT label FROM indexed ANTI JOIN keys USING (id, source_hash)",
                       tables={"indexed": indexed, "keys": keys})
    new = query_arrow("SELECT r.* FROM rows_ r ANTI JOIN indexed USING (id, source_hash) "
                      "ORDER BY id", tables={"rows_": rows, "indexed": indexed})
    started = time.perf_counter()
    top = int(pc.max(indexed.column("label")).as_py()) if indexed.num_rows else -1
    index = _load_graph(ws, manifest, indexed.column("label").to_numpy(),
                        max_elements=max(top + 1, 1) + new.num_rows)
    for label in gone.column("label").to_pylist():  # deletions are few; hnswlib takes one
        # Already deleted when an earlier update was killed after saving the graph.
        with contextlib.suppress(RuntimeError):
            index.mark_deleted(label)
    fresh = np.arange(top + 1, top + 1 + new.num_rows, dtype=np.int64)
    old_vectors = np.load(ws.indexes_dir / f"{name}.vectors.npy", mmap_mode="r")
    vectors = np.zeros((top + 1 + new.num_rows, manifest.dim), np.float32)
    vectors[:len(old_vectors)] = old_vectors
    if new.num_rows:
        added = to_matrix(new.column("vector"))
        index.add_items(added, fresh)  # room was made when loading (shards grow as they add)
        vectors[fresh] = added
    labels = pa.concat_tables([
        query_arrow("SELECT * FROM indexed ANTI JOIN gone USING (label) ORDER BY label",
                    tables={"indexed": indexed, "gone": gone}),
        pa.table({"label": pa.array(fresh, pa.int64()), "id": new.column("id"),
                  "source_hash": new.column("source_hash")}),
    ])
    build_seconds = round(time.perf_counter() - started, 4)
    recall = (measure_recall(index, to_matrix(rows.column("vector")), recall_sample,
                             labels=_labels_in_order(labels, rows))
              if recall_sample and labels.num_rows else None)
    return _save(ws, name, _save_graph(ws, name, index), manifest.dim, vectors, labels,
                 manifest.kind, manifest.category, manifest.model_id, snapshot, manifest.M,
                 manifest.ef_construction, build_seconds, recall)


def _labels_in_order(labels: pa.Table, rows: pa.Table) -> np.ndarray:
    """The index label of each of `rows` (by id), as an array aligned with them."""
    table = query_arrow("SELECT l.label FROM rows_ r JOIN labels l USING (id, source_hash) "
                        "ORDER BY r.id", tables={"rows_": rows.select(["id", "source_hash"]),
                                                 "labels": labels})
    return table.column("label").to_numpy()


def _categories(ws: Workspace) -> list[str]:
    return query_arrow(f"SELECT DISTINCT coalesce(category, 'uncategorized') AS c FROM "
                       f"read_parquet({sql_path(ws.catalog)}) ORDER BY c").column("c").to_pylist()


def build_indexes(workspace: str | Path | None = None, kinds: tuple[str, ...] = EMBEDDING_KINDS,
                  by_category: bool = True, M: int = 16, ef_construction: int = 200,
                  recall_sample: int = 200, rebuild: bool = False, shards: int | None = None,
                  engine: str = "local", ray_address: str | None = None
                  ) -> list[IndexManifest]:
    """One index per embedding kind, and per product category with `by_category` (Shop The
    Look searches a detected sofa among sofas). An existing index is updated in place when
    products were added, changed or removed; it is rebuilt only on a model change, a new
    shard count or with `rebuild`. Recall@10 against exact search is measured after every
    build or update.

    `shards` > 1 splits each kind's global index into that many graphs, built in parallel
    (processes, or Ray tasks with engine="ray"); None keeps what an existing index has."""
    import pyarrow.compute as pc

    ws = Workspace.open(workspace)
    built: list[IndexManifest] = []
    with ws.lock(), engine_session(engine, ray_address):
        for kind in kinds:
            model_id = model_for_kind(ws, kind)
            snapshot = snapshot_hash(ws, kind, model_id)
            groups: list[str | None] = [None]
            if by_category and kind != "crop":
                groups += _categories(ws)
            every: pa.Table | None = None  # loaded only when an index needs work
            for category in groups:
                name = index_name(kind, category)
                old = _read_manifest(ws, name)
                split = 1 if category is not None else (
                    shards or (len(old.shards) or 1 if old is not None else 1))
                if old is not None and (len(old.shards) or 1) != split:
                    old = None  # a new shard count: build anew
                if old is not None and old.snapshot == snapshot and not rebuild:
                    built.append(old)
                    continue
                if every is None:
                    every = _current(ws, kind, model_id)
                rows = every if category is None else every.filter(
                    pc.equal(every.column("category"), category))
                if not rows.num_rows:
                    continue
                if (old is not None and not rebuild and old.model_id == model_id
                      and old.dim == len(rows.column("vector")[0])
                      and (ws.indexes_dir / f"{name}.vectors.npy").exists()):
                    built.append(_update_one(ws, rows, old, snapshot, recall_sample))
                elif split > 1:
                    built.append(_build_sharded(ws, rows, name, kind, model_id, snapshot, M,
                                                ef_construction, recall_sample, split, engine))
                else:
                    built.append(_build_one(ws, rows, name, kind, category, model_id,
                                            snapshot, M, ef_construction, recall_sample))
    if not built:
        raise PinshopError(f"no embeddings in {ws.root}: run `pinshop ingest` first")
    return built


def _read_manifest(ws: Workspace, name: str) -> IndexManifest | None:
    path = ws.indexes_dir / f"{name}.json"
    return IndexManifest(**json.loads(path.read_text())) if path.exists() else None


def read_manifests(ws: Workspace) -> list[IndexManifest]:
    manifests = []
    for path in sorted(ws.indexes_dir.glob("*.json")):
        manifests.append(IndexManifest(**json.loads(path.read_text())))
    return manifests


def index_status(workspace: str | Path | None = None) -> list[IndexStatus]:
    """Every index with whether it is stale (built from other embeddings than the current)."""
    ws = Workspace.open(workspace)
    snapshots: dict[tuple[str, str], str] = {}
    statuses = []
    for manifest in read_manifests(ws):
        key = (manifest.kind, manifest.model_id)
        if key not in snapshots:
            snapshots[key] = snapshot_hash(ws, manifest.kind, manifest.model_id)
        statuses.append(IndexStatus(manifest, manifest.snapshot != snapshots[key]))
    return statuses


@dataclass
class LoadedIndex:
    manifest: IndexManifest
    index: Any  # hnswlib.Index
    label_table: pa.Table  # label (int64) -> id, for the live labels only

    vectors_path: Path | None = None
    #: Built from other embeddings than the current ones (loaded with allow_stale).
    stale: bool = False

    @property
    def live_count(self) -> int:
        return self.label_table.num_rows

    @cached_property
    def vectors(self) -> np.ndarray | None:
        """Vectors by label, memory-mapped (None for indexes built before they were kept)."""
        import numpy as np

        if self.vectors_path is None or not self.vectors_path.exists():
            return None
        return np.load(self.vectors_path, mmap_mode="r")

    def vectors_of(self, labels: np.ndarray) -> np.ndarray:
        """The vectors of `labels`, in that order: gathered from the memory-mapped copy
        (hnswlib's get_items builds Python lists: 300 ms for 10k labels)."""
        import numpy as np

        if self.vectors is not None:
            return np.asarray(self.vectors[labels], np.float32)
        return np.asarray(self.index.get_items(labels, return_type="numpy"), np.float32)

    def vectors_by_id(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        """(the ids this index holds, their vectors in that order), with no loop over the
        index's rows: a C scan per id for a few ids (hashing 10^6 ids costs ~15 ms more),
        one hash join otherwise."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        column = self.label_table.column("id")
        if len(ids) <= 8:
            positions = pa.array([pc.index(column, i).as_py() for i in ids], pa.int64())
            positions = pc.if_else(pc.less(positions, 0), None, positions)
        else:
            positions = pc.index_in(pa.array(ids, pa.string()), value_set=column)
        present = pc.is_valid(positions).to_numpy(zero_copy_only=False)
        labels = self.label_table.column("label").to_numpy()[
            positions.drop_null().to_numpy(zero_copy_only=False).astype(np.int64)]
        return [i for i, keep in zip(ids, present, strict=True) if keep], \
            self.vectors_of(labels)

    @cached_property
    def ids_by_label(self) -> np.ndarray:
        """label -> id as an array (deleted labels hold None)."""
        import numpy as np

        ids = np.empty(self.index.get_max_elements(), dtype=object)
        ids[self.label_table.column("label").to_numpy()] = np.asarray(
            self.label_table.column("id").to_pylist(), dtype=object)
        return ids


def load_index(ws: Workspace, kind: str, category: str | None = None,
               allow_stale: bool = False) -> LoadedIndex:
    name = index_name(kind, category)
    manifest_path = ws.indexes_dir / f"{name}.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no {name} index in {ws.root}: run `pinshop index` first")
    manifest = IndexManifest(**json.loads(manifest_path.read_text()))
    stale = snapshot_hash(ws, kind, manifest.model_id) != manifest.snapshot
    if stale and not allow_stale:
        raise StaleIndexError(
            f"index {name} was built before the latest ingest (it would serve outdated "
            "results): run `pinshop index`, or pass --rebuild to rebuild it now"
        )
    labels = read_parquet(ws.indexes_dir / f"{name}.ids.parquet")
    if labels is None:
        raise PinshopError(f"index {name} lacks its label file: run `pinshop index --rebuild`")
    if "label" not in labels.column_names:  # written before labels were stored explicitly
        import pyarrow as pa

        labels = pa.table({"label": pa.array(range(labels.num_rows), pa.int64()),
                           "id": labels.column("id")})
    index = _load_graph(ws, manifest, labels.column("label").to_numpy(), manifest.count)
    return LoadedIndex(manifest, index, labels.select(["label", "id"]),
                       ws.indexes_dir / f"{name}.vectors.npy", stale)
