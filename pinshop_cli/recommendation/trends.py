"""Demand that moves with time: what is trending now, and what sold in the same weeks last
year. Both are the same for every user (as the shop's best sellers are); the fitted blend
decides how much they count (tuning.py).

    now(j), before(j) = sum of weight(e) over j's events in the TREND_DAYS before the
                        scoring date, and in the TREND_DAYS before those
    growth(c)         = (sum of now over c's items + PRIOR) / (sum of before + PRIOR):
                        the category's recent demand against the window before; PRIOR
                        keeps a category going from 1 sale to 3 from counting as a trend
    trending(j)       = (growth(c(j)) - 1) * now(j), for categories with growth > 1: the
                        `popular_pool` items whose recent demand grows most — "trending in
                        rugs this week"
    seasonal(j)       = sum of weight(e) over j's events in the SEASON_DAYS starting one
                        year before the scoring date: what sold in the coming weeks last
                        year — "in season: it sold this time last year"
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ScoringContext

TREND_DAYS = 7
PRIOR = 5.0  # in event weight: half a purchase, or five views
SEASON_DAYS = 14
YEAR = timedelta(days=364)  # 52 weeks: the same weekdays as this year


def trend_tables(scorer: ScoringContext, as_of: datetime, parts: tuple[str, ...]) -> None:
    """trending_part and seasonal_part, of those in `parts`, for the users in table
    `users`, from table `train`."""
    window = timedelta(days=TREND_DAYS)
    if "trending" in parts:
        scorer.normalize("trending", """
            WITH windows AS (
                SELECT k.category_key, t.item_id,
                       coalesce(sum(t.weight) FILTER (WHERE t.ts >= $recent), 0) AS now,
                       coalesce(sum(t.weight) FILTER (WHERE t.ts < $recent), 0) AS before
                FROM train t JOIN catalog k ON k.id = t.item_id
                WHERE t.ts >= $start GROUP BY k.category_key, t.item_id
            ), growth AS (
                SELECT category_key, (sum(now) + $prior) / (sum(before) + $prior) AS growth
                FROM windows GROUP BY category_key
            ), top AS (
                SELECT w.item_id, (g.growth - 1) * w.now AS score
                FROM windows w JOIN growth g USING (category_key)
                WHERE g.growth > 1 AND w.now > 0
                ORDER BY score DESC, w.item_id LIMIT $pool
            )
            SELECT u.user_id, top.item_id, top.score FROM users u CROSS JOIN top""",
                         recent=as_of - window, start=as_of - 2 * window, prior=PRIOR,
                         pool=scorer.config.popular_pool)
    if "seasonal" in parts:
        scorer.normalize("seasonal", """
            WITH top AS (
                SELECT item_id, sum(weight) AS score FROM train
                WHERE ts >= $start AND ts < $end GROUP BY item_id
                ORDER BY score DESC, item_id LIMIT $pool
            )
            SELECT u.user_id, top.item_id, top.score FROM users u CROSS JOIN top""",
                         start=as_of - YEAR, end=as_of - YEAR + timedelta(days=SEASON_DAYS),
                         pool=scorer.config.popular_pool)
