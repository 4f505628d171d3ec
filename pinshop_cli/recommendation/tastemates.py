"""Shoppers of the same taste: the users whose visual taste vector (taste.py) is nearest
to a user's, and what they bought and saved.

    mates(u)    = the MATES users v with the largest cos(taste(u), taste(v)), v != u,
                  among the MATE_POOL users with the most liked items (a bound on the
                  work: scoring is one matrix product per chunk of users against the
                  pool, users x pool x dim flops, never a loop over pairs)
    mates(u, j) = sum over v in mates(u) who saved, carted or bought j of cos(u, v)
                  — "shoppers with your taste bought or saved this"

A workspace without a product index, or a user with no liked indexed item, gets nothing
here (as with the taste component).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ScoringContext

MATES = 20
MATE_POOL = 20_000
CHUNK = 1024  # scored users per product: 1024 x 20,000 floats = 80 MB


#: What each user's taste neighbours (mate_pairs) liked, weighted by how alike they are;
#: the serendipity slot (serendipity.py) reads the same.
MATES_LIKED = """
    SELECT m.user_id, i.item_id, sum(m.sim) AS score
    FROM mate_pairs m JOIN interactions i ON i.user_id = m.mate
    WHERE i.liked AND m.sim > 0 GROUP BY m.user_id, i.item_id"""


def tastemate_tables(scorer: ScoringContext) -> None:
    """Tables mate_pairs (user_id, mate, sim) and tastemates_part for the users in table
    `users`, from table `interactions` and the product index."""
    import numpy as np
    import pyarrow as pa

    from .taste import profiles_of

    index = scorer.product_index()
    pairs = {"user_id": np.array([], np.int32), "mate": np.array([], np.int32),
             "sim": np.array([], np.float32)}
    liked = scorer.con.execute("""
        SELECT i.user_id, l.label, i.strength FROM interactions i
        JOIN item_labels l ON l.key = i.item_id WHERE i.liked""").fetchnumpy()
    if index is not None and len(liked["label"]):
        users, profiles = profiles_of(index, liked["user_id"], liked["label"],
                                      liked["strength"])
        pool_ids = scorer.con.execute(f"""
            SELECT i.user_id FROM interactions i JOIN item_labels l ON l.key = i.item_id
            WHERE i.liked GROUP BY i.user_id ORDER BY count(*) DESC, i.user_id
            LIMIT {MATE_POOL}""").fetchnumpy()["user_id"]
        pool = np.isin(users, pool_ids)
        scored = np.isin(users, scorer.con.execute("SELECT user_id FROM users")
                         .fetchnumpy()["user_id"])
        pool_users, pool_profiles = users[pool], profiles[pool]
        query_users, query_profiles = users[scored], profiles[scored]
        k = min(MATES, len(pool_users) - 1)
        found = []
        for start in range(0, len(query_users) if k > 0 else 0, CHUNK):
            ids = query_users[start:start + CHUNK]
            sims = query_profiles[start:start + CHUNK] @ pool_profiles.T
            sims[ids[:, None] == pool_users[None, :]] = -np.inf  # not one's own mate
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            found.append((np.repeat(ids, k), pool_users[top.ravel()],
                          np.take_along_axis(sims, top, axis=1).ravel()))
        if found:
            pairs = {name: np.concatenate([f[n] for f in found])
                     for n, name in enumerate(("user_id", "mate", "sim"))}
    scorer.con.register("found_pairs", pa.table({
        "user_id": pa.array(pairs["user_id"], pa.int32()),
        "mate": pa.array(pairs["mate"], pa.int32()),
        "sim": pa.array(pairs["sim"], pa.float32())}))
    # Kept for the serendipity slot (serendipity.py) while this scoring date lasts.
    scorer.con.execute("CREATE OR REPLACE TEMP TABLE mate_pairs AS SELECT * FROM found_pairs")
    scorer.con.unregister("found_pairs")
    scorer.normalize("tastemates", MATES_LIKED)
