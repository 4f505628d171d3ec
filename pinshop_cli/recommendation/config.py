"""The recommender's settings, result types and event vocabulary.

Small on purpose and importing nothing heavy: the chat's taste profile (assistant/
personal.py) uses the same liked events and verbs as the recommender without loading the
scoring engine. The formulas the settings feed are in scorer.py's docstring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from ..io.events import EVENT_WEIGHTS

if TYPE_CHECKING:
    import duckdb

    from ..workspace.layout import Workspace

#: Saved, carted or bought: the items a taste profile is made of, and what counts as a hit
#: when recommendations are evaluated or the blend is fitted.
LIKED_EVENTS = ("save", "cart", "purchase")
#: What the shopper did, for "because you saved X" (the recommender and the chat).
VERBS = {"view": "viewed", "click": "clicked", "save": "saved", "cart": "added to cart",
         "purchase": "bought"}
#: The blend's components, in BlendWeights' field order.
COMPONENTS = ("cf", "taste", "popularity", "global_popularity", "again", "trending",
              "seasonal", "tastemates")


@dataclass(frozen=True)
class BlendWeights:
    """The unfitted defaults were chosen on the synthetic generator; on real purchase data
    they lose to plain popularity, which is why `recommend --tune` fits them per shop."""

    cf: float = 0.1
    taste: float = 0.2
    popularity: float = 1.0  # popularity within the categories the user shops
    global_popularity: float = 0.0  # the shop's best sellers, for everyone
    again: float = 0.0  # the user's own re-buyable purchases
    trending: float = 0.0  # the items whose category's demand grows this week (trends.py)
    seasonal: float = 0.0  # what sold in the coming weeks last year
    tastemates: float = 0.0  # what the shoppers of the nearest taste liked (tastemates.py)

    @classmethod
    def alone(cls, component: str) -> BlendWeights:
        """Weight 1 on `component` (one of COMPONENTS), 0 on every other."""
        if component not in COMPONENTS:
            raise ValueError(f"unknown blend component {component!r}: one of {COMPONENTS}")
        return cls(**{c: float(c == component) for c in COMPONENTS})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class RecommendConfig:
    k: int = 10
    half_life_days: float = 30.0
    popularity_half_life_days: float = 7.0
    history: int = 20
    neighbors: int = 20
    taste_pool: int = 50
    popular_pool: int = 50
    candidates: int = 100
    per_category: int = 3
    #: An item re-bought (on two or more days) by this share of its buyers, with at least
    #: REBUY_MIN_BUYERS (scorer.py) buyers, may be recommended again to those who bought it.
    rebuy_rate: float = 0.3
    #: MMR's trade of relevance for image variety (mmr.py): 1 keeps the blend's order;
    #: `recommend --tune` fits it (with the default head and pool).
    mmr_lambda: float = 1.0
    #: MMR keeps the blend's first `mmr_head` places as they are and picks the rest from a
    #: pool of the blend's best `mmr_pool` k. Not fitted: on completejourney lambda 0.5, a
    #: head of 5 and a pool of 10 k give +12% diversity at hit@10 0.896 (the plain blend:
    #: 0.901), but give up 5% of NDCG@10, more than the fit's rule allows (BENCHMARKS.md).
    mmr_head: int = 0
    mmr_pool: int = 3
    #: One slot of each list for an item outside the user's categories that shoppers of
    #: the same taste liked (serendipity.py). Off by default: on completejourney it cost
    #: 0.004 hit@10 and 3% NDCG@10 for 2% more diversity (BENCHMARKS.md).
    serendipity: bool = False
    #: The browsing session's pull (session.py), relative to the blend's largest weight.
    session_weight: float = 1.0
    #: None: the weights fitted to this workspace (`recommend --tune`), else the defaults.
    weights: BlendWeights | None = None
    memory_limit: str = "4GB"  # DuckDB spills to disk beyond this instead of failing

    @property
    def blend_weights(self) -> BlendWeights:
        return self.weights or BlendWeights()


def with_overrides(config: RecommendConfig, **overrides: Any) -> RecommendConfig:
    """dataclasses.replace, skipping None values (CLI options left unset)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Recommendation:
    user_id: str
    rank: int
    item_id: str
    title: str
    price: float | None
    currency: str | None
    category: str | None
    score: float
    reason: str

    def price_text(self) -> str:
        """'129.00 EUR', or '' without a price."""
        from ..retrieval.store import money

        return money(self.price, self.currency, missing="")


@dataclass
class Metrics:
    """At k, averaged over the users with relevant items (see metrics.py)."""

    hit_rate: float
    recall: float
    ndcg: float
    coverage: float
    #: Filled by `evaluate` (novelty.py, significance.py): mean -log2 popularity (None for
    #: a method that recommended nothing), mean
    #: pairwise image distance in a list (None without image vectors), the bootstrap 95%
    #: intervals of hit rate and NDCG over test users, and of the paired NDCG gain over
    #: most_popular_baseline.
    novelty: float | None = None
    diversity: float | None = None
    hit_rate_ci: tuple[float, float] | None = None
    ndcg_ci: tuple[float, float] | None = None
    ndcg_gain_ci: tuple[float, float] | None = None


@dataclass
class Evaluation:
    k: int
    cut: str
    train_events: int
    test_users: int
    methods: dict[str, Metrics]
    #: The blend fitted inside the training period (None when the weights were given).
    tuning: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["BlendWeights", "COMPONENTS", "EVENT_WEIGHTS", "Evaluation", "LIKED_EVENTS",
           "Metrics", "Recommendation", "RecommendConfig", "VERBS", "with_overrides"]


class ScoringContext(Protocol):
    """What a blend component's builder (trends.py, tastemates.py) needs of the Scorer: its
    connection, its settings, and the two helpers that make a component's part. A protocol,
    so the builders need not import the scorer that calls them."""

    ws: Workspace
    con: duckdb.DuckDBPyConnection
    config: RecommendConfig
    styles: Any  # the style fit (a pyarrow Table) once style.py has made or read it
    in_stock_only: bool  # sold-out items are not offered (Scorer.prepare)

    def normalize(self, component: str, query: str | None = None, append: bool = False,
                  **params: Any) -> None: ...

    def product_index(self) -> Any: ...

