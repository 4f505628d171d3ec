"""EASE (Steck, 2019) as an evaluation baseline: a closed-form item-item model that is hard
to beat on implicit data, in numpy/scipy.

    X  users x items, 1 where the user interacted with the item in training
    P  = (X^T X + lambda I)^-1
    B  = -P / diag(P), diag(B) = 0          scores = X_u B

The item-item matrix is dense (items^2 floats, and an inversion in items^3), so it is fitted
on at most MAX_ITEMS items, the most interacted-with; above that the note says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import numpy as np

MAX_ITEMS = 20_000
LAMBDA = 200.0
USER_CHUNK = 2048


def ease_weights(gram: np.ndarray, lam: float, rows: int = 1024) -> np.ndarray:
    """B (float32) from the items x items Gram matrix X^T X (float64, overwritten). P is
    the inverse of a symmetric positive definite matrix, so LAPACK's Cholesky inverse
    writes it in place (half the flops of a general inverse), and B is written `rows` at a
    time from its upper triangle: 10,396 items took 55 s at 3.9 GB with np.linalg.inv and
    its temporaries (BENCHMARKS.md)."""
    import numpy as np
    from scipy.linalg import lapack

    n = gram.shape[0]
    gram[np.diag_indices(n)] += lam
    factor, info = lapack.dpotrf(gram, lower=False, overwrite_a=True, clean=False)
    if info == 0:
        inverse, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:  # lambda > 0 keeps it positive definite; this is a numerical breakdown
        raise np.linalg.LinAlgError(f"EASE: Cholesky inverse failed (LAPACK info {info})")
    diagonal = np.diag(inverse).copy()
    weights = np.empty((n, n), np.float32)
    columns = np.arange(n)
    for start in range(0, n, rows):  # P[r, c] for c >= r is in the upper triangle, else P[c, r]
        stop = min(start + rows, n)
        below = columns[None, :] < np.arange(start, stop)[:, None]
        block = np.where(below, inverse[:, start:stop].T, inverse[start:stop])
        weights[start:stop] = -block / diagonal
    weights[np.diag_indices(n)] = 0.0
    return weights


def ease_table(con: duckdb.DuckDBPyConnection, candidates: int, lam: float = LAMBDA,
               max_items: int = MAX_ITEMS) -> str:
    """Fit on table `interactions` (every training user) and write table `ease` (user_id,
    item_id, score): each of table `users`' top `candidates` items. Returns a note."""
    import numpy as np
    import pyarrow as pa
    import scipy.sparse as sp

    n_total = int(con.execute("SELECT count(DISTINCT item_id) FROM interactions")
                  .fetchall()[0][0])
    pairs = con.sql(f"""
        WITH items AS (
            SELECT item_id, (row_number() OVER (ORDER BY count(*) DESC, item_id) - 1)::INT
                AS col
            FROM interactions GROUP BY item_id ORDER BY col LIMIT {max_items}
        ), people AS (
            SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)::INT AS row
            FROM (SELECT DISTINCT user_id FROM interactions)
        )
        SELECT p.row, i.col, i.item_id, p.user_id,
               p.user_id IN (SELECT user_id FROM users) AS target
        FROM interactions x JOIN items i USING (item_id) JOIN people p USING (user_id)
    """).to_arrow_table()
    n_items = min(n_total, max_items)
    note = (f"EASE on all {n_total:,} items" if n_total <= max_items else
            f"EASE on the {max_items:,} most interacted-with of {n_total:,} items")
    user_type, item_type = (pairs.schema.field(name).type for name in ("user_id", "item_id"))
    empty = pa.table({"user_id": pa.array([], user_type), "item_id": pa.array([], item_type),
                      "score": pa.array([], pa.float32())})
    if pairs.num_rows == 0:
        con.register("ease_scores", empty)
        con.execute("CREATE OR REPLACE TEMP TABLE ease AS SELECT * FROM ease_scores")
        return note
    rows, cols = pairs.column("row").to_numpy(), pairs.column("col").to_numpy()
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                      shape=(int(rows.max()) + 1, n_items))
    weights = ease_weights((x.T @ x.astype(np.float64)).toarray(), lam)
    item_ids = np.empty(n_items, dtype=object)
    item_ids[cols] = pairs.column("item_id").to_numpy(zero_copy_only=False)
    target = pairs.filter(pairs.column("target"))
    user_rows, index = np.unique(target.column("row").to_numpy(), return_index=True)
    user_ids = target.column("user_id").to_numpy(zero_copy_only=False)[index]
    keep = min(candidates, n_items)
    users_out, items_out, scores_out = [], [], []
    for start in range(0, len(user_rows), USER_CHUNK):
        chunk = user_rows[start:start + USER_CHUNK]
        scores = np.asarray(x[chunk] @ weights)
        top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        users_out.append(np.repeat(user_ids[start:start + USER_CHUNK], keep))
        items_out.append(item_ids[top.ravel()])
        scores_out.append(np.take_along_axis(scores, top, axis=1).ravel())
    con.register("ease_scores", pa.table({
        "user_id": pa.array(np.concatenate(users_out).tolist(), user_type),
        "item_id": pa.array(np.concatenate(items_out).tolist(), item_type),
        "score": pa.array(np.concatenate(scores_out), pa.float32())}))
    # Users with no training item get nothing here; the blend then shows them nothing,
    # as EASE would (it has no cold-start answer).
    con.execute("CREATE OR REPLACE TEMP TABLE ease AS "
                "SELECT * FROM ease_scores WHERE score > 0")
    return note
