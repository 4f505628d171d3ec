"""`complete`: products from *other* categories that go with a scene or a product.

Which categories go together is learned from co-occurrence in the workspace, in DuckDB:
detected objects in the same pin, and items saved, carted or bought by one shopper on one
day. Within each compatible category, products are ranked by style: the cosine between the
scene (or product) and the product photos, in the embedder's image space. Products bought
together with a reference product come first in their category.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..retrieval import families
from ..retrieval.retriever import Hit, Retriever
from ..retrieval.store import Filters, Product
from ..workspace import Workspace
from ..workspace.storage import sql_path
from .reference import guess_note, resolve_reference, vectors_of, voted_category

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

BASKET_EVENTS = ("save", "cart", "purchase")  # the events that say "I want these together"
SMOOTHING = 1.0  # added to a category's scene count: one co-occurrence in one scene is weak
CANDIDATES = 50  # products fetched per compatible category before ranking
CATEGORY_POOL = 10  # compatible categories ranked together, at least
SOURCE_WORDS = {"pins": "pinned", "events": "saved or bought"}  # the verb of a source
SCENE_WORDS = {"pins": "pins", "events": "baskets", "events+pins": "pins and baskets"}
OFTEN = 0.1  # "often saved with" from this share of the scenes on (not "1 of 107 baskets")


@dataclass(frozen=True)
class Compatibility:
    """How often categories share a scene, and which products share a basket.

    pairs: (category, other, together, scenes, source, sources) -- `together` scenes hold
    both, `scenes` hold `category`; `source` contributed most of `together` ("pins" or
    "events"), `sources` are those `scenes` come from ("events+pins" for both).
    items: (item, other, together) -- baskets holding both products.
    popularity: (item, category, scenes) -- baskets holding the product, most first.
    """

    pairs: pa.Table
    items: pa.Table
    popularity: pa.Table

    def categories_for(self, scene: list[str], top: int) -> list[tuple[str, float, str]]:
        """(category, confidence, reason) for categories not in `scene`, most compatible
        first; confidence is max over scene categories of together / (scenes + 1)."""
        import pyarrow.compute as pc

        rows = self.pairs.filter(pc.is_in(self.pairs.column("category"),
                                          value_set=_strings(scene)))
        rows = rows.filter(pc.invert(pc.is_in(rows.column("other"),
                                              value_set=_strings(scene))))
        best: dict[str, tuple[float, str]] = {}
        for row in rows.to_pylist():  # at most scene x categories rows
            confidence = row["together"] / (row["scenes"] + SMOOTHING)
            if confidence > best.get(row["other"], (0.0, ""))[0]:
                often = "often " if row["together"] >= OFTEN * row["scenes"] else ""
                reason = (f"{often}{SOURCE_WORDS[row['source']]} with {row['category']} "
                          f"({row['together']} of {row['scenes']} "
                          f"{SCENE_WORDS[row['sources']]})")
                best[row["other"]] = (confidence, reason)
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))
        return [(category, conf, reason) for category, (conf, reason) in ranked[:top]]

    def bought_with(self, product_id: str) -> dict[str, int]:
        """Products sharing a basket with `product_id` -> how many baskets."""
        import pyarrow.compute as pc

        rows = self.items.filter(pc.equal(self.items.column("item"), product_id))
        return dict(zip(rows.column("other").to_pylist(), rows.column("together").to_pylist(),
                        strict=True))

    def popularity_of(self, ids: list[str]) -> dict[str, int]:
        """Baskets holding each of `ids` (absent: none)."""
        import pyarrow.compute as pc

        rows = self.popularity.filter(pc.is_in(self.popularity.column("item"),
                                               value_set=_strings(ids)))
        return dict(zip(rows.column("item").to_pylist(), rows.column("scenes").to_pylist(),
                        strict=True))

    def popular_in(self, category: str, top: int) -> list[str]:
        """The products of `category` in the most baskets (the evaluations' baseline)."""
        import pyarrow.compute as pc

        rows = self.popularity.filter(pc.equal(self.popularity.column("category"), category))
        return rows.column("item").to_pylist()[:top]  # sorted by the SQL


def _strings(values: list[str]) -> pa.Array:
    import pyarrow as pa

    return pa.array(values, pa.string())


# Co-occurrence of (scene, category, item) rows in DuckDB. Scenes holding more than
# MAX_SCENE_ITEMS products (a reseller's bulk order, a bot) say little about what goes
# together and would cost their size squared in pairs: they are left out of the pairs.
MAX_SCENE_ITEMS = 50
_SCENES_SQL = f"""
CREATE TEMP TABLE kept AS
SELECT * FROM scene_items WHERE scene IN (
  SELECT scene FROM scene_items GROUP BY scene
  HAVING count(DISTINCT coalesce(item, category)) <= {MAX_SCENE_ITEMS})
"""
_PAIRS_SQL = """
WITH s AS (SELECT DISTINCT scene, category, source FROM kept),
sizes AS (SELECT category, count(*) AS scenes,
                 string_agg(DISTINCT source, '+' ORDER BY source) AS sources
          FROM s GROUP BY category),
together AS (
  SELECT a.category, b.category AS other, a.source, count(*) AS together
  FROM s a JOIN s b ON a.scene = b.scene AND a.source = b.source
  WHERE a.category <> b.category GROUP BY ALL)
SELECT t.category, t.other, sum(t.together)::BIGINT AS together,
       any_value(z.scenes)::BIGINT AS scenes, arg_max(t.source, t.together) AS source,
       any_value(z.sources) AS sources
FROM together t JOIN sizes z USING (category) GROUP BY t.category, t.other
"""
_ITEMS_SQL = """
WITH s AS (SELECT DISTINCT scene, item FROM kept WHERE item IS NOT NULL)
SELECT a.item, b.item AS other, count(*)::BIGINT AS together
FROM s a JOIN s b ON a.scene = b.scene AND a.item <> b.item
WHERE $items IS NULL OR list_contains($items, a.item) GROUP BY ALL
"""
_POPULARITY_SQL = """
SELECT item, any_value(category) AS category, count(DISTINCT scene)::BIGINT AS scenes
FROM scene_items WHERE item IS NOT NULL GROUP BY item ORDER BY scenes DESC, item
"""


def compatibility_from_scenes(scene_items: pa.Table, items: list[str] | None = None
                              ) -> Compatibility:
    """Learn from a table of (scene, category, item, source) rows; item may be null.
    Bought-together pairs are counted for `items` only when given (all when None)."""
    import duckdb

    con = duckdb.connect()
    con.register("scene_items", scene_items)
    con.execute(_SCENES_SQL)
    return Compatibility(con.sql(_PAIRS_SQL).to_arrow_table(),
                         con.sql(_ITEMS_SQL, params={"items": items}).to_arrow_table(),
                         con.sql(_POPULARITY_SQL).to_arrow_table())


def workspace_scenes(ws: Workspace, before: str | None = None) -> pa.Table:
    """The workspace's scenes: detections per pin, and per-shopper-day baskets of events
    (only those before `before`, a timestamp, when given: for evaluations)."""
    import pyarrow as pa

    from ..index.hnsw import REINGEST
    from ..workspace.integrity import require_parquet
    from ..workspace.layout import EVENTS_AGAIN
    from ..workspace.storage import query_arrow

    for path, fix in ((ws.detections, REINGEST["detections"]), (ws.events, EVENTS_AGAIN)):
        if path.exists():  # damaged: one line naming the fix, not a DuckDB traceback
            require_parquet(path, fix)
    parts = []
    if ws.detections.exists():
        parts.append(f"SELECT pin_id AS scene, category, NULL::VARCHAR AS item, 'pins' AS "
                     f"source FROM read_parquet({sql_path(ws.detections)}) "
                     "WHERE category IS NOT NULL")
    if ws.events.exists():
        events = ", ".join(f"'{e}'" for e in BASKET_EVENTS)
        parts.append(
            f"SELECT e.user_id || '/' || CAST(e.ts AS DATE) AS scene, c.category, e.item_id "
            f"AS item, 'events' AS source FROM read_parquet({sql_path(ws.events)}) e "
            f"JOIN read_parquet({sql_path(ws.catalog)}) c ON c.id = e.item_id "
            f"WHERE e.event IN ({events}) AND c.category IS NOT NULL"
            + (f" AND e.ts < TIMESTAMP '{datetime.fromisoformat(before)}'" if before else ""))
    if not parts:
        return pa.table({"scene": pa.array([], pa.string()),
                         "category": pa.array([], pa.string()),
                         "item": pa.array([], pa.string()),
                         "source": pa.array([], pa.string())})
    return query_arrow(" UNION ALL ".join(parts))


@dataclass
class Pick:
    product: Product
    reason: str  # why this category, and why this product
    style: int  # percent: how the style cosine ranks among same-category pairs


@dataclass
class CompleteTheLook:
    reference: str
    reference_product: Product | None
    scene_categories: list[str]
    picks: list[Pick] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference,
                "reference_product": asdict(self.reference_product)
                if self.reference_product else None,
                "scene_categories": self.scene_categories,
                "notes": self.notes,
                "picks": [{**asdict(p.product), "reason": p.reason, "style": p.style}
                          for p in self.picks]}


def rank_picks(retriever: Retriever, compatibility: Compatibility, scene: list[str],
               vector: np.ndarray, top_k: int, reference_id: str | None = None,
               by: str = "style", kind: str = "product_image") -> list[Pick]:
    """Top-k products of categories compatible with `scene`, by an estimate of how likely
    each goes with it:

        P(category | scene) * P(product | category, scene) + P(product | reference)

    The first factor is the category's co-occurrence confidence; the second spreads it over
    the category's candidates (its products nearest in style) in proportion to popularity
    (baskets + 1) times style (the calibrated percent); the last is the share of the
    reference's baskets holding the product (bought together). `by="popularity"` is the
    evaluations' baseline: the category's most popular products, by popularity alone."""
    import numpy as np

    # The same categories whatever k (up to CATEGORY_POOL), so a shorter list is the first
    # picks of a longer one.
    categories = compatibility.categories_for(scene, top=max(top_k, CATEGORY_POOL))
    bought = compatibility.bought_with(reference_id) if reference_id and by == "style" else {}
    reference_baskets = (compatibility.popularity_of([reference_id]).get(reference_id, 0)
                         if reference_id and bought else 0)
    scale = retriever.similarity_scale(kind)
    scored: list[tuple[float, Pick]] = []
    for category, confidence, reason in categories:
        if by == "popularity":
            products = retriever.products([Hit(pid, 0.0) for pid in
                                           compatibility.popular_in(category, top_k)])
        else:
            # A family, or one photo's listings, is one candidate (its best variant).
            products = families.search(retriever, vector[None, :], CANDIDATES, kind,
                                       Filters(category=category), category=category
                                       ).products(retriever)[0]
            products = _with_bought(retriever, products, _bought_beyond(
                retriever, compatibility, bought, category, products, vector, kind), bought,
                kind)
        if not products:
            continue
        percents = scale.percent(np.asarray([p.score for p in products], np.float64))
        popularity = compatibility.popularity_of([p.id for p in products])
        weight = np.asarray([popularity.get(p.id, 0) + 1 for p in products], np.float64)
        if by != "popularity":
            weight *= percents / 100 + 1e-3  # a product unlike the scene still counts a bit
        shares = confidence * weight / weight.sum()
        for product, pct, share in zip(products, percents, shares, strict=True):
            together = bought.get(product.id, 0)
            why = (f"bought together {_times(together)}" if together
                   else f"{pct}% similar in style")
            scored.append((share + together / (reference_baskets + 1),
                           Pick(product, f"{reason}; {why}", int(pct))))
    scored.sort(key=lambda item: -item[0])  # stable: ties keep the more compatible first
    return [pick for _, pick in scored[:top_k]]


def _bought_beyond(retriever: Retriever, compatibility: Compatibility, bought: dict[str, int],
                   category: str, products: list[Product], vector: np.ndarray, kind: str
                   ) -> list[Product]:
    """Products of `category` bought with the reference that the style search did not
    reach (a large category), scored by their cosine to `vector` like the others."""
    import pyarrow.compute as pc

    if not bought:
        return []
    table = compatibility.popularity
    in_category = table.filter(pc.and_(pc.equal(table.column("category"), category),
                                       pc.is_in(table.column("item"),
                                                value_set=_strings(list(bought)))))
    seen = {p.id for p in products}
    wanted = [i for i in in_category.column("item").to_pylist() if i not in seen]
    ids, vectors = vectors_of(retriever, wanted[:CANDIDATES], kind)
    return retriever.products([Hit(i, float(v @ vector))
                               for i, v in zip(ids, vectors, strict=True)])


def _with_bought(retriever: Retriever, products: list[Product], extra: list[Product],
                 bought: dict[str, int], kind: str) -> list[Product]:
    """`products` and the `extra` ones bought with the reference, a family (or one photo's
    listings) once: as its listing bought with the reference most often (the one to name),
    else as the search showed it."""
    import numpy as np

    index = families.family_index(retriever.store, kind)
    together = products + extra
    if not extra or index is None:
        return together
    codes = index.codes_of(np.asarray([p.id for p in together], dtype=object))
    times = np.asarray([bought.get(p.id, 0) for p in together])
    # Per family, the most bought first, then the search's order; a product without one
    # is its own (a negative code of its own).
    own = np.where(codes >= 0, codes, -1 - np.arange(len(together)))
    order = np.lexsort((np.arange(len(together)), -times, own))
    first = np.zeros(len(together), dtype=bool)
    first[order[np.r_[True, own[order][1:] != own[order][:-1]]]] = True
    for product, code in zip(together, codes.tolist(), strict=True):
        if code >= 0 and product.family is None:
            product.family = index.describe(code)
    return [p for p, kept in zip(together, first.tolist(), strict=True) if kept]


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def complete(reference: str, workspace: str | Path | None = None, top_k: int = 5,
             retriever: Retriever | None = None, detector: str = "auto",
             models_dir: str | None = None, runtime: str = "auto") -> CompleteTheLook:
    """Products from other categories that go with `reference`: a product id, or a photo
    of a scene (its categories: the detected objects', else the nearest products' vote)."""
    retriever = retriever or Retriever(workspace, models_dir, runtime=runtime)
    ref = resolve_reference(retriever, reference)
    result = CompleteTheLook(reference, ref.product, [])
    if ref.product is not None:
        result.scene_categories = [ref.category] if ref.category else []
    else:
        result.scene_categories, guessed = scene_categories(retriever, reference, detector,
                                                            models_dir)
        result.notes.extend([guessed] if guessed else [])
    compatibility = compatibility_from_scenes(
        workspace_scenes(retriever.ws), [ref.product.id] if ref.product else [])
    if compatibility.pairs.num_rows == 0:
        result.notes.append("no co-occurrence to learn from: ingest pins with a detector, or "
                            "events with saves, carts or purchases (`pinshop ingest-events`)")
    else:
        result.picks = rank_picks(retriever, compatibility, result.scene_categories,
                                  ref.vector, top_k, ref.product.id if ref.product else None,
                                  kind=ref.kind)
        if not result.picks:
            result.notes.append(f"nothing in the workspace was seen together with "
                                f"{', '.join(result.scene_categories) or 'this scene'}")
    result.notes.extend(retriever.notes)
    return result


def scene_categories(retriever: Retriever, photo: str, detector: str,
                     models_dir: str | None) -> tuple[list[str], str | None]:
    """Categories in a scene photo: each region's category, else its crop's nearest
    products' vote (the whole photo when nothing is found); and a note when every one is
    a vote among products that look little like the photo."""
    from ..detection.crops import PIN_DECODE_SIDE, detect_and_crop
    from ..io.images import load_image
    from ..retrieval.match import photo_detector, region_vectors

    image = load_image(Path(photo), min_side=PIN_DECODE_SIDE)
    regions = detect_and_crop(photo_detector(retriever, detector, models_dir), [image])[0]
    vectors = region_vectors(retriever.embedder, regions)
    found: list[str] = []
    for (detection, _), vector in zip(regions, vectors, strict=True):
        category = detection.category or voted_category(retriever, vector, "product_image")
        if category and category not in found:
            found.append(category)
    if any(detection.category for detection, _ in regions):
        return found, None
    return found, guess_note(retriever, vectors, found)
