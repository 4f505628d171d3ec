"""Product families: the variants of one product (a feed's `item_group_id`, a Shopify
export's `Handle`) shown once in search and `match`, as the best-scoring variant with a
summary of the rest ("3 colours, 4 sizes"). In a search by photo, listings outside any
family that share one photo file (a feed's placeholder, one maker's photo under several
sellers) are a family too: their vectors are one vector, so they tied for every place
("5 listings share this photo").

The search over-fetches (OVERSAMPLE candidates per answer); numpy over the hit table finds
each hit's family (a binary search in the sorted member ids), keeps each family's best hit
per query and then the best k per query; a query left with fewer than k families while more
candidates exist is searched again with a wider fetch, up to MAX_FETCH candidates (or the
first fetch, when k alone asks for more; or k + 1 times the largest family, up to
MAX_GROUP_FETCH, so that thousands of listings of one photo do not hide the rest): past that,
a query whose candidates are still a few families' variants gets fewer than k. The families
and their sizes (variants, distinct colours and sizes) are GROUP BYs over the catalog in
DuckDB, made once per catalog store and kind of search and kept as arrays. A catalog
without `item_group_id` or shared photos, and every product in neither, is searched exactly
as before.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .retriever import Hit, Retriever, SearchResult
from .store import CatalogStore, Filters, Product

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    import numpy as np

FAMILY_COLUMN = "item_group_id"
#: A row's family in SQL: its item_group_id trimmed, none when blank.
FAMILY_SQL = f"nullif(trim({FAMILY_COLUMN}::VARCHAR), '')"
PHOTO_KIND = "product_image"  # the searches where one photo under several listings is one
OVERSAMPLE = 4  # candidates fetched per family shown, before any widening
WIDEN = 4  # how much wider each further fetch is, for queries still short of k families
MAX_FETCH = 4_096  # candidates per query the widening stops at (a search, not a scan)
#: ... unless k + 1 of the largest family (one photo under 2,273 listings) take more, up to
#: this: past it, a query among a few huge groups shows fewer than k.
MAX_GROUP_FETCH = 16_384

_prepared: weakref.WeakKeyDictionary[CatalogStore, dict[bool, FamilyIndex | None]] = \
    weakref.WeakKeyDictionary()
_lock = threading.Lock()


def summary(colours: int, sizes: int, variants: int) -> str:
    """'3 colours, 4 sizes'; '5 variants' when they differ in neither."""
    parts = [f"{colours} colours" if colours > 1 else "",
             f"{sizes} sizes" if sizes > 1 else ""]
    return ", ".join(p for p in parts if p) or f"{variants} variants"


@dataclass
class FamilyIndex:
    """The catalog's families of two variants or more, as arrays: the member ids sorted
    (binary search finds a hit's family) with their family codes, and per code the
    family's id (None: listings sharing a photo), variants, distinct colours and sizes."""

    member_ids: np.ndarray  # object (str), sorted
    member_codes: np.ndarray  # int64 family code of each member
    names: np.ndarray  # object: family id per code, None for a shared photo's listings
    variants: np.ndarray  # int64 per code
    colours: np.ndarray
    sizes: np.ndarray

    def codes_of(self, ids: np.ndarray) -> np.ndarray:
        """The family code of each id (-1: none): a binary search per id, no hashing."""
        import numpy as np

        if not len(self.member_ids) or not len(ids):
            return np.full(len(ids), -1, np.int64)
        at = np.minimum(np.searchsorted(self.member_ids, ids), len(self.member_ids) - 1)
        return np.where(self.member_ids[at] == ids, self.member_codes[at], -1)

    def describe(self, code: int) -> dict[str, Any]:
        variants, colours, sizes = (int(self.variants[code]), int(self.colours[code]),
                                    int(self.sizes[code]))
        name = self.names[code]
        return {"id": None if name is None else str(name), "variants": variants,
                "colours": colours, "sizes": sizes,
                "summary": f"{variants} listings share this photo" if name is None
                else summary(colours, sizes, variants)}


def family_index(store: CatalogStore, kind: str | None = None) -> FamilyIndex | None:
    """The catalog's families (None without any) for a search of `kind`, with the shared
    photos' listings for a search by photo: GROUP BYs over the catalog in DuckDB on the
    first call per store and kind, kept while the store lives."""
    photos = kind == PHOTO_KIND
    with _lock:
        made = _prepared.get(store, {})
        if photos in made:
            return made[photos]
    found = _make_index(store, photos)  # a scan of the catalog: no other lookup waits on it
    with _lock:
        return _prepared.setdefault(store, {}).setdefault(photos, found)


def group_keys_sql(names: Collection[str], source: str, photos: bool,
                   extra: Mapping[str, str] | None = None) -> str | None:
    """SQL selecting (id, family, photo, *extra) from `source`, a table with the catalog's
    column `names`: a listing's family, and for a search by photo (`photos`), for a listing
    outside any, the family of a listing with the same photo file, else that photo's
    sha256 (as `photo`). None where the catalog has neither column: nothing to group."""
    grouped_photos = photos and "image_sha256" in names
    if FAMILY_COLUMN not in names and not grouped_photos:
        return None
    family = FAMILY_SQL if FAMILY_COLUMN in names else "NULL::VARCHAR"
    photo = "nullif(trim(image_sha256::VARCHAR), '')" if grouped_photos else "NULL::VARCHAR"
    shared = ("coalesce(own_family, CASE WHEN photo IS NOT NULL THEN max(own_family) OVER "
              "(PARTITION BY photo) END)" if grouped_photos else "own_family")
    columns = "".join(f", {sql} AS {name}" for name, sql in (extra or {}).items())
    names_out = "".join(f", {name}" for name in extra or {})
    return f"""
        SELECT id, family, CASE WHEN family IS NULL THEN photo END AS photo{names_out}
        FROM (SELECT *, {shared} AS family
              FROM (SELECT id, {family} AS own_family, {photo} AS photo{columns}
                    FROM {source}))"""


def _make_index(store: CatalogStore, photos: bool) -> FamilyIndex | None:
    import numpy as np

    con = store.con.cursor()
    try:
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM (DESCRIBE catalog)").fetchall()}

        def text(name: str) -> str:
            return (f"nullif(lower(trim({name}::VARCHAR)), '')" if name in columns
                    else "NULL::VARCHAR")

        keys = group_keys_sql(columns, "catalog", photos,
                              {"colour": text("color"), "size": text("size")})
        if keys is None:
            return None
        con.execute(f"CREATE TEMP TABLE members AS {keys}")
        families = con.sql("""
            SELECT family, photo, count(*) AS variants, count(DISTINCT colour) AS colours,
                   count(DISTINCT size) AS sizes,
                   (row_number() OVER (ORDER BY family, photo) - 1)::BIGINT AS code
            FROM members WHERE family IS NOT NULL OR photo IS NOT NULL
            GROUP BY family, photo HAVING count(*) > 1
            ORDER BY family, photo""").to_arrow_table()
        if not families.num_rows:
            return None
        con.register("family_codes", families.select(["family", "photo", "code"]))
        # Byte order of UTF-8 is code point order: numpy's binary search agrees with it.
        members = con.sql("""
            SELECT m.id, f.code FROM members m JOIN family_codes f
              ON m.family IS NOT DISTINCT FROM f.family AND m.photo IS NOT DISTINCT FROM f.photo
            ORDER BY m.id""").to_arrow_table()
    finally:
        con.close()
    return FamilyIndex(
        members.column("id").to_numpy(zero_copy_only=False).astype(object),
        members.column("code").to_numpy().astype(np.int64),
        families.column("family").to_numpy(zero_copy_only=False).astype(object),
        *(families.column(c).to_numpy().astype(np.int64)
          for c in ("variants", "colours", "sizes")))


@dataclass
class FamilySearch:
    """A search with each family shown once: the hits (best first per query), the index
    that answered, and the family of each hit that has one ({id, variants, colours, sizes,
    summary})."""

    hits: list[list[Hit]]
    index: str
    families: dict[str, dict[str, Any]] = field(default_factory=dict)

    def products(self, retriever: Retriever) -> list[list[Product]]:
        """The hits' catalog rows (one lookup for all queries), each with its family."""
        return products_of(retriever, [self])[0]


def products_of(retriever: Retriever, searches: Sequence[FamilySearch]
                ) -> list[list[list[Product]]]:
    """`FamilySearch.products` of several searches (a photo's regions, each searched with
    its own filters) with one catalog lookup for all of them."""
    found = iter(retriever.products_per_query([hits for s in searches for hits in s.hits]))
    answers = []
    for search in searches:
        rows = [next(found) for _ in search.hits]
        for row in rows:
            for product in row:  # the shown products only
                product.family = search.families.get(product.id)
        answers.append(rows)
    return answers


def collapse(found: FamilyIndex, hits: list[list[Hit]], k: int
             ) -> tuple[list[list[Hit]], dict[str, dict[str, Any]]]:
    """Each query's best hit per family, then its best k, and the families of those hits,
    in numpy over the hit table (each query's hits come best first; a hit without a family
    is its own)."""
    import numpy as np

    sizes = np.fromiter((len(row) for row in hits), np.int64, len(hits))
    flat = [hit for row in hits for hit in row]
    total = len(flat)
    ids = np.empty(total, dtype=object)
    ids[:] = [hit.id for hit in flat]
    query = np.repeat(np.arange(len(hits), dtype=np.int64), sizes)
    codes = found.codes_of(ids)
    # One key per (query, family), or per (query, hit) for a hit without a family.
    own = np.where(codes >= 0, codes, len(found.names) + np.arange(total))
    keys = query * (len(found.names) + total) + own
    _, first = np.unique(keys, return_index=True)  # each key's first hit: its best
    keep = np.zeros(total, dtype=bool)
    keep[first] = True
    kept = np.concatenate([[0], np.cumsum(keep)])  # kept hits before each position
    rank = kept[1:] - 1 - kept[np.cumsum(sizes) - sizes][query]  # among its query's kept
    keep &= rank < k
    collapsed: list[list[Hit]] = [[] for _ in hits]
    families: dict[str, dict[str, Any]] = {}
    for at in np.flatnonzero(keep).tolist():  # at most k per query: what is shown
        hit = flat[at]
        collapsed[int(query[at])].append(hit)
        if codes[at] >= 0:
            families[hit.id] = found.describe(int(codes[at]))
    return collapsed, families


def search(retriever: Retriever, queries: np.ndarray, k: int, kind: str,
           filters: Filters | None = None, category: str | None = None) -> FamilySearch:
    """`Retriever.search` with each family shown once (its best variant): over-fetched,
    collapsed, and searched wider for the queries that came back short of k families, up
    to MAX_FETCH candidates per query (or k * OVERSAMPLE when that is more). A query still
    short then returns the best families among those candidates, fewer than k: each its
    best variant, best first, never a plain search's scan of the whole catalog."""
    store = retriever.store
    found_families = family_index(store, kind)
    if found_families is None:
        plain = retriever.search(queries, k, kind, filters, category)
        return FamilySearch(plain.hits, plain.index)
    fetch = min(k * OVERSAMPLE, store.size)
    largest = int(found_families.variants.max())
    limit = min(store.size, max(MAX_FETCH, fetch, min((k + 1) * largest, MAX_GROUP_FETCH)))
    found: SearchResult = retriever.search(queries, fetch, kind, filters, category)
    hits, families = collapse(found_families, found.hits, k)
    while fetch < limit:
        short = [n for n, row in enumerate(hits)
                 if len(row) < k and len(found.hits[n]) >= fetch]
        if not short:
            break
        fetch = min(fetch * WIDEN, limit)
        wider = retriever.search(queries[short], fetch, kind, filters, category)
        more, more_families = collapse(found_families, wider.hits, k)
        for position, n in enumerate(short):
            hits[n], found.hits[n] = more[position], wider.hits[position]
        families.update(more_families)
    return FamilySearch(hits, found.index, families)
