"""Several text queries answered together: one embedding call and one catalog lookup for
all of them (what `pinshop serve` does with the searches that queue up while a model call
runs). Each answer is what `match(text=...)` gives for that query alone, families folded
(retrieval/families.py)."""

from __future__ import annotations

from dataclasses import dataclass

from . import families
from .match import MatchResult, empty_because
from .retriever import Retriever
from .store import Filters


@dataclass(frozen=True)
class TextQuery:
    text: str
    top_k: int = 10
    category: str | None = None
    max_price: float | None = None
    color: str | None = None

    @property
    def filters(self) -> Filters:
        return Filters(category=self.category, max_price=self.max_price, color=self.color)


def match_texts(retriever: Retriever, queries: list[TextQuery]) -> list[MatchResult]:
    """A MatchResult per query, in order (each query's filters are its own)."""
    embedder = retriever.embedder
    filters = [query.filters for query in queries]  # a bad one fails before any model work
    vectors = embedder.embed_texts([query.text for query in queries])
    found = [families.search(retriever, vectors[n:n + 1], query.top_k, retriever.text_kind,
                             filters[n]) for n, query in enumerate(queries)]
    hits = [answer.hits[0] for answer in found]
    family_of = {pid: family for answer in found for pid, family in answer.families.items()}
    notes = []
    if retriever.text_kind == "product_text":
        notes.append("text matched against product texts (MiniLM); cross-modal search "
                     "(text -> product photos) needs a CLIP embedder")
    notes += embedder.runtime_notes + retriever.notes
    model = f"{embedder.image_model_id} / {embedder.text_model_id}"
    products = retriever.products_per_query(hits)
    for row in products:
        for product in row:  # the shown products only
            product.family = family_of.get(product.id)
    return [MatchResult(model, "", text=query.text, text_matches=shown,
                        notes=notes + ([] if shown else empty_because(retriever, wanted)),
                        runtime=embedder.runtime_used)
            for query, shown, wanted in zip(queries, products, filters, strict=True)]
