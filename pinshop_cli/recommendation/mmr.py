"""Maximal marginal relevance over image embeddings: each user's list is picked greedily
from a larger pool of the blend's best, trading relevance for variety.

    rel(j)  = score(j) / max over the pool of score    (each user's own scale)
    pick    = argmax over j not yet picked of
              lambda * rel(j) - (1 - lambda) * max over picked s of cos(v_j, v_s)

lambda 1 keeps the blend's order. The first `head` places are the blend's own first
`head` (lambda 1 there): on buy-again data most hits are there, and MMR spends its variety
on the rest of the list, each pick unlike the head as well; the caller sets the pool's
size (RecommendConfig.mmr_pool k). Items without a vector count as unlike everything. The
greedy steps run for all users of a chunk at once on a (users, pool, pool) similarity
tensor: k numpy steps per chunk, never a loop over users or rows; chunks bound the
vectors and that tensor to CHUNK_BYTES together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

CHUNK_BYTES = 256 * 2**20  # bounds a chunk's vectors and similarity tensor together


def rerank(con: duckdb.DuckDBPyConnection, index: Any, table: str, lam: float, k: int,
           head: int = 0) -> None:
    """Rewrite `table` (user_id, item_id, score, rank, ...; a pool per user, in rank order)
    as each user's k: the blend's first `head`, then picked by MMR, ranked in pick order;
    just the top k when lam >= 1, head >= k or no index."""
    import numpy as np
    import pyarrow as pa

    if lam >= 1 or head >= k or index is None:
        con.execute(f"DELETE FROM {table} WHERE rank > {k}")
        return
    rows = con.execute(f"""
        SELECT r.user_id, r.item_id, r.score, coalesce(l.label, -1) AS label
        FROM {table} r LEFT JOIN item_labels l ON l.key = r.item_id
        ORDER BY r.user_id, r.rank""").fetchnumpy()
    users, n = rows["user_id"], len(rows["user_id"])
    if n == 0:
        return
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    pool, dim = int(sizes.max()), index.manifest.dim
    group = np.repeat(np.arange(len(starts)), sizes)
    slot = np.arange(n) - starts[group]
    picked_rows = []
    step = max(1, CHUNK_BYTES // (pool * (dim + pool) * 4))
    for first in range(0, len(starts), step):
        last = min(first + step, len(starts))
        mine = (group >= first) & (group < last)
        g, s = group[mine] - first, slot[mine]
        rel = np.full((last - first, pool), -np.inf)
        rel[g, s] = rows["score"][mine]
        rel /= np.maximum(rel.max(axis=1, keepdims=True), 1e-12)
        absent = ~np.isfinite(rel)  # beyond a smaller pool's end
        rel[absent] = 0  # lambda 0 would make -inf * 0 a NaN
        vectors = np.zeros((last - first, pool, dim), np.float32)
        labels = rows["label"][mine]
        has = labels >= 0
        vectors[g[has], s[has]] = index.vectors_of(labels[has])
        sims = np.einsum("upd,uqd->upq", vectors, vectors)
        del vectors
        closest = np.zeros((last - first, pool))
        taken = np.zeros((last - first, pool), bool)
        order = []
        for place in range(min(k, pool)):
            value = np.where(taken | absent, -np.inf, lam * rel - (1 - lam) * closest)
            # The head: the blend's own order (the pool's slots are in rank order).
            best = np.full(len(value), place) if place < head else value.argmax(axis=1)
            valid = np.isfinite(value[np.arange(len(best)), best])
            order.append(np.where(valid, best, -1))
            taken[np.arange(len(best)), best] = True
            closest = np.maximum(closest, sims[np.arange(len(best)), best])
        chosen = np.stack(order, axis=1)  # (users, k) slots, -1 when the pool ran out
        u, r = np.nonzero(chosen >= 0)
        picked_rows.append((starts[first + u] + chosen[u, r], r + 1))
    index_rows = np.concatenate([p[0] for p in picked_rows])
    con.register("mmr_order", pa.table({
        "user_id": users[index_rows], "item_id": rows["item_id"][index_rows],
        "new_rank": np.concatenate([p[1] for p in picked_rows]).astype(np.int64)}))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT t.* EXCLUDE (rank), m.new_rank AS rank
        FROM {table} t JOIN mmr_order m USING (user_id, item_id)""")
    con.unregister("mmr_order")
