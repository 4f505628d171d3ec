"""`similar`: look-alikes of a product or a photo in the same category, optionally only
strictly cheaper ones ("92% similar, 38% cheaper"). A product family (`item_group_id`) is
shown once, as its most similar variant with its `family` summary (retrieval/families.py);
the reference's own family is the reference's, so its other colours and sizes are not
look-alikes (with --cheaper the reference is filtered out, and its family's best cheaper
variant may be shown). So are other listings of the reference's very photo: with --cheaper
the cheapest match is the same product for less, "100% similar, 7% cheaper"."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import PinshopError
from ..retrieval import families
from ..retrieval.calibration import SAME_PHOTO
from ..retrieval.match import empty_because, price_caveat
from ..retrieval.retriever import Retriever
from ..retrieval.store import Filters, Product
from .reference import guess_note, resolve_reference


@dataclass
class LookAlike:
    product: Product
    similarity: int  # percent of same-category pairs less alike (see calibration)
    saving: int | None = None  # percent cheaper than the reference, when both have prices

    def caption(self) -> str:
        """'92% similar, 38% cheaper'."""
        text = f"{self.similarity}% similar"
        if self.saving is None:
            return text
        if self.saving == 0:
            return f"{text}, about the same price"
        return f"{text}, {abs(self.saving)}% {'cheaper' if self.saving > 0 else 'dearer'}"


@dataclass
class LookAlikes:
    reference: str
    reference_product: Product | None
    category: str | None
    category_source: str
    index: str  # the index that answered
    scale: str  # what the similarity percent ranks against
    items: list[LookAlike] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference,
                "reference_product": asdict(self.reference_product)
                if self.reference_product else None,
                "category": self.category, "category_source": self.category_source,
                "index": self.index, "similarity_scale": self.scale, "notes": self.notes,
                "items": [{**asdict(i.product), "similarity": i.similarity,
                           "saving": i.saving, "caption": i.caption()} for i in self.items]}


def saving_percent(price: float | None, reference_price: float | None) -> int | None:
    if price is None or not reference_price:
        return None
    saved = round(100 * (reference_price - price) / reference_price)
    return min(saved, 99) if price > 0 else saved  # 163.81 against 60,000 is not "100%"


def similar(reference: str, workspace: str | Path | None = None, cheaper: bool = False,
            max_price: float | None = None, top_k: int = 5, category: str | None = None,
            color: str | None = None,
            retriever: Retriever | None = None, models_dir: str | None = None,
            runtime: str = "auto") -> LookAlikes:
    """Products that look like `reference` (a product id or a photo path) in its category,
    best first. `cheaper` keeps only products strictly cheaper than the reference; `color`
    keeps the look in another colour (catalog colour, title or photo colour)."""
    import numpy as np

    retriever = retriever or Retriever(workspace, models_dir, runtime=runtime)
    ref = resolve_reference(retriever, reference, category and category.lower())
    reference_price = ref.product.paid if ref.product else None
    limit = max_price
    if cheaper:
        if reference_price is None:
            raise PinshopError(f"{reference} has no catalog price to be cheaper than: "
                               "pass a product id with a price, or --max-price")
        if reference_price <= 0:  # (one below 0 would reach the filters as a bad bound)
            raise PinshopError(f"{reference} costs {reference_price:.2f}: nothing is cheaper")
        below = float(np.nextafter(reference_price, -np.inf))  # strictly cheaper
        limit = below if limit is None else min(limit, below)
    notes = []
    if ref.kind != "product_image":
        notes.append(f"{reference} has no indexed photo: look-alikes by product text")
    if ref.category is None:
        notes.append("no category known for the reference: searching the whole catalog")
    elif ref.category_source == "nearest products":
        notes.extend(filter(None, [guess_note(retriever, ref.vector[None, :],
                                              [ref.category])]))
    filters = Filters(category=ref.category, max_price=limit, color=color)
    # + 2: the reference (or its family) and any other listings of its photo are left out.
    found = families.search(retriever, ref.vector[None, :], top_k + 2, ref.kind, filters,
                            category=ref.category)
    # Products passing the filters that have no vector of this kind (none were compared):
    # a count in DuckDB against the global index's prepared allowed set.
    every = retriever.route(ref.kind, None, 1)
    unseen = 0
    if every.live_count < retriever.store.size:
        unseen = retriever.store.count(filters) - len(retriever.allowed(every, filters))
    by_photo = ref.product is not None and ref.kind == families.PHOTO_KIND
    shown = found.products(retriever)[0]
    if by_photo and cheaper:
        shown = _cheapest_of_own_photo(retriever, reference, shown, filters)
    twins = [p for p in shown if by_photo and not cheaper and p.score is not None
             and p.score >= SAME_PHOTO]
    left_out = {reference, *(p.id for p in twins)}
    products = [p for p in shown if p.id not in left_out][:top_k]
    scale = retriever.similarity_scale(ref.kind)
    percents = scale.percent(np.asarray([p.score for p in products], dtype=np.float64))
    result = LookAlikes(reference, ref.product, ref.category, ref.category_source,
                        found.index, scale.population, notes=notes)
    result.items = [LookAlike(p, int(pct), saving_percent(p.paid, reference_price))
                    for p, pct in zip(products, percents, strict=True)]
    what = "photo" if ref.kind == "product_image" else "text vector"
    if unseen > 0:
        # The category alone is the reference's, not a filter the shopper gave.
        among = ("passing these filters" if replace(filters, category=None).describe()
                 else f"in {ref.category}" if ref.category else "in the catalog")
        result.notes.append(f"{unseen} product{'s' if unseen > 1 else ''} {among} "
                            f"ha{'ve' if unseen > 1 else 's'} no {what} and "
                            f"{'were' if unseen > 1 else 'was'} not compared")
    others = _other_listings(retriever, reference, twins)
    listings = f"{others} other listing{'s' if others > 1 else ''}"
    if not result.items and others:
        result.notes.append(f"every product found shares {reference}'s own photo (its "
                            f"{listings}): no look-alike to show")
    elif others:
        result.notes.append(f"{listings} of {reference}'s own photo left out: the same "
                            "product, not a look-alike (--cheaper shows the cheaper ones)")
    if not result.items and not others:
        # The shopper's own filters first: when they pass products, --cheaper emptied it.
        own = replace(filters, max_price=max_price)
        why = empty_because(retriever, own)
        besides = replace(own, category=None).describe()  # it blamed the price alone
        other = "other " if ref.product else ""  # a photo path is no catalog product
        result.notes.append(f"no {other}product with a {what} passes these filters" + (
            f": {why[0]}" if why else ": nothing cheaper in this category" +
            (f" with {besides}" if besides else "") if cheaper else ""))
    result.notes.extend(price_caveat(retriever, filters) + retriever.notes)
    return result


def _other_listings(retriever: Retriever, reference: str, twins: list[Product]) -> int:
    """Listings other than `reference` with its very photo file, where the search found
    some (`twins`: hits of its photo, the reference's own among them)."""
    if not twins:  # (one scan of the catalog: 10-30 ms at a million rows)
        return 0
    return retriever.store.photo_sharers(reference)


def _cheapest_of_own_photo(retriever: Retriever, reference: str, shown: list[Product],
                           filters: Filters) -> list[Product]:
    """`shown` with the listing of the reference's very photo file (one of its tied
    listings, found first) replaced by its cheapest listing passing `filters`: "the same
    product for less" at the least."""
    sharing = retriever.store.sharing_photo(reference, [p.id for p in shown])
    at = next((n for n, p in enumerate(shown) if p.id in sharing), None)
    cheapest = None if at is None else retriever.store.cheapest_sharing(reference, filters)
    if at is None or cheapest is None or cheapest == shown[at].id:
        return shown
    row = Product.from_row(retriever.store.rows([cheapest])[0], shown[at].score)
    row.family = shown[at].family
    return [row if n == at else p for n, p in enumerate(shown) if p.id != cheapest]
