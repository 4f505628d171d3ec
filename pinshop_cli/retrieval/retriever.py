"""One Retriever for every query path (match, chat, /image, the look features):
filters -> index routing -> top-k -> the rows of the hits.

Filters become sets of allowed labels: masks over catalog columns aligned with the index's
labels (one join per index, then numpy), prepared once per filter and kept while it repeats.
A small allowed set is searched exactly (its vectors gathered from the memory-mapped copy
beside the index, one matrix product); a large one in the HNSW graph with over-fetching and
a boolean mask over labels, so no Python callback runs per label. When a filter is skewed
against the query (a price cap that only plants and vases pass, asked about sofas), the
graph's nearest candidates hold too few allowed products; those queries fan out to the
per-category indexes that hold the allowed products, and the rest are searched exactly.
Per-category indexes also answer when a query names a category that has one with enough
products; the result says which index answered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError, StaleIndexError
from ..index.hnsw import LoadedIndex, build_indexes, index_name, load_index, top_k_exact
from ..index.loaded import missing_index
from ..models.recorded import workspace_embedder
from ..workspace import Workspace
from .calibration import SimilarityScale, similarity_scale
from .store import CatalogStore, Filters, LabelColumns, Product

if TYPE_CHECKING:
    import numpy as np

    from ..models import Embedder

OVERFETCH = 2.0  # candidates fetched per expected survivor of the mask
# Exact search touches every allowed vector; masked HNSW visits about EXACT_FACTOR vectors
# per candidate it must fetch (k * OVERFETCH * total / allowed of them). Exact wins while
# allowed**2 <= EXACT_FACTOR * OVERFETCH * k * total: up to ~2.8k of 20k products, ~20k
# of a million (measured in bench/bench_scale.py).
EXACT_FACTOR = 20
#: ... and never past this many (a search by photo may ask for 16k candidates, which the
#: rule above would answer by gathering the vectors of 800k products).
EXACT_MAX = 65_536
# Filters prepared per retriever; each costs a mask (1 MB at 10^6 labels) and, for a set
# searched exactly, its vectors (at most ~30 MB at 10^6 products).
PREPARED = 16


def use_exact(allowed: int, k: int, total: int) -> bool:
    return allowed <= EXACT_MAX and allowed ** 2 <= EXACT_FACTOR * OVERFETCH * k * total


class AllowedSet:
    """The labels of one index that pass one filter: sorted (the gather then reads the
    vector copy forwards), a mask over every label, and the vectors exact search reads,
    gathered on first use."""

    def __init__(self, loaded: LoadedIndex, labels: np.ndarray) -> None:
        import numpy as np

        self.loaded = loaded
        self.labels = np.sort(np.asarray(labels, dtype=np.int64))
        self.mask = np.zeros(loaded.index.get_max_elements(), dtype=bool)
        self.mask[self.labels] = True

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def vectors(self) -> np.ndarray:
        return self.loaded.vectors_of(self.labels)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float


@dataclass
class SearchResult:
    hits: list[list[Hit]]  # per query, best first
    index: str  # the index that answered, e.g. "product_image@sofa"


@dataclass
class Partitions:
    """Where one filter's allowed products live, for queries the global graph could not
    answer: category indexes holding too many of them to search exactly, and the rest
    (searched in the global index, exactly when few)."""

    parts: list[tuple[LoadedIndex, AllowedSet]]
    categories: list[str]

    def describe(self, name: str) -> str:
        shown = ", ".join(self.categories[:3])
        more = f" and {len(self.categories) - 3} more" if len(self.categories) > 3 else ""
        return f"{name} by category ({shown}{more})" if self.categories else name


def search_index(loaded: LoadedIndex, queries: np.ndarray, k: int,
                 allowed: AllowedSet | None = None, escalate: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of the top-k per query among `allowed` labels (all when None).
    Rows hold -1 / -inf where fewer than k labels are allowed, or, without `escalate`,
    where one over-fetch found fewer than k of them."""
    import numpy as np

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    total = loaded.live_count
    if allowed is not None and use_exact(len(allowed), k, total):
        if len(allowed) == 0:
            return (np.full((len(queries), 0), -1, np.int64),
                    np.zeros((len(queries), 0), np.float32))
        positions, scores = top_k_exact(allowed.vectors, queries, k)
        return allowed.labels[positions], scores
    k = min(k, total if allowed is None else len(allowed))
    if allowed is None:
        return loaded.knn(queries, k)
    fetch = int(min(total, k * OVERFETCH * total / len(allowed) + k))
    chosen = np.full((len(queries), k), -1, np.int64)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    rows = np.arange(len(queries))  # the queries still short of k allowed labels
    while len(rows):
        labels, cosines = loaded.knn(queries[rows], fetch, ef=fetch)
        keep = allowed.mask[labels]
        done = (keep.sum(axis=1) >= k) | (not escalate) | (fetch >= total)
        # Stable per-row selection of the first k kept candidates (already best first).
        kept = keep[done]
        order = np.argsort(~kept, axis=1, kind="stable")[:, :k]
        valid = np.take_along_axis(kept, order, axis=1)
        chosen[rows[done]] = np.where(valid, np.take_along_axis(labels[done], order, 1), -1)
        scores[rows[done]] = np.where(valid, np.take_along_axis(cosines[done], order, 1),
                                      -np.inf)
        # Only the short queries search wider (one crowded query widened them all).
        rows, fetch = rows[~done], min(total, fetch * 4)
    return chosen, scores


def to_hits(loaded: LoadedIndex, labels: np.ndarray, scores: np.ndarray) -> list[list[Hit]]:
    ids = loaded.ids_by_label
    # tolist() converts each array once (iterating numpy scalars costs ~1 us apiece).
    return [[Hit(ids[label], round(score, 4))
             for label, score in zip(row_labels, row_scores, strict=True) if label >= 0]
            for row_labels, row_scores in zip(labels.tolist(), scores.tolist(), strict=True)]


class Retriever:
    """Search one workspace's indexes with catalog filters; loaded objects are kept for
    the life of the retriever (a chat session, a notebook), changed only by `apply` (a live
    price or stock update)."""

    def __init__(self, workspace: str | Path | Workspace | None = None,
                 models_dir: str | None = None, rebuild: bool = False,
                 runtime: str = "auto", allow_stale: bool = True,
                 device: str = "auto") -> None:
        """`rebuild` brings a stale index up to date before using it (a write: only on an
        explicit request such as `match --rebuild`); otherwise a stale index answers (see
        `notes`) when `allow_stale`, and is refused when not."""
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self.store = CatalogStore(self.ws)
        self.models_dir, self.rebuild, self.runtime = models_dir, rebuild, runtime
        self.device = device  # where the embedder (and match's detector) run
        self.allow_stale = allow_stale
        self._indexes: dict[str, LoadedIndex | None] = {}
        self._columns: dict[str, LabelColumns] = {}
        self._scales: dict[str, SimilarityScale] = {}
        self._filters: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder the workspace was built with (weights load on first use)."""
        if self._embedder is None:
            self._embedder = workspace_embedder(self.ws, models_dir=self.models_dir,
                                                runtime=self.runtime, device=self.device)
        return self._embedder

    def index(self, kind: str, category: str | None = None, rebuild: bool | None = None
              ) -> LoadedIndex | None:
        """The index of `kind` (per category when given); None if not built. A stale one
        is brought up to date with `rebuild` (default: the retriever's), else served as it
        is (answers leave out products removed since, and `notes` says so) or, without
        `allow_stale`, refused."""
        name = index_name(kind, category)
        if name not in self._indexes:
            try:
                loaded = load_index(self.ws, kind, category, allow_stale=True)
            except FileNotFoundError:
                loaded = None
            if loaded is not None and loaded.stale:
                if self.rebuild if rebuild is None else rebuild:
                    loaded.close()  # this generation is replaced: let the writer sweep it
                    build_indexes(self.ws.root, kinds=(kind,))  # an update in place: cheap
                    loaded = load_index(self.ws, kind, category)
                elif not self.allow_stale:
                    raise StaleIndexError(
                        f"index {name} was built before the latest ingest: run `pinshop index`")
            self._indexes[name] = loaded
        return self._indexes[name]

    @property
    def notes(self) -> list[str]:
        """What a user should know about the indexes that answered (a stale one)."""
        stale = [name for name, loaded in self._indexes.items()
                 if loaded is not None and loaded.stale]
        if not stale:
            return []
        return [f"index {', '.join(stale)} is older than the latest ingest: answers come from "
                "it with the current catalog rows (products removed since are left out, new "
                "or changed ones are not searched yet); run `pinshop index` to update it"]

    def category_index(self, kind: str, category: str, rebuild: bool | None = None
                       ) -> LoadedIndex | None:
        """The index built for exactly `category`, if there is one: index names are slugs,
        so "living room" and "living-room" (or two names in another script) share one
        name, and only the first of them has that index."""
        found = self.index(kind, category, rebuild)
        return found if found is not None and found.manifest.category == category else None

    def route(self, kind: str, category: str | None, k: int,
              filters: Filters | None = None) -> LoadedIndex:
        """The category's own index when it exists and holds at least k products passing
        `filters`, else the global index of `kind` (so whether a filtered answer is empty
        never depends on k)."""
        if category:
            routed = self.category_index(kind, category)
            if routed is not None and (
                    len(self.allowed(routed, filters)) if filters and not filters.empty
                    else routed.live_count) >= k:
                return routed
        loaded = self.index(kind)
        if loaded is None:
            raise PinshopError(missing_index(self.ws, kind))
        return loaded

    def search(self, queries: np.ndarray, k: int, kind: str, filters: Filters | None = None,
               category: str | None = None) -> SearchResult:
        """Top-k catalog hits per query vector, within `filters`, routed by `category`."""
        filters = filters or Filters()
        loaded = self.route(kind, category, k, filters)
        name = loaded.manifest.name
        if filters.empty and not self.has_removed(loaded):
            return SearchResult(to_hits(loaded, *search_index(loaded, queries, k)), name)
        allowed = self.allowed(loaded, filters)  # only products still in the catalog
        # Only the global index can fan out; one over-fetch in its graph answers most
        # queries, and those it leaves short go to the partitions.
        fans_out = loaded.manifest.category is None
        hits = to_hits(loaded, *search_index(loaded, queries, k, allowed,
                                             escalate=not fans_out))
        short = [row for row, found in enumerate(hits) if len(found) < min(k, len(allowed))]
        if not short:
            return SearchResult(hits, name)
        plan = self.partitions(loaded, filters, k)
        merged: list[list[Hit]] = [[] for _ in short]
        for part, part_allowed in plan.parts:
            answers = to_hits(part, *search_index(part, queries[short], k, part_allowed))
            for pooled, answer in zip(merged, answers, strict=True):
                pooled.extend(answer)
        for row, pooled in zip(short, merged, strict=True):
            best: dict[str, Hit] = {}  # a product found by two parts counts once
            for hit in sorted(pooled, key=lambda hit: -hit.score):
                best.setdefault(hit.id, hit)
            hits[row] = list(best.values())[:k]
        return SearchResult(hits, plan.describe(name))

    def has_removed(self, loaded: LoadedIndex) -> bool:
        """Whether a stale index holds products the catalog no longer has."""
        return loaded.stale and len(self.label_columns(loaded).labels) < loaded.live_count

    def count(self, filters: Filters, kind: str) -> int:
        """Catalog rows passing `filters`. When the global `kind` index holds every row,
        its prepared allowed set answers (and the search that follows reuses it)."""
        loaded = self.index(kind)
        if loaded is None or loaded.stale or loaded.live_count != self.store.size:
            return self.store.count(filters)
        return loaded.live_count if filters.empty else len(self.allowed(loaded, filters))

    def allowed(self, loaded: LoadedIndex, filters: Filters) -> AllowedSet:
        """The labels of `loaded` passing `filters`, prepared once while the filter repeats."""
        return self.prepared((loaded.manifest.name, filters), lambda: AllowedSet(
            loaded, self.label_columns(loaded).allowed(filters)))

    def partitions(self, loaded: LoadedIndex, filters: Filters, k: int) -> Partitions:
        """Split a filter's allowed labels by category: a category holding too many to
        search exactly goes to its own index (where the filter is rarely as skewed), the
        rest stay with `loaded`."""
        def plan() -> Partitions:
            import numpy as np

            columns = self.label_columns(loaded)
            passing = columns.passing(filters)
            codes = columns.category_codes[passing]
            counts = np.bincount(codes + 1, minlength=len(columns.categories) + 1)[1:]
            rest = np.ones(len(codes), dtype=bool)
            parts, categories = [], []
            for category, code in columns.categories.items():  # tens, not rows
                if use_exact(int(counts[code]), k, loaded.live_count):
                    continue
                try:  # never a rebuild in the middle of a query
                    part = self.category_index(loaded.manifest.kind, category, rebuild=False)
                except StaleIndexError:  # refused (allow_stale=False)
                    part = None
                if part is None:
                    continue
                parts.append((part, self.allowed(part, filters)))
                categories.append(category)
                rest &= codes != code
            if rest.all():
                parts.append((loaded, self.allowed(loaded, filters)))
            elif rest.any():
                parts.append((loaded, AllowedSet(loaded, columns.labels[passing][rest])))
            return Partitions(parts, categories)

        return self.prepared((loaded.manifest.name, filters, k), plan)

    def prepared(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """A small LRU of things prepared once and reused while they repeat: filters'
        allowed sets and partition plans, a photo's region detector."""
        if key in self._filters:
            self._filters.move_to_end(key)
        else:
            self._filters[key] = make()
            if len(self._filters) > PREPARED:
                self._filters.popitem(last=False)
        return self._filters[key]

    def label_columns(self, loaded: LoadedIndex) -> LabelColumns:
        """Filter columns aligned with an index's labels, computed once per index."""
        name = loaded.manifest.name
        if name not in self._columns:
            self._columns[name] = self.store.label_columns(loaded.label_table)
        return self._columns[name]

    def apply(self, product_id: str, assignments: dict[str, Any]) -> bool:
        """A live change to one product (retrieval/updates.py), visible to the next query:
        its catalog row, and its price paid in the filter columns of every loaded index (one
        position each, found by binary search), with the filters prepared on old prices
        dropped. False when the catalog has no such product."""
        import numpy as np
        import pyarrow.compute as pc

        if not self.store.apply(product_id, assignments):
            return False
        if {"price", "sale_price"} & assignments.keys():
            # The filters judge the price paid (a sale below the price counts).
            paid = Product.from_row(self.store.rows([product_id])[0]).paid
            for name, columns in self._columns.items():
                loaded = self._indexes.get(name)
                if loaded is None:
                    continue
                at = pc.index(loaded.label_table.column("id"), product_id).as_py()
                if at < 0:
                    continue
                label = loaded.label_table.column("label")[at].as_py()
                position = int(np.searchsorted(columns.labels, label))
                if position < len(columns.labels) and columns.labels[position] == label:
                    columns.price[position] = np.nan if paid is None else paid
            for key in [k for k in self._filters if len(k) > 1 and isinstance(k[1], Filters)]:
                del self._filters[key]
        return True

    def similarity_scale(self, kind: str) -> SimilarityScale:
        """How cosines in the global `kind` index rank among its product pairs (once)."""
        if kind not in self._scales:
            loaded = self.route(kind, None, 1)
            self._scales[kind] = similarity_scale(loaded, self.label_columns(loaded))
        return self._scales[kind]

    def rows(self, ids: list[str]) -> list[dict[str, Any]]:
        return self.store.rows(ids)

    @property
    def text_kind(self) -> str:
        """The index that answers a text query: product photos when the embedder puts texts
        and images in one space (CLIP), else product texts."""
        return "product_image" if self.embedder.shared_space else "product_text"

    def search_text(self, text: str, k: int, filters: Filters | None = None) -> SearchResult:
        """Top-k catalog hits for a text query, in the index `text_kind` names."""
        return self.search(self.embedder.embed_texts([text]), k, self.text_kind, filters)

    def products(self, hits: Sequence[Hit]) -> list[Product]:
        """The catalog rows of `hits` as Products with the hits' scores, in the hits' order
        (a product no longer in the catalog is left out)."""
        return self.products_per_query([hits])[0]

    def products_per_query(self, hits: Sequence[Sequence[Hit]]) -> list[list[Product]]:
        """`products` for each query's hits: one catalog lookup for all of them."""
        rows = {r["id"]: r for r in self.store.rows(
            list(dict.fromkeys(h.id for found in hits for h in found)))}
        return [[Product.from_row(rows[h.id], h.score) for h in found if h.id in rows]
                for found in hits]

    def close(self) -> None:
        """Release the catalog and the index generations held (writers may sweep them)."""
        self.store.close()
        for loaded in self._indexes.values():
            if loaded is not None:
                loaded.close()
