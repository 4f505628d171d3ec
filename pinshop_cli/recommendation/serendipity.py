"""One serendipity slot: the last place of each user's list goes to an item from outside
the categories the user shops, liked by shoppers of the same taste — "something
different: shoppers with your taste liked this lamp".

    usual(u)      = the categories of every item u interacted with (and of the browsing
                    session's items)
    neighbours(u) = u's same-taste shoppers (tastemates.py: the nearest taste vectors)
                    when the blend weighs that component, so their pairs are built
                    anyway; else u's style cohort: the users whose liked items fall most
                    often in the same style cluster (style.py) as u's — one group-by,
                    where the nearest taste vectors of every user cost a users x pool
                    matrix product
    liked(u, j)   = sum over neighbours v who saved, carted or bought j of cos(u, v) (the
                    mates), or their count (the cohort, its SLOT_POOL most liked items)
    choices(u)    = the CHOICES items j with the largest liked(u, j) whose category is
                    not in usual(u) and that are not in u's list already
    slot(u)       = the j of choices(u) with the largest
                    liked(u, j) / max liked(u, .) * (1 - mean cos(v_j, u's list)):
                    liked by the neighbours, and far from what the list shows

The pick replaces the list's k-th item (or joins a shorter list at its end) and carries
the score of the item it follows. A user with no liked item, a workspace without a
product index (no styles), or a list of one (k = 1: no place to spare) gets no slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .style import style_tables
from .tastemates import MATES_LIKED

if TYPE_CHECKING:
    from .config import ScoringContext

SLOT_POOL = 100  # per style cohort, its most liked items considered
CHOICES = 10  # per user, the most liked candidates the slot picks from
CHUNK = 16_384  # candidates per block of vector dot products

COHORT_LIKED = """
    WITH user_style AS (
        SELECT user_id, arg_max(style, strength) AS style FROM (
            SELECT i.user_id, s.style, sum(i.strength) AS strength
            FROM interactions i JOIN item_styles s USING (item_id)
            WHERE i.liked GROUP BY i.user_id, s.style)
        GROUP BY user_id
    ), style_likes AS (
        SELECT c.style, i.item_id, count(*) AS likers
        FROM interactions i JOIN user_style c USING (user_id)
        WHERE i.liked GROUP BY c.style, i.item_id
        QUALIFY row_number() OVER (PARTITION BY c.style ORDER BY likers DESC, i.item_id)
                <= $pool
    )
    SELECT c.user_id, l.item_id, l.likers AS score
    FROM user_style c JOIN users USING (user_id) JOIN style_likes l USING (style)"""


def add_slot(scorer: ScoringContext, table: str, use_mates: bool, session: bool = False
             ) -> int:
    """Give `table` (user_id, item_id, score, rank, ...: each user's top k) a column
    `surprise`, true on the slot's rows; put each user's slot pick at its end (when
    config.serendipity). `use_mates`: neighbours from table mate_pairs (tastemates.py),
    else the style cohort; `session`: table session_items holds the browsing session.
    Returns the number of slots filled."""
    con, k = scorer.con, scorer.config.k
    con.execute(f"ALTER TABLE {table} ADD COLUMN surprise BOOLEAN DEFAULT false")
    if not scorer.config.serendipity or k < 2 or not style_tables(scorer):
        return 0
    has_mates = con.execute("SELECT count(*) FROM duckdb_tables() "
                            "WHERE table_name = 'mate_pairs'").fetchall()[0][0]
    cohort = not (use_mates and has_mates)
    liked = COHORT_LIKED if cohort else MATES_LIKED
    seen = ("UNION SELECT u.user_id, k.category_key FROM users u "
            "CROSS JOIN session_items s JOIN catalog k ON k.id = s.item_id"
            if session else "")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE slot_choices AS
        WITH liked AS ({liked}), usual AS (
            SELECT DISTINCT i.user_id, k.category_key
            FROM interactions i JOIN users USING (user_id) JOIN catalog k ON k.id = i.item_id
            {seen}
        )
        SELECT l.user_id, l.item_id, k.category_key,
               (l.score / max(l.score) OVER (PARTITION BY l.user_id))::FLOAT AS liked
        FROM liked l JOIN catalog k ON k.id = l.item_id
                                   {"AND NOT k.sold_out" if scorer.in_stock_only else ""}
        ANTI JOIN usual u ON u.user_id = l.user_id
                          AND u.category_key IS NOT DISTINCT FROM k.category_key
        ANTI JOIN {table} t ON t.user_id = l.user_id AND t.item_id = l.item_id
        {"ANTI JOIN session_items s ON s.item_id = l.item_id" if session else ""}
        QUALIFY row_number() OVER (PARTITION BY l.user_id ORDER BY l.score DESC, l.item_id)
                <= $choices""", {"choices": CHOICES, **({"pool": SLOT_POOL} if cohort else {})})
    _pick(scorer, table)
    con.execute(f"DELETE FROM {table} t USING surprises s "
                f"WHERE t.user_id = s.user_id AND t.rank >= {k}")
    con.execute(f"""
        INSERT INTO {table} BY NAME
        SELECT s.user_id, s.item_id, s.category_key, coalesce(l.score, 0) AS score,
               coalesce(l.rank, 0) + 1 AS rank, true AS surprise
        FROM surprises s LEFT JOIN (
            SELECT user_id, min(score) AS score, max(rank) AS rank FROM {table}
            GROUP BY user_id) l USING (user_id)""")
    return int(con.execute("SELECT count(*) FROM surprises").fetchall()[0][0])


def _pick(scorer: ScoringContext, table: str) -> None:
    """Table surprises (user_id, item_id, category_key): of each user's slot_choices, the
    one with the largest liked x (1 - its mean cosine to the user's list), so the slot
    is far from what the list already shows. Vectors come from the product index by
    label: per user the sum of the list's unit vectors (one sparse product), per choice
    one dot product with it, in blocks; never a loop over users."""
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import csr_matrix

    con, index = scorer.con, scorer.product_index()
    choices = con.execute("""
        SELECT c.user_id, c.item_id, c.category_key, c.liked, coalesce(l.label, -1) AS label
        FROM slot_choices c LEFT JOIN item_labels l ON l.key = c.item_id""").fetchnumpy()
    if len(choices["user_id"]) == 0:
        con.execute("CREATE OR REPLACE TEMP TABLE surprises AS "
                    "SELECT user_id, item_id, category_key FROM slot_choices")
        return
    shown = con.execute(f"SELECT t.user_id, l.label FROM {table} t "
                        "JOIN item_labels l ON l.key = t.item_id").fetchnumpy()
    users = np.unique(choices["user_id"])
    labels, where = np.unique(np.r_[shown["label"], choices["label"][choices["label"] >= 0]],
                              return_inverse=True)
    vectors = np.asarray(index.vectors_of(labels), np.float32) if len(labels) else \
        np.zeros((0, 1), np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rows = np.searchsorted(users, shown["user_id"])
    mine = (rows < len(users)) & (users[np.minimum(rows, len(users) - 1)] == shown["user_id"])
    n_shown = len(shown["label"])
    lists = csr_matrix((np.ones(int(mine.sum()), np.float32),
                        (rows[mine], where[:n_shown][mine])), shape=(len(users), len(labels)))
    sums = np.asarray(lists @ vectors)  # (users, dim): the sum of each list's vectors
    counts = np.maximum(np.asarray(lists.sum(axis=1)).ravel(), 1)
    user_row = np.searchsorted(users, choices["user_id"])
    item_row = np.full(len(user_row), -1)
    item_row[choices["label"] >= 0] = where[n_shown:]
    mean_cos = np.zeros(len(user_row), np.float32)
    for start in range(0, len(user_row), CHUNK):
        part = slice(start, start + CHUNK)
        has = item_row[part] >= 0
        block = np.zeros(int(has.sum()), np.float32)
        if has.any():
            block = np.einsum("ij,ij->i", sums[user_row[part][has]],
                              vectors[item_row[part][has]]) / counts[user_row[part][has]]
        mean_cos[part][has] = block
    value = choices["liked"] * (1 - mean_cos)
    order = np.lexsort((choices["item_id"], -value, choices["user_id"]))
    first = order[np.r_[True, choices["user_id"][order][1:] != choices["user_id"][order][:-1]]] \
        if len(order) else order
    con.register("slot_picks", pa.table({
        "user_id": choices["user_id"][first], "item_id": choices["item_id"][first],
        "category_key": choices["category_key"][first]}))
    con.execute("CREATE OR REPLACE TEMP TABLE surprises AS SELECT * FROM slot_picks")
    con.unregister("slot_picks")
