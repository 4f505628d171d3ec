"""Ranking quality in DuckDB: which items count as relevant, and hit rate, recall, NDCG at k
and catalog coverage of a table of ranked recommendations.

Both work on tables of one connection, under whatever keys the tables share (the scorer's
integer keys, or plain ids in a test):

    relevant(user_id, item_id)     the items a user saved, carted or bought in a window
    recs(user_id, rank, item_id)   ranked recommendations, rank 1 first
    catalog(id)                    every product, for coverage

    hit_rate   = share of users with at least one relevant item in their top k
    recall     = mean over users of |relevant in top k| / |relevant|
    ndcg       = mean over users of DCG / IDCG, DCG = sum over hits of 1 / log2(rank + 1),
                 IDCG the DCG of min(|relevant|, k) hits at ranks 1, 2, ...
    coverage   = distinct items recommended / products in the catalog
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .config import LIKED_EVENTS, Metrics

if TYPE_CHECKING:
    import duckdb
    import numpy as np


def relevant_between(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> None:
    """Table `relevant`: the (user, item) pairs of table `events` saved, carted or bought in
    [start, end)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE relevant AS
        SELECT DISTINCT user_id, item_id FROM events
        WHERE ts >= $start AND ts < $end AND event IN {LIKED_EVENTS}
    """, {"start": start, "end": end})


def _per_user(recs: str, relevant: str) -> str:
    """SQL: (user_id, hit, recall, ndcg) for every user of `relevant` (needs $k)."""
    return f"""
        WITH hits AS (
            SELECT r.user_id, r.rank FROM {recs} r JOIN {relevant} v USING (user_id, item_id)
        ), counted AS (
            SELECT u.user_id, u.n_relevant, count(h.rank) AS hits,
                   coalesce(sum(1.0 / log2(h.rank + 1)), 0) AS dcg,
                   (SELECT sum(1.0 / log2(i + 1)) FROM range(1, least(u.n_relevant, $k) + 1)
                        t(i)) AS idcg
            FROM (SELECT user_id, count(*) AS n_relevant FROM {relevant} GROUP BY user_id) u
            LEFT JOIN hits h USING (user_id)
            GROUP BY u.user_id, u.n_relevant
        )
        SELECT user_id, (hits > 0)::DOUBLE AS hit, hits / n_relevant AS recall,
               dcg / idcg AS ndcg
        FROM counted"""


def measure(con: duckdb.DuckDBPyConnection, k: int, recs: str = "recs",
            relevant: str = "relevant") -> Metrics:
    """Hit rate, recall, NDCG at k and coverage of table `recs` against `relevant`."""
    row = con.execute(f"""
        WITH per_user AS ({_per_user(recs, relevant)})
        SELECT avg(hit), avg(recall), avg(ndcg),
               (SELECT count(DISTINCT item_id) FROM {recs})
                   / (SELECT count(*) FROM catalog)::DOUBLE
        FROM per_user
    """, {"k": k}).fetchone()
    assert row is not None
    hit_rate, recall, ndcg, coverage = (round(float(v or 0), 4) for v in row)
    return Metrics(hit_rate, recall, ndcg, coverage)


def per_user(con: duckdb.DuckDBPyConnection, k: int, recs: str = "recs",
             relevant: str = "relevant") -> dict[str, np.ndarray]:
    """hit, recall and ndcg at k per user of `relevant`, in user order (the same order
    for every `recs`: the rows of two methods pair up for a paired test)."""
    return con.execute(f"{_per_user(recs, relevant)} ORDER BY user_id", {"k": k}).fetchnumpy()
