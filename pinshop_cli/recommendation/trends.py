"""Demand that moves with time: what is trending now, and what sold in the same weeks last
year. Both are the same for every user (as the shop's best sellers are); the fitted blend
decides how much they count (tuning.py).

    now(j), before(j) = sum of weight(e) over j's events in the TREND_DAYS before the
                        scoring date, and in the TREND_DAYS before those
    growth(c)         = (sum of now over c's items + PRIOR) / (sum of before + PRIOR):
                        the category's recent demand against the window before; PRIOR
                        keeps a category going from 1 sale to 3 from counting as a trend
    growth(s)         = the same over the items of style cluster s (style.py: the product
                        index's vectors clustered, "black lamp style")
    trending(j)       = (max(growth(c(j)), growth(s(j))) - 1) * now(j), where that is
                        > 1: the `popular_pool` items whose recent demand grows most —
                        "trending in rugs this week", or "trending: black lamp style this
                        week" when the item's style grew more than its category
    seasonal(j)       = sum of weight(e) over j's events in the SEASON_DAYS starting one
                        year before the scoring date: what sold in the coming weeks last
                        year — "in season: it sold this time last year"
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .style import style_tables

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
        style_tables(scorer)
        scorer.con.execute("""
            CREATE OR REPLACE TEMP TABLE trending_items AS
            WITH windows AS (
                SELECT k.category_key, s.style, t.item_id,
                       coalesce(sum(t.weight) FILTER (WHERE t.ts >= $recent), 0) AS now,
                       coalesce(sum(t.weight) FILTER (WHERE t.ts < $recent), 0) AS before
                FROM train t JOIN catalog k ON k.id = t.item_id
                LEFT JOIN item_styles s ON s.item_id = t.item_id
                WHERE t.ts >= $start GROUP BY k.category_key, s.style, t.item_id
            ), by_category AS (
                SELECT category_key, (sum(now) + $prior) / (sum(before) + $prior) AS growth
                FROM windows GROUP BY category_key
            ), by_style AS (
                SELECT style, (sum(now) + $prior) / (sum(before) + $prior) AS growth
                FROM windows WHERE style IS NOT NULL GROUP BY style
            ), grown AS (
                SELECT w.item_id, w.now, c.growth AS category_growth,
                       coalesce(s.growth, 0) AS style_growth, w.style
                FROM windows w JOIN by_category c USING (category_key)
                LEFT JOIN by_style s USING (style)
            )
            SELECT item_id, (greatest(category_growth, style_growth) - 1) * now AS score,
                   CASE WHEN style_growth > category_growth THEN style END AS style
            FROM grown WHERE greatest(category_growth, style_growth) > 1 AND now > 0
            ORDER BY score DESC, item_id LIMIT $pool""",
                           {"recent": as_of - window, "start": as_of - 2 * window,
                            "prior": PRIOR, "pool": scorer.config.popular_pool})
        scorer.normalize("trending", "SELECT u.user_id, t.item_id, t.score "
                                     "FROM users u CROSS JOIN trending_items t")
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
