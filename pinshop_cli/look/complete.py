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

from ..retrieval.match import matches
from ..retrieval.retriever import Retriever
from ..retrieval.store import Filters, Product
from ..workspace import Workspace
from ..workspace.storage import sql_path
from .reference import resolve_reference, voted_category

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

BASKET_EVENTS = ("save", "cart", "purchase")  # the events that say "I want these together"
SMOOTHING = 1.0  # added to a category's scene count: one co-occurrence in one scene is weak
CANDIDATES = 20  # products fetched per compatible category before ranking
SOURCE_WORDS = {"pins": ("pinned", "pins"), "events": ("saved or bought", "baskets")}


@dataclass(frozen=True)
class Compatibility:
    """How often categories share a scene, and which products share a basket.

    pairs: (category, other, together, scenes, source) -- `together` scenes hold both,
    `scenes` hold `category`; `source` is the one that contributed most ("pins"/"events").
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
                verb, unit = SOURCE_WORDS[row["source"]]
                reason = (f"often {verb} with {row['category']} ({row['together']} of "
                          f"{row['scenes']} {unit})")
                best[row["other"]] = (confidence, reason)
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))
        return [(category, conf, reason) for category, (conf, reason) in ranked[:top]]

    def bought_with(self, product_id: str) -> dict[str, int]:
        """Products sharing a basket with `product_id` -> how many baskets."""
        import pyarrow.compute as pc

        rows = self.items.filter(pc.equal(self.items.column("item"), product_id))
        return dict(zip(rows.column("other").to_pylist(), rows.column("together").to_pylist(),
                        strict=True))

    def popular_in(self, category: str, top: int) -> list[str]:
        """The products of `category` in the most baskets (the evaluations' baseline)."""
        import pyarrow.compute as pc

        rows = self.popularity.filter(pc.equal(self.popularity.column("category"), category))
        return rows.column("item").to_pylist()[:top]  # sorted by the SQL


def _strings(values: list[str]) -> pa.Array:
    import pyarrow as pa

    return pa.array(values, pa.string())


# Co-occurrence of (scene, category, item) rows: one self-join per source in DuckDB.
_PAIRS_SQL = """
WITH s AS (SELECT DISTINCT scene, category, source FROM scene_items),
sizes AS (SELECT category, source, count(*) AS scenes FROM s GROUP BY ALL),
together AS (
  SELECT a.category, b.category AS other, a.source, count(*) AS together
  FROM s a JOIN s b ON a.scene = b.scene AND a.source = b.source
  WHERE a.category <> b.category GROUP BY ALL),
summed AS (
  SELECT t.category, t.other, t.together, z.scenes, t.source
  FROM together t JOIN sizes z USING (category, source))
SELECT category, other, sum(together)::BIGINT AS together, sum(scenes)::BIGINT AS scenes,
       arg_max(source, together) AS source
FROM summed GROUP BY category, other
"""
_ITEMS_SQL = """
WITH s AS (SELECT DISTINCT scene, item FROM scene_items WHERE item IS NOT NULL)
SELECT a.item, b.item AS other, count(*)::BIGINT AS together
FROM s a JOIN s b ON a.scene = b.scene AND a.item <> b.item GROUP BY ALL
"""
_POPULARITY_SQL = """
SELECT item, any_value(category) AS category, count(DISTINCT scene)::BIGINT AS scenes
FROM scene_items WHERE item IS NOT NULL GROUP BY item ORDER BY scenes DESC, item
"""


def compatibility_from_scenes(scene_items: pa.Table) -> Compatibility:
    """Learn from a table of (scene, category, item, source) rows; item may be null."""
    import duckdb

    con = duckdb.connect()
    con.register("scene_items", scene_items)
    return Compatibility(*(con.sql(sql).to_arrow_table()
                           for sql in (_PAIRS_SQL, _ITEMS_SQL, _POPULARITY_SQL)))


def workspace_scenes(ws: Workspace, before: str | None = None) -> pa.Table:
    """The workspace's scenes: detections per pin, and per-shopper-day baskets of events
    (only those before `before`, a timestamp, when given: for evaluations)."""
    import pyarrow as pa

    from ..workspace.storage import query_arrow

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
    """Top-k products of categories compatible with `scene`. Within a category, products
    bought together with the reference come first, then the rest by style (cosine to
    `vector`); `by="popularity"` is the evaluations' baseline instead (the category's most
    popular products, no product-level signal). Categories share the k places by their
    confidence: the product at rank r of a category with confidence c scores c / (r + 1)."""
    import numpy as np

    categories = compatibility.categories_for(scene, top=top_k)
    bought = compatibility.bought_with(reference_id) if reference_id and by == "style" else {}
    scale = retriever.similarity_scale(kind)
    scored: list[tuple[float, Pick]] = []
    for category, confidence, reason in categories:
        if by == "popularity":
            products = [Product.from_row(row) for row in
                        retriever.rows(compatibility.popular_in(category, top_k))]
        else:
            found = retriever.search(vector[None, :], CANDIDATES, kind,
                                     Filters(category=category), category=category)
            products = matches(retriever, found)[0]
            products.sort(key=lambda p: -bought.get(p.id, 0))  # stable: style order within
        percents = scale.percent(np.asarray([p.score for p in products], np.float64))
        scored += [
            (confidence / (rank + 1),
             Pick(p, f"{reason}; bought together {_times(bought[p.id])}" if p.id in bought
                  else f"{reason}; {pct}% similar in style", int(pct)))
            for rank, (p, pct) in enumerate(zip(products, percents, strict=True))]
    scored.sort(key=lambda item: -item[0])  # stable: ties keep the more compatible first
    return [pick for _, pick in scored[:top_k]]


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
        result.scene_categories = scene_categories(retriever, reference, detector, models_dir)
    compatibility = compatibility_from_scenes(workspace_scenes(retriever.ws))
    if compatibility.pairs.num_rows == 0:
        result.notes.append("no co-occurrence to learn from: ingest pins with a detector, or "
                            "events with saves, carts or purchases (`pinshop ingest-events`)")
        return result
    result.picks = rank_picks(retriever, compatibility, result.scene_categories, ref.vector,
                              top_k, ref.product.id if ref.product else None, kind=ref.kind)
    if not result.picks:
        result.notes.append(f"nothing in the workspace was seen together with "
                            f"{', '.join(result.scene_categories) or 'this scene'}")
    return result


def scene_categories(retriever: Retriever, photo: str, detector: str,
                     models_dir: str | None) -> list[str]:
    """Categories in a scene photo: each detected object's category, else its crop's
    nearest products' vote (the whole photo when nothing is detected)."""
    from ..ingestion.detect import PIN_DECODE_SIDE, detect_and_crop
    from ..io.images import load_image
    from ..models import get_detector

    image = load_image(Path(photo), min_side=PIN_DECODE_SIDE)
    regions = detect_and_crop(get_detector(detector, models_dir), [image])[0]
    vectors = retriever.embedder.embed_images([crop for _, crop in regions])
    found: list[str] = []
    for (detection, _), vector in zip(regions, vectors, strict=True):
        category = detection.category or voted_category(retriever, vector, "product_image")
        if category and category not in found:
            found.append(category)
    return found
