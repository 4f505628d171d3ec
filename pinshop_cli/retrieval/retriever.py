"""One Retriever for every query path (match, chat, /image, the look features):
filters -> index routing -> top-k -> the rows of the hits.

Filters become arrays of allowed labels: masks over catalog columns aligned with the
index's labels (one join per index, then numpy per query). A small allowed set is searched
exactly (its vectors gathered from the memory-mapped copy beside the index, one matrix
product); a large one in the HNSW graph with over-fetching and a boolean mask over labels,
so no Python callback runs per label. Per-category indexes answer when a query names a
category that has one with enough products; the result says which index answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError, StaleIndexError
from ..index.hnsw import LoadedIndex, build_indexes, index_name, load_index, top_k_exact
from ..workspace import Workspace
from ..workspace.models import workspace_embedder
from .calibration import SimilarityScale, similarity_scale
from .store import CatalogStore, Filters, LabelColumns

if TYPE_CHECKING:
    import numpy as np

    from ..models import Embedder

OVERFETCH = 2.0  # candidates fetched per expected survivor of the mask
# Exact search touches every allowed vector; masked HNSW visits about EXACT_FACTOR vectors
# per candidate it must fetch (k * OVERFETCH * total / allowed of them). Exact wins while
# allowed**2 <= EXACT_FACTOR * OVERFETCH * k * total: up to ~2.8k of 20k products, ~20k
# of a million (measured in bench/bench_scale.py).
EXACT_FACTOR = 20


def use_exact(allowed: int, k: int, total: int) -> bool:
    return allowed ** 2 <= EXACT_FACTOR * OVERFETCH * k * total


@dataclass(frozen=True)
class Hit:
    id: str
    score: float


@dataclass
class SearchResult:
    hits: list[list[Hit]]  # per query, best first
    index: str  # the index that answered, e.g. "product_image@sofa"


def search_index(loaded: LoadedIndex, queries: np.ndarray, k: int,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of the top-k per query among `allowed` labels (all when None).
    Rows hold -1 / -inf where fewer than k labels are allowed."""
    import numpy as np

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    total = loaded.live_count
    if allowed is not None and use_exact(len(allowed), k, total):
        if len(allowed) == 0:
            return (np.full((len(queries), 0), -1, np.int64),
                    np.zeros((len(queries), 0), np.float32))
        allowed = np.sort(allowed)  # in file order: the gather reads the copy forwards
        positions, scores = top_k_exact(loaded.vectors_of(allowed), queries, k)
        return allowed[positions], scores
    k = min(k, total if allowed is None else len(allowed))
    if allowed is None:
        loaded.index.set_ef(max(64, 2 * k))
        labels, distances = loaded.index.knn_query(queries, k=k)
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)
    mask = np.zeros(loaded.index.get_max_elements(), dtype=bool)
    mask[allowed] = True
    fetch = int(min(total, k * OVERFETCH * total / len(allowed) + k))
    while True:
        loaded.index.set_ef(max(64, fetch))
        labels, distances = loaded.index.knn_query(queries, k=fetch)
        keep = mask[labels]
        if keep.sum(axis=1).min() >= k or fetch >= total:
            break
        fetch = min(total, fetch * 4)
    # Stable per-row selection of the first k kept candidates (already best first).
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(labels, order, axis=1).astype(np.int64)
    scores = (1.0 - np.take_along_axis(distances, order, axis=1)).astype(np.float32)
    valid = np.take_along_axis(keep, order, axis=1)
    return np.where(valid, chosen, -1), np.where(valid, scores, -np.inf)


class Retriever:
    """Search one workspace's indexes with catalog filters; loaded objects are kept for
    the life of the retriever (a chat session, a notebook), and never mutated."""

    def __init__(self, workspace: str | Path | Workspace | None = None,
                 models_dir: str | None = None, rebuild: bool = False,
                 runtime: str = "auto") -> None:
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self.store = CatalogStore(self.ws)
        self.models_dir, self.rebuild, self.runtime = models_dir, rebuild, runtime
        self._indexes: dict[str, LoadedIndex | None] = {}
        self._columns: dict[str, LabelColumns] = {}
        self._scales: dict[str, SimilarityScale] = {}
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder the workspace was built with (weights load on first use)."""
        if self._embedder is None:
            self._embedder = workspace_embedder(self.ws, models_dir=self.models_dir,
                                                runtime=self.runtime)
        return self._embedder

    def index(self, kind: str, category: str | None = None) -> LoadedIndex | None:
        """The current index of `kind` (per category when given); None if not built. A
        stale index is refused, or brought up to date with `rebuild`."""
        name = index_name(kind, category)
        if name not in self._indexes:
            try:
                self._indexes[name] = load_index(self.ws, kind, category)
            except StaleIndexError:
                if not self.rebuild:
                    raise
                build_indexes(self.ws.root, kinds=(kind,))  # an update in place: cheap
                self._indexes[name] = load_index(self.ws, kind, category)
            except FileNotFoundError:
                self._indexes[name] = None
        return self._indexes[name]

    def route(self, kind: str, category: str | None, k: int) -> LoadedIndex:
        """The category's own index when it exists and holds at least k products, else the
        global index of `kind`."""
        if category:
            routed = self.index(kind, category)
            if routed is not None and routed.live_count >= k:
                return routed
        loaded = self.index(kind)
        if loaded is None:
            raise PinshopError(f"no {kind} index in {self.ws.root}: run `pinshop index` first")
        return loaded

    def search(self, queries: np.ndarray, k: int, kind: str, filters: Filters | None = None,
               category: str | None = None) -> SearchResult:
        """Top-k catalog hits per query vector, within `filters`, routed by `category`."""
        loaded = self.route(kind, category, k)
        allowed = None
        if filters is not None and not filters.empty:
            allowed = self.label_columns(loaded).allowed(filters)
        labels, scores = search_index(loaded, queries, k, allowed)
        ids = loaded.ids_by_label
        hits = [[Hit(str(ids[label]), round(float(score), 4))
                 for label, score in zip(row_labels, row_scores, strict=True) if label >= 0]
                for row_labels, row_scores in zip(labels, scores, strict=True)]
        return SearchResult(hits, loaded.manifest.name)

    def label_columns(self, loaded: LoadedIndex) -> LabelColumns:
        """Filter columns aligned with an index's labels, computed once per index."""
        name = loaded.manifest.name
        if name not in self._columns:
            self._columns[name] = self.store.label_columns(loaded.label_table)
        return self._columns[name]

    def similarity_scale(self, kind: str) -> SimilarityScale:
        """How cosines in the global `kind` index rank among its product pairs (once)."""
        if kind not in self._scales:
            loaded = self.route(kind, None, 1)
            self._scales[kind] = similarity_scale(loaded, self.label_columns(loaded))
        return self._scales[kind]

    def rows(self, ids: list[str]) -> list[dict[str, Any]]:
        return self.store.rows(ids)

    def close(self) -> None:
        self.store.close()
