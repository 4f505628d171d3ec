"""The final step: each user's top k under the blend, its serendipity slot, each item with
the reason of its largest weighted term ("because you saved X", "because you looked at X",
"trending in rugs this week", "trending: black lamp style this week", "popular in
sofas", ...) or of the slot ("something different: shoppers with your taste liked this
lamp"), and the rows as the user sees them."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .config import VERBS, BlendWeights
from .mmr import rerank
from .serendipity import add_slot

if TYPE_CHECKING:
    import pyarrow as pa

    from .scorer import Scorer


def blend(scorer: Scorer, weights: BlendWeights, popularity: str = "popularity",
          lam: float | None = None, surprise: bool | None = None) -> None:
    """Top-k per user into table `recs` (user_id, rank, item_id, score, reason), diversified
    by MMR with `lam` and given a serendipity slot when `surprise` (defaults: the
    config's)."""
    scorer.gather(popularity)
    diversify(scorer, weights, "recs_ranked", parts=True, lam=lam)
    config = scorer.config
    if surprise is not None and surprise != config.serendipity:
        scorer.config = replace(config, serendipity=surprise)
    try:
        add_slot(scorer, "recs_ranked", use_mates=weights.tastemates > 0,
                 session=scorer.has_session)
    finally:
        scorer.config = config
    verbs = " ".join(f"WHEN '{e}' THEN '{v}'" for e, v in VERBS.items())
    # "because you saved X": the history item contributing most to cf(u, j), worked
    # out for the final top k only (none without the cf tables).
    explained = "SELECT user_id, item_id, item_id AS because FROM recs_ranked WHERE false"
    if "cf" in scorer.components:
        explained = """
            SELECT t.user_id, t.item_id, arg_max(r.item_id, r.strength * s.sim) AS because
            FROM recs_ranked t JOIN recent r USING (user_id)
            JOIN similar_items s ON s.item = r.item_id AND s.neighbor = t.item_id
            WHERE t.cf > 0 GROUP BY t.user_id, t.item_id"""
    # The session item that pulled each session candidate in (context.py).
    looked = ("SELECT * FROM session_because" if scorer.has_session else
              "SELECT user_id, item_id, item_id AS because FROM recs_ranked WHERE false")
    # The style cluster whose growth put a trending item there (trends.py).
    styled = ("SELECT t.item_id, n.name AS style FROM trending_items t "
              "JOIN style_names n USING (style)" if "trending" in scorer.components else
              "SELECT item_id, NULL::VARCHAR AS style FROM recs_ranked WHERE false")
    # A catalog without photos has taste profiles of product texts: not "visually".
    index = scorer.product_index() if "taste" in scorer.components else None
    taste = ("visually similar to your saves" if index is None
             or index.manifest.kind == "product_image" else "like the products you saved")
    scorer.sql(f"""
        CREATE OR REPLACE TEMP TABLE recs AS
        WITH explained AS ({explained}), looked AS ({looked}), styled AS ({styled})
        SELECT t.user_id, t.rank, t.item_id, t.score,
               CASE WHEN t.surprise THEN 'something different: shoppers with your taste '
                       || 'liked this ' || coalesce(c.category, 'item')
               ELSE CASE greatest(t.session, t.cf, t.taste, t.pop, t.bestseller, t.again,
                             t.trending, t.seasonal, t.mates)
                   WHEN t.session THEN 'because you looked at ' || s.title
                   WHEN t.cf THEN 'because you '
                       || (CASE i.top_event {verbs} END) || ' ' || b.title
                   WHEN t.taste THEN '{taste}'
                   WHEN t.pop THEN 'popular in ' || coalesce(c.category, 'the catalog')
                   WHEN t.bestseller THEN 'a best seller in the shop'
                   WHEN t.trending THEN coalesce('trending: ' || y.style,
                       'trending in ' || coalesce(c.category, 'the shop')) || ' this week'
                   WHEN t.seasonal THEN 'in season: it sold this time last year'
                   WHEN t.mates THEN 'shoppers with your taste bought or saved this'
                   ELSE 'buy it again'
               END END AS reason
        FROM recs_ranked t JOIN catalog c ON c.id = t.item_id
        LEFT JOIN explained x USING (user_id, item_id)
        LEFT JOIN catalog b ON b.id = x.because
        LEFT JOIN interactions i ON i.user_id = t.user_id AND i.item_id = x.because
        LEFT JOIN looked l ON l.user_id = t.user_id AND l.item_id = t.item_id
        LEFT JOIN catalog s ON s.id = l.because
        LEFT JOIN styled y ON y.item_id = t.item_id
    """)


def diversify(scorer: Scorer, weights: BlendWeights, table: str, parts: bool = False,
              lam: float | None = None) -> None:
    """Scorer.rank into `table`, then MMR with `lam` (default: the config's) after the
    config's protected head, over a pool of its `mmr_pool` k, when lam is below 1 and
    the workspace has image vectors."""
    config = scorer.config
    lam = config.mmr_lambda if lam is None else lam
    k, head = config.k, config.mmr_head
    index = scorer.product_index() if lam < 1 and head < k else None
    scorer.rank(weights, table, parts, k * max(1, config.mmr_pool) if index is not None else k)
    rerank(scorer.con, index, table, lam, k, head)


def recommendations(scorer: Scorer) -> pa.Table:
    """Table `recs` under the shop's ids, with each product's title, price, currency and
    category."""
    return scorer.con.sql("""
        SELECT u.user_id, r.rank::INTEGER AS rank, k.item_id, c.title,
               c.price::DOUBLE AS price, c.currency, c.category, round(r.score, 4) AS score,
               r.reason
        FROM recs r JOIN catalog c ON c.id = r.item_id
        JOIN user_keys u ON u.key = r.user_id JOIN item_keys k ON k.key = r.item_id
        ORDER BY u.user_id, r.rank
    """).to_arrow_table()
