"""What a look feature starts from: a catalog product (by id) or a photo (by path), as one
vector in product-image space with the category and price it implies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PinshopError
from ..io.images import ImageRejected, load_image
from ..retrieval.retriever import Hit
from ..retrieval.store import Product

if TYPE_CHECKING:
    import numpy as np

    from ..retrieval.retriever import Retriever

VOTE_NEIGHBOURS = 10  # a photo's category: the vote of its nearest catalog products,
VOTE_TEMPERATURE = 0.05  # each weighted by exp(-(best - score) / T): the nearest count most
#: A photo whose nearest product is less alike than this share of same-category product
#: pairs (the scale `similar` shows) has its category guessed, and is said so.
GUESS_PERCENT = 50


@dataclass
class Reference:
    label: str  # the id or the photo path, as the user gave it
    vector: np.ndarray  # (dim,) float32, L2-normalized
    kind: str  # the index kind the vector lives in
    category: str | None
    product: Product | None = None  # when the reference is a catalog product
    category_source: str = "catalog"  # "catalog", "--category" or "nearest products"


def vectors_of(retriever: Retriever, product_ids: list[str], kind: str
               ) -> tuple[list[str], np.ndarray]:
    """(the ids the `kind` index holds, their vectors in that order)."""
    import numpy as np

    loaded = retriever.index(kind)
    if loaded is None:
        return [], np.zeros((0, 0), np.float32)
    return loaded.vectors_by_id(product_ids)


def vector_of(retriever: Retriever, product_id: str, kind: str) -> np.ndarray | None:
    """The indexed vector of one product (None when that index does not hold it)."""
    found, vectors = vectors_of(retriever, [product_id], kind)
    return vectors[0] if found else None


def voted_category(retriever: Retriever, vector: np.ndarray, kind: str) -> str | None:
    """The category with the most weight among the nearest catalog products, each weighted
    by how close it is next to the nearest (so three far sideboards do not outvote a near
    chair in a small catalog)."""
    import math

    hits = retriever.search(vector[None, :], VOTE_NEIGHBOURS, kind).hits[0]
    categories = {p.id: p.category for p in retriever.products(hits)}
    votes: dict[str, float] = {}
    for hit in hits:
        category = categories.get(hit.id)
        if category:
            weight = math.exp(-(hits[0].score - hit.score) / VOTE_TEMPERATURE)
            votes[category] = votes.get(category, 0.0) + weight
    return max(votes, key=votes.__getitem__) if votes else None


def guess_note(retriever: Retriever, vectors: np.ndarray, categories: list[str]
               ) -> str | None:
    """A note when even the product nearest to any of `vectors` (a photo's regions) is
    less alike than GUESS_PERCENT of same-category pairs: the photo's `categories`, voted by
    such products, are a guess (a black square got "armchair" as surely as a real one)."""
    nearest = [hits[0].score for hits in
               retriever.search(vectors, 1, "product_image").hits if hits]
    if not nearest or not categories:
        return None
    percent = int(retriever.similarity_scale("product_image").percent(max(nearest)))
    if percent >= GUESS_PERCENT:
        return None
    return (f"nothing in the photo looks much like a catalog product (the nearest is "
            f"{percent}% similar): {', '.join(categories)} is a guess")


def resolve_reference(retriever: Retriever, reference: str, category: str | None = None
                      ) -> Reference:
    """A product id from the catalog, else a path to a photo (embedded whole). A photo's
    category is `category` when given, else the vote of its nearest products."""
    found = retriever.products([Hit(reference, 0.0)])
    if found:
        product = found[0]
        product.score = None  # the reference itself: not a search result ("score": 0.0)
        for kind in ("product_image", "product_text"):
            vector = vector_of(retriever, reference, kind)
            if vector is not None:
                return Reference(reference, vector, kind, category or product.category,
                                 product, "--category" if category else "catalog")
        raise PinshopError(f"product {reference} has no indexed vector: run `pinshop index`")
    path = Path(reference)
    if not path.is_file():
        raise PinshopError(f"{reference} is neither a product id in the catalog nor an image "
                           "file")
    try:
        image = load_image(path)
    except ImageRejected as exc:
        raise PinshopError(f"{reference}: {exc}") from exc
    vector = retriever.embedder.embed_images([image])[0]
    if category:
        return Reference(reference, vector, "product_image", category.lower(), None,
                         "--category")
    return Reference(reference, vector, "product_image",
                     voted_category(retriever, vector, "product_image"), None,
                     "nearest products")
