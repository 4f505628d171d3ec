"""HNSW indexes over the workspace embeddings, with manifests and staleness checks.

indexes/<name>.hnsw        the hnswlib graph (labels 0..n-1)
indexes/<name>.ids.parquet label -> embedding id
indexes/<name>.json        manifest: model_id, kind, dim, space, M, ef_construction, count,
                           snapshot (hash of the embeddings it was built from), built_at, ...
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .embeddings import EmbeddingSet, load_embeddings, snapshot_hash
from .errors import PinshopError, StaleIndexError
from .storage import atomic_path, read_parquet, write_json, write_parquet
from .workspace import EMBEDDING_KINDS, Workspace

if TYPE_CHECKING:
    import numpy as np

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


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute-force top-k labels by inner product (the ground truth for recall)."""
    import numpy as np

    scores = queries @ vectors.T
    k = min(k, vectors.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def measure_recall(index: Any, vectors: np.ndarray, sample: int = 200, k: int = 10,
                   seed: int = 0) -> float:
    """recall@k of the index against exact search, queries drawn from the indexed vectors."""
    import numpy as np

    k = min(k, vectors.shape[0])
    rng = np.random.default_rng(seed)
    picks = rng.choice(vectors.shape[0], size=min(sample, vectors.shape[0]), replace=False)
    queries = vectors[picks]
    truth = exact_top_k(vectors, queries, k)
    index.set_ef(max(64, k))
    labels, _ = index.knn_query(queries, k=k)
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(labels, truth, strict=True))
    return round(hits / (len(picks) * k), 4)


def _build_one(ws: Workspace, embeddings: EmbeddingSet, name: str, category: str | None,
               snapshot: str, M: int, ef_construction: int, recall_sample: int) -> IndexManifest:
    import hnswlib
    import numpy as np
    import pyarrow as pa

    started = time.perf_counter()
    index = hnswlib.Index(space=SPACE, dim=embeddings.dim)
    index.init_index(max_elements=len(embeddings.ids), M=M, ef_construction=ef_construction)
    index.add_items(embeddings.vectors, np.arange(len(embeddings.ids)))
    build_seconds = round(time.perf_counter() - started, 4)
    recall = measure_recall(index, embeddings.vectors, recall_sample) if recall_sample else None
    target = ws.indexes_dir / f"{name}.hnsw"
    with atomic_path(target) as tmp:
        index.save_index(str(tmp))
    write_parquet(pa.table({"id": embeddings.ids}), ws.indexes_dir / f"{name}.ids.parquet")
    manifest = IndexManifest(
        name=name, kind=embeddings.kind, category=category, model_id=embeddings.model_id,
        dim=embeddings.dim, space=SPACE, M=M, ef_construction=ef_construction,
        count=len(embeddings.ids), snapshot=snapshot,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=build_seconds, size_bytes=target.stat().st_size, recall_at_10=recall,
    )
    # The manifest lands last: an index without one is ignored.
    write_json(asdict(manifest), ws.indexes_dir / f"{name}.json")
    return manifest


def build_indexes(workspace: str | Path | None = None, kinds: tuple[str, ...] = EMBEDDING_KINDS,
                  by_category: bool = False, M: int = 16, ef_construction: int = 200,
                  recall_sample: int = 200) -> list[IndexManifest]:
    """Build one index per embedding kind (and per product category with `by_category`)."""
    import numpy as np

    ws = Workspace.open(workspace)
    built: list[IndexManifest] = []
    with ws.lock():
        for kind in kinds:
            model_id = model_for_kind(ws, kind)
            embeddings = load_embeddings(ws, kind, model_id)
            if not embeddings.ids:
                continue
            snapshot = snapshot_hash(ws, kind, model_id)
            built.append(_build_one(ws, embeddings, index_name(kind), None, snapshot, M,
                                    ef_construction, recall_sample))
            if by_category and kind != "crop":
                categories = _categories(ws)
                labels = [categories.get(pid, "uncategorized") for pid in embeddings.ids]
                for category in sorted(set(labels)):
                    rows = np.flatnonzero(np.array(labels) == category)
                    subset = EmbeddingSet(kind, model_id, [embeddings.ids[i] for i in rows],
                                          embeddings.vectors[rows])
                    built.append(_build_one(ws, subset, index_name(kind, category), category,
                                            snapshot, M, ef_construction, recall_sample))
    if not built:
        raise PinshopError(f"no embeddings in {ws.root}: run `pinshop ingest` first")
    return built


def _categories(ws: Workspace) -> dict[str, str]:
    catalog = read_parquet(ws.catalog)
    if catalog is None:
        return {}
    rows = catalog.select(["id", "category"]).to_pylist()
    return {r["id"]: r["category"] or "uncategorized" for r in rows}


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
    ids: list[str]


def load_index(ws: Workspace, kind: str, category: str | None = None,
               allow_stale: bool = False) -> LoadedIndex:
    import hnswlib

    name = index_name(kind, category)
    manifest_path = ws.indexes_dir / f"{name}.json"
    if not manifest_path.exists():
        raise PinshopError(f"no {name} index in {ws.root}: run `pinshop index` first")
    manifest = IndexManifest(**json.loads(manifest_path.read_text()))
    if not allow_stale and snapshot_hash(ws, kind, manifest.model_id) != manifest.snapshot:
        raise StaleIndexError(
            f"index {name} was built before the latest ingest (it would serve outdated "
            "results): run `pinshop index`, or pass --rebuild to rebuild it now"
        )
    index = hnswlib.Index(space=manifest.space, dim=manifest.dim)
    index.load_index(str(ws.indexes_dir / f"{name}.hnsw"), max_elements=manifest.count)
    ids_table = read_parquet(ws.indexes_dir / f"{name}.ids.parquet")
    ids = ids_table.column("id").to_pylist() if ids_table is not None else []
    return LoadedIndex(manifest, index, ids)
