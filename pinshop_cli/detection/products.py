"""The catalog's product photos as regions see them: vectors by label, a nearest-product
search, each label's category and, in a catalog with families (`item_group_id`), each
label's family: a colour variant photographed apart is the same product to a region, not a
rival. At query time they are the saved product-image index; an ingest of pins before any
`pinshop index` builds the same graph in memory (never saved: only `pinshop index` writes
indexes)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from ..retrieval.retriever import AllowedSet, search_index
from ..workspace.embeddings import to_matrix

if TYPE_CHECKING:
    import numpy as np

    from ..index.hnsw import LoadedIndex
    from ..retrieval.retriever import Retriever
    from ..workspace import Workspace


#: The most variants of one family a search looks past for another product (a region's
#: second-best, a photo's nearest other): more would widen every search of every crop.
FAMILY_LOOK = 64


@dataclass
class ProductPhotos:
    index: LoadedIndex
    categories: np.ndarray  # object: the category of each label (None where unknown)
    vectors: np.ndarray | None = None  # by label, when the index has no saved copy
    #: By label, a code the variants of one family share (or the listings outside any
    #: family that share one photo file) and any other photo has alone; None without any.
    groups: np.ndarray | None = None
    #: The labels whose photo file a lower label has (None: none): one vector under many
    #: listings is searched once, so that a search's k nearest are k photos, not k copies
    #: of one (2,273 copies of a photo left the bars nothing to read: no other product).
    repeats: np.ndarray | None = None

    @cached_property
    def searched(self) -> AllowedSet | None:
        """The labels searches look at: all but `repeats` (None: all)."""
        import numpy as np

        if self.repeats is None:
            return None
        return AllowedSet(self.index, np.setdiff1d(self.labels, self.repeats,
                                                   assume_unique=True))

    @cached_property
    def largest_family(self) -> int:
        """Photos in the largest family or shared photo (1 without), at most FAMILY_LOOK."""
        import numpy as np

        if self.groups is None:
            return 1
        searched = self.labels if self.searched is None else self.searched.labels
        return min(int(np.bincount(self.groups[searched]).max()), FAMILY_LOOK)

    @property
    def labels(self) -> np.ndarray:
        return self.index.label_table.column("label").to_numpy()

    def __len__(self) -> int:
        return self.index.live_count

    def vectors_of(self, labels: np.ndarray) -> np.ndarray:
        if self.vectors is not None:
            return self.vectors[labels]
        return self.index.vectors_of(labels)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosines) of the k nearest product photos per vector, best first, a
        photo file shared by several listings once (fewer than k where there are fewer)."""
        return search_index(self.index, vectors, k, self.searched)

    def category(self, label: int) -> str:
        return str(self.categories[label] or "")

    @classmethod
    def from_retriever(cls, retriever: Retriever) -> ProductPhotos | None:
        """The product-image index a retriever serves (None: there is none)."""
        import numpy as np

        loaded = retriever.index("product_image")
        if loaded is None or not loaded.live_count:
            return None
        columns = retriever.label_columns(loaded)
        names = np.asarray(list(columns.categories), dtype=object)
        size = loaded.index.get_max_elements()
        categories = np.full(size, None, dtype=object)
        known = columns.category_codes >= 0
        categories[columns.labels[known]] = names[columns.category_codes[known]]
        table = loaded.label_table
        return cls(loaded, categories, None, *catalog_groups(
            retriever.ws, table.column("label"), table.column("id"), size))

    @classmethod
    def from_workspace(cls, ws: Workspace, model_id: str) -> ProductPhotos | None:
        """The saved product-image index when there is one, else one built in memory from
        the current product-image embeddings (None: no product has a photo). Kept per
        workspace state, so an ingest's driver and its local stage build it once."""
        from ..workspace.embeddings import snapshot_hash

        return _photos_of(ws, model_id, snapshot_hash(ws, "product_image", model_id))

    @classmethod
    def _load(cls, ws: Workspace, model_id: str) -> ProductPhotos | None:
        import numpy as np
        import pyarrow as pa

        from ..retrieval.retriever import Retriever

        if (ws.indexes_dir / "product_image.json").exists():
            retriever = Retriever(ws)
            try:
                return cls.from_retriever(retriever)
            finally:
                retriever.close()
        rows = _current_photos(ws, model_id)
        if rows is None or not rows.num_rows:
            return None
        vectors = to_matrix(rows.column("vector"))
        categories = np.asarray(rows.column("category").to_pylist(), dtype=object)
        labels = pa.array(np.arange(rows.num_rows), pa.int64())
        return cls(_in_memory_index(vectors, rows.column("id"), model_id), categories, vectors,
                   *catalog_groups(ws, labels, rows.column("id"), rows.num_rows))


def catalog_groups(ws: Workspace, labels: Any, ids: Any, size: int
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(groups, repeats) of ProductPhotos: by label (`size` of them), a code shared by the
    photos of one family's variants, or of listings outside any family that share one
    photo file, and unique to every other photo (None: no such group); and the labels
    whose photo file a lower label has (None: none). DuckDB joins of the photos' ids with
    the catalog."""
    import numpy as np
    import pyarrow as pa

    from ..retrieval.families import group_keys_sql
    from ..workspace.integrity import parquet_metadata
    from ..workspace.storage import query_arrow, sql_path

    if not ws.catalog.exists():
        return None, None
    names = parquet_metadata(ws.catalog).schema.names
    keys = group_keys_sql(names, f"read_parquet({sql_path(ws.catalog)})", photos=True, extra={
        "file": "nullif(trim(image_sha256::VARCHAR), '')" if "image_sha256" in names
        else "NULL::VARCHAR"})
    if keys is None:
        return None, None
    # One join: the group code of each photo in a group of two or more (codes may skip
    # numbers), and whether a lower label has its photo file.
    found = query_arrow(f"""
        SELECT label, CASE WHEN (family IS NOT NULL OR photo IS NOT NULL) AND
                                count(*) OVER (PARTITION BY family, photo) > 1
                           THEN dense_rank() OVER (ORDER BY family, photo) ELSE -1 END
                   AS code,
               coalesce(file IS NOT NULL AND
                        row_number() OVER (PARTITION BY file ORDER BY label) > 1, false)
                   AS repeat
        FROM photos p JOIN ({keys}) c USING (id)""",
        tables={"photos": pa.table({"label": labels, "id": ids})})
    label = found.column("label").to_numpy()
    code = found.column("code").to_numpy()
    repeat = found.column("repeat").to_numpy(zero_copy_only=False)
    repeats = np.sort(label[repeat]) if repeat.any() else None
    grouped = code >= 0  # (-1: alone)
    if not grouped.any():
        return None, repeats
    codes = code[grouped].astype(np.int64)
    groups = np.arange(size, dtype=np.int64) + int(codes.max()) + 1  # alone by default
    groups[label[grouped]] = codes
    return groups, repeats


@lru_cache(maxsize=2)
def _photos_of(ws: Workspace, model_id: str, snapshot: str) -> ProductPhotos | None:
    return ProductPhotos._load(ws, model_id)


def catalog_categories(ws: Workspace) -> list[str]:
    """The catalog's distinct categories (lower-cased), what detectors' classes map to."""
    from ..workspace.storage import query_arrow, sql_path

    table = query_arrow(f"SELECT DISTINCT lower(category) AS c FROM read_parquet("
                        f"{sql_path(ws.catalog)}) WHERE category IS NOT NULL ORDER BY c")
    return [str(c) for c in table.column("c").to_pylist()]


def _current_photos(ws: Workspace, model_id: str) -> Any:
    from ..workspace.embeddings import current_rows_sql
    from ..workspace.storage import query_arrow

    sql = current_rows_sql(ws, "product_image", "e.id, e.source_hash, e.vector, s.category")
    return None if sql is None else query_arrow(f"{sql} ORDER BY e.id", {"model": model_id})


def _in_memory_index(vectors: np.ndarray, ids: Any, model_id: str) -> LoadedIndex:
    """An HNSW graph over `vectors` (labels 0..n-1) with the settings `pinshop index` uses."""
    import hnswlib
    import numpy as np
    import pyarrow as pa

    from ..index.hnsw import SPACE, IndexManifest, LoadedIndex

    graph = hnswlib.Index(space=SPACE, dim=vectors.shape[1])
    graph.init_index(max_elements=len(vectors), M=16, ef_construction=200)
    graph.add_items(vectors, np.arange(len(vectors)))
    labels = pa.table({"label": pa.array(np.arange(len(vectors)), pa.int64()),
                       "id": ids})
    manifest = IndexManifest("product_image (in memory)", "product_image", None, model_id,
                             vectors.shape[1], SPACE, 16, 200, len(vectors), "", "", 0.0, 0,
                             None)
    return LoadedIndex(manifest, graph, labels)
