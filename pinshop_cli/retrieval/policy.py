"""What a shopping request retrieves: the rows passing every constraint, ranked by
similarity; when none pass, the closest alternatives with constraints relaxed one by one
(colour, then price, then category), saying which were dropped.

The relevance floor tells a request that matches nothing real ("a gold piano") from one the
catalog answers, and a shopper's taste may re-rank a wider pool of rows that already pass.
A product family (`item_group_id`) is shown once, as its best variant with its `family`
summary: the search is retrieval/families.py's, as in `match`. Chat uses this; it needs
nothing from the assistant (a taste is anything with `rerank`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, NamedTuple, Protocol

from . import families
from .retriever import Hit
from .store import Filters, Product

if TYPE_CHECKING:
    from .retriever import Retriever

SHOWN = 4  # rows a request retrieves
# Constraints dropped in turn when no row passes them all; category goes last.
LADDER: tuple[tuple[str, ...], ...] = ((), ("color",), ("color", "price"),
                                       ("color", "price", "category"))
# Below this cosine the request's own words match nothing real (measured on sample_data
# with MiniLM, price phrases and filler removed: the 18 catalog requests of the chat eval
# score >= 0.43, "gold piano", "television", "laptop", "winter jacket" <= 0.35).
RELEVANCE_FLOOR = {"all-MiniLM-L6-v2": 0.4}
# Which filter field makes a dropped constraint worth reporting.
_FIELD = {"color": "color", "category": "category", "price": "max_price"}


class Taste(Protocol):
    def rerank(self, hits: list[Hit]) -> list[Hit]: ...


class Retrieved(NamedTuple):
    products: list[Product]
    relaxed: list[str]  # constraints dropped to find them; "query": the words match nothing


def relax(filters: Filters, drop: Collection[str]) -> Filters:
    """`filters` without the constraints in `drop` ("color", "price", "category")."""
    keep_price = "price" not in drop
    return Filters(category=filters.category if "category" not in drop else None,
                   min_price=filters.min_price if keep_price else None,
                   max_price=filters.max_price if keep_price else None,
                   color=filters.color if "color" not in drop else None)


def retrieve(retriever: Retriever, filters: Filters, text: str, anchor: str | None = None,
             taste: Taste | None = None, request: str | None = None,
             shown: int = SHOWN) -> Retrieved:
    """Up to `shown` rows for a request: those passing `filters`, nearest to `text` (or, for
    "more like #2", to the `anchor` product's own vector, the anchor left out), re-ranked by
    `taste`; else the closest alternatives with constraints relaxed (see LADDER). With
    `request` (the shopper's own words; None for follow-ups), "query" is reported relaxed
    when the nearest row in the whole catalog is below the relevance floor."""
    import numpy as np

    kind = retriever.text_kind
    for drop in LADDER:
        allowed = relax(filters, drop)
        # The anchor is left out of the answer: it must not be the only row that passes.
        if retriever.count(allowed, kind) > (
                anchor is not None and retriever.store.passes(anchor, allowed)):
            relaxed = [d for d in drop if getattr(filters, _FIELD[d]) not in (None, "")]
            break
    else:
        return Retrieved([], [])
    index = retriever.route(kind, None, shown)
    pool = shown * 4 if taste else shown + 1  # taste re-ranks a wider pool
    held, vectors = index.vectors_by_id([anchor]) if anchor is not None else ([], None)
    # "more like #2": the anchor's own vector (its family is the anchor's, left out).
    queries = (np.asarray(vectors, np.float32) if held
               else retriever.embedder.embed_texts([text]))
    found = families.search(retriever, queries, pool, kind, allowed)
    hits = [h for h in found.hits[0] if h.id != anchor]
    hits = (taste.rerank(hits) if taste else hits)[:shown]
    floor = RELEVANCE_FLOOR.get(retriever.embedder.text_model_id)
    if anchor is None and floor and request is not None:
        # Judge the request's own words against the whole catalog: a category the model
        # picked for "a gold piano" must not make it look answerable.
        best = retriever.search_text(request, 1).hits[0]
        if not best or best[0].score < floor:
            relaxed.append("query")
    unscored: set[str] = set()
    if len(hits) < shown:  # rows without a vector of this kind still count, after the rest
        extra = retriever.store.without_vectors(index.label_table, allowed, shown + 1)
        filled = [pid for pid in extra if pid != anchor][:shown - len(hits)]
        hits += [Hit(pid, 0.0) for pid in filled]
        unscored = set(filled)
    products = retriever.products(hits)
    for product in products:  # the shown rows only
        product.family = found.families.get(product.id)
        if product.id in unscored:  # never compared: no score, not "0% similar"
            product.score = None
    return Retrieved(products, relaxed)
