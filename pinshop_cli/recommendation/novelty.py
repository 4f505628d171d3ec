"""Beyond accuracy: how varied and how unexpected each user's list is.

    novelty   = mean over recommended items of -log2 p(j), p(j) = (users who interacted
                with j in training + 1) / (training users + 1): a best seller scores near 0,
                a niche item high
    diversity = intra-list diversity, the mean over users of the mean pairwise image
                distance 1 - cos(v_i, v_j) of their recommended items with a vector. For
                unit vectors, sum over pairs i<j of cos = (||sum v||^2 - n) / 2, so each
                user's mean comes from one sum of vectors: no loop over pairs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


def novelty(con: duckdb.DuckDBPyConnection, recs: str = "recs") -> float | None:
    """Mean -log2 popularity of table `recs`' items, against table `interactions`; None
    when `recs` is empty (a component with nothing to say, e.g. no sales a year ago)."""
    row = con.execute(f"""
        WITH reach AS (SELECT item_id, count(*) AS users FROM interactions GROUP BY item_id),
             everyone AS (SELECT count(DISTINCT user_id) AS n FROM interactions)
        SELECT avg(-log2((coalesce(r.users, 0) + 1) / (e.n + 1)))
        FROM {recs} x LEFT JOIN reach r USING (item_id) CROSS JOIN everyone e
    """).fetchone()
    return None if row is None or row[0] is None else round(float(row[0]), 4)


def diversity(con: duckdb.DuckDBPyConnection, index: Any, recs: str = "recs"
              ) -> float | None:
    """Intra-list diversity of table `recs` through the product index's vectors (table
    item_labels); None without an index or with no list of two items with vectors."""
    import numpy as np

    if index is None:
        return None
    rows = con.execute(f"""
        SELECT r.user_id, l.label FROM {recs} r JOIN item_labels l ON l.key = r.item_id
        ORDER BY r.user_id""").fetchnumpy()
    if len(rows["label"]) == 0:
        return None
    vectors = index.vectors_of(rows["label"])
    starts = np.flatnonzero(np.r_[True, rows["user_id"][1:] != rows["user_id"][:-1]])
    sizes = np.diff(np.r_[starts, len(rows["label"])])
    sums = np.add.reduceat(vectors.astype(np.float64), starts, axis=0)
    lists = sizes >= 2
    if not lists.any():
        return None
    n = sizes[lists]
    pair_cosine = ((sums[lists] ** 2).sum(axis=1) - n) / (n * (n - 1))
    return round(float(np.mean(1 - pair_cosine)), 4)
