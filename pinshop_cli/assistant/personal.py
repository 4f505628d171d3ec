"""`pinshop chat --user U`: the shopper's taste, from their own events.

The profile is the recommender's taste profile (recommendation/taste.py: the
strength-weighted mean vector of the items they saved, put in the cart or bought), over the
recommender's product index (product images first). It re-ranks the candidates that already
meet the request (a candidate without a vector there gets no boost), and it is the only
source of "because you saved ...": the item named is one of the shopper's own events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..recommendation.config import LIKED_EVENTS, VERBS
from ..recommendation.taste import product_index, taste_profiles
from ..workspace.storage import query_arrow

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..index.hnsw import LoadedIndex
    from ..retrieval.retriever import Hit
    from ..workspace import Workspace

# How much taste counts beside the request's own similarity (both cosines). A judgement,
# not a fitted value: there are no chat sessions with outcomes to fit it on. Candidates
# already pass every stated constraint (category, colour, price filters), so among them
# taste counts as much as the wording.
TASTE_WEIGHT = 1.0


@dataclass
class ShopperTaste:
    user: str
    index: LoadedIndex
    profile: np.ndarray  # unit vector in the index's space
    liked: pa.Table  # item_id, strength, event (the strongest kind per item)

    @classmethod
    def load(cls, ws: Workspace, user: str) -> ShopperTaste | None:
        """The profile over the recommender's product index (product images first: visual
        taste); None when the shopper has no saved, carted or bought item in it."""
        index = product_index(ws)
        if index is None or not ws.events.exists():
            return None
        liked = query_arrow(
            "SELECT $user AS user_id, item_id, sum(weight) AS strength, "
            "arg_max(event, weight) AS event FROM read_parquet($path) "
            f"WHERE user_id = $user AND event IN {LIKED_EVENTS} GROUP BY item_id",
            {"user": user, "path": str(ws.events)})
        users, profiles = taste_profiles(index, liked)
        if len(users) == 0:
            return None
        return cls(user, index, profiles[0], liked)

    def rerank(self, hits: list[Hit]) -> list[Hit]:
        """Hits by request similarity + TASTE_WEIGHT x cosine to the profile."""
        import numpy as np

        from ..retrieval.retriever import Hit

        ids, vectors = self.index.vectors_by_id([h.id for h in hits])
        affinity = dict(zip(ids, (vectors @ self.profile).tolist(), strict=True))
        scored = [Hit(h.id, round(h.score + TASTE_WEIGHT * affinity.get(h.id, 0.0), 4))
                  for h in hits]
        order = np.argsort([-h.score for h in scored], kind="stable")
        return [scored[i] for i in order]

    def because(self, product_id: str) -> tuple[str, str] | None:
        """(liked item id, what the shopper did: "saved", "bought", ...) for the shopper's
        own liked item closest to the product; None when there is none to name."""
        liked_ids = self.liked.column("item_id").to_pylist()
        ids, vectors = self.index.vectors_by_id(liked_ids)
        target_ids, target = self.index.vectors_by_id([product_id])
        if not ids or not target_ids:
            return None
        closest = ids[int((vectors @ target[0]).argmax())]
        event = self.liked.column("event").to_pylist()[liked_ids.index(closest)]
        return (closest, VERBS[event]) if event in VERBS else None

