"""Offline recommendations computed in DuckDB over the workspace's Parquet files.

Every step is SQL over whole tables; Python only orchestrates, and hands two matrix
products to scipy (cf, a sparse users x items by items x items product) and BLAS/hnswlib
(the taste profiles). The scoring, for a user u and a candidate item j:

    decay(e)     = 0.5 ** (age_days(e) / half_life_days)              age at the scoring date
    r(u, i)      = sum over u's events on i of weight(e) * decay(e)    interaction strength
    H(u)         = u's `history` most recent items                     bounds the work per user
    sim(i, j)    = sum_u r(u,i) r(u,j) / (||r(., i)|| ||r(., j)||)    cosine over users in H:
                   co-occurrence normalized by both items' total strength, so a blockbuster
                   that co-occurs with everything does not dominate; top `neighbors` kept
    cf(u, j)     = sum over i in H(u) of r(u, i) * sim(i, j)           "because you saved X"
    taste(u, j)  = cos(mean of the vectors of u's saved/carted/bought items, vector(j))
                   top `taste_pool` items per user, from an HNSW index ("visually similar")
    pop(j)       = sum of weight(e) * 0.5 ** (age_days / popularity_half_life_days)
    share(u, c)  = the fraction of r(u, .) that falls in category c
    popular(u,j) = share(u, category(j)) * pop(j) for the `popular_pool` most popular items
                   of each category u shops ("popular in sofas"); a cold user, with no
                   history, gets the globally most popular items
    global(u, j) = pop(j) for the `popular_pool` most popular items of the whole shop
    again(u, j)  = days(u, j) * rebuy(j) for the items u bought that the shop's history
                   shows re-bought (consumables: see `rebuy_rate`): the days u bought j,
                   times the share of j's buyers who bought it on two or more days —
                   "buy it again"
    score(u, j)  = w_cf * cf / max_u(cf) + w_taste * taste / max_u(taste)
                   + w_pop * popular / max_u(popular) + w_global * global / max_u(global)
                   + w_again * again / max_u(again) + w_trending * trending / max_u(.)
                   + w_seasonal * seasonal / max_u(.)                (trends.py)
                   + w_mates * tastemates / max_u(.)                 (tastemates.py)
                   + w_s * session / max_u(session)   (session.py; w_s = session_weight
                     times the largest weight: the session's best neighbour stands level
                     with any component's best)
                   over each component's top `candidates` items per user (candidate
                   generation: a blend only reorders what some component ranks highly)

The weights and the popularity half-life are fitted to the shop's own history
(tuning.py, `recommend --tune`) and stored in the workspace; without a fit, BlendWeights'
defaults apply. Purchased items are not recommended again unless the history shows them
re-bought (consumables: `rebuy_rate` of their buyers bought them on two or more days); at
most `per_category` items of one category enter a user's top k; each recommendation
carries the reason of its largest weighted term.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..io.events import FUTURE_TOLERANCE
from ..workspace.layout import Workspace
from .config import COMPONENTS, LIKED_EVENTS, BlendWeights, RecommendConfig
from .tables import connect, label_items, select_users
from .tastemates import tastemate_tables
from .trends import trend_tables

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

POPULARITY_PARTS = ("popularity", "global_popularity")
COLUMNS = {"cf": "cf", "taste": "taste", "popularity": "pop",  # candidates' columns
           "global_popularity": "bestseller", "again": "again", "trending": "trending",
           "seasonal": "seasonal", "tastemates": "mates"}
REBUY_MIN_BUYERS = 3
CF_SCORES_PER_CHUNK = 10_000_000  # bounds one sparse CF product (~0.5 GB of arrays)


class Scorer:
    """One DuckDB connection holding the component tables for one scoring date, over the
    workspace's tables under integer keys (tables.py)."""

    def __init__(self, ws: Workspace, config: RecommendConfig) -> None:
        self.ws, self.config = ws, config
        self.con: duckdb.DuckDBPyConnection = connect(ws, config.memory_limit)
        # The saved product index, loaded on first use (False: the workspace has none).
        self._product_index: Any = None
        self.styles: pa.Table | None = None  # the style fit, once made or read (style.py)
        self.components: tuple[str, ...] = ()  # those prepare() built, in the order built
        self.has_session = False  # table session_part built (session.py)
        self.in_stock_only = False  # sold-out items are left out of the candidates
        self.gathered: dict[str, str] = {}  # component -> its column in `candidates`

    def close(self) -> None:
        self.con.close()

    def sql(self, query: str, **params: Any) -> None:
        self.con.execute(query, params or None)

    def prepare(self, as_of: datetime, users: pa.Table | None = None,
                popularity: bool = True, components: tuple[str, ...] = COMPONENTS,
                in_stock_only: bool = False) -> None:
        """Build the tables of `components` from events before `as_of` for `users` (a
        one-column table `user_id` of user ids, or of this scorer's integer keys; all users
        with events when None). `popularity` False leaves the popularity tables to the
        caller (tuning builds them per half-life). Scoring with fixed weights builds only
        the components they weigh: one left out would only ever add zeros.
        `in_stock_only`: nothing sold out is offered (recommending now; an evaluation at a
        past cut does not know that day's stock)."""
        c = self.config
        self.components, self.has_session = (), False
        self.in_stock_only = in_stock_only
        if in_stock_only:  # left out of every component's candidates, before its top N
            self.sql("CREATE OR REPLACE TEMP TABLE sold_out_items AS "
                     "SELECT id AS item_id FROM catalog WHERE sold_out")
        self.sql("DROP TABLE IF EXISTS mate_pairs")  # a former date's same-taste pairs
        self.sql("CREATE OR REPLACE TEMP TABLE train AS "
                 "SELECT * FROM events WHERE ts < $as_of", as_of=as_of)
        select_users(self.con, users)
        # r(u, i): decayed strength, the strongest event, whether it was bought / liked.
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE interactions AS
            SELECT user_id, item_id,
                   sum(weight * pow(0.5, (epoch($as_of) - epoch(ts)) / 86400.0 / $half_life))
                       AS strength,
                   max(ts) AS last_ts,
                   arg_max(event, weight) AS top_event,
                   bool_or(event = 'purchase') AS purchased,
                   bool_or(event IN {LIKED_EVENTS}) AS liked
            FROM train GROUP BY user_id, item_id
        """, as_of=as_of, half_life=c.half_life_days)
        self.sql("""
            CREATE OR REPLACE TEMP TABLE bought_days AS
            SELECT user_id, item_id, count(DISTINCT ts::DATE) AS days FROM train
            WHERE event = 'purchase' GROUP BY user_id, item_id
        """)
        self.sql("""
            CREATE OR REPLACE TEMP TABLE rebuyable AS
            SELECT item_id, avg((days >= 2)::DOUBLE) AS rate FROM bought_days GROUP BY item_id
            HAVING count(*) >= $min_buyers AND rate >= $rate
        """, min_buyers=REBUY_MIN_BUYERS, rate=c.rebuy_rate)
        if "cf" in components:
            self._cf()
        if "again" in components:
            # Undecayed: a staple bought weekly for a year is due again though its last
            # month was quiet (the 30-day decay of r(u, j) cost completejourney 0.012 hit@10).
            self.sql("""
                CREATE OR REPLACE TEMP TABLE again AS
                SELECT b.user_id, b.item_id, b.days * r.rate AS score
                FROM bought_days b JOIN users USING (user_id) JOIN rebuyable r USING (item_id)
            """)
            self.normalize("again")
        if "taste" in components:
            self.con.register("taste_scores", self._taste())
            self.sql("CREATE OR REPLACE TEMP TABLE taste AS "
                     "SELECT t.user_id, l.key AS item_id, greatest(t.score, 0) AS score "
                     "FROM taste_scores t JOIN item_labels l USING (label)")
            self.normalize("taste")
        wanted = tuple(part for part in POPULARITY_PARTS if part in components)
        if popularity and wanted:
            self.popularity_tables(as_of, c.popularity_half_life_days, parts=wanted)
        trend_tables(self, as_of, components)
        if "tastemates" in components:
            tastemate_tables(self)

    def _cf(self) -> None:
        """recent (each user's `history` newest items), similar_items (item-item cosine,
        top `neighbors`) and cf_part (the cf scores themselves are never stored whole)."""
        c = self.config
        self.sql("""
            CREATE OR REPLACE TEMP TABLE recent AS
            SELECT user_id, item_id, strength FROM interactions
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY last_ts DESC, item_id)
                    <= $history
        """, history=c.history)
        self.sql("""
            CREATE OR REPLACE TEMP TABLE similar_items AS
            WITH norms AS (
                SELECT item_id, sqrt(sum(strength * strength)) AS norm
                FROM recent GROUP BY item_id
            ), half AS (
                -- the cosine is symmetric: each pair is summed once, then used both ways
                SELECT a.item_id AS item, b.item_id AS neighbor,
                       sum(a.strength * b.strength) AS dot
                FROM recent a JOIN recent b ON a.user_id = b.user_id AND a.item_id < b.item_id
                GROUP BY a.item_id, b.item_id
            ), cosines AS (
                SELECT item, neighbor, dot / (ni.norm * nj.norm) AS sim
                FROM half JOIN norms ni ON ni.item_id = item JOIN norms nj ON nj.item_id = neighbor
                WHERE ni.norm > 0 AND nj.norm > 0  -- events of weight 0 would give 0/0 = NaN
            )
            SELECT * FROM (SELECT item, neighbor, sim FROM cosines
                           UNION ALL SELECT neighbor, item, sim FROM cosines)
            QUALIFY row_number() OVER (PARTITION BY item ORDER BY sim DESC, neighbor)
                    <= $neighbors
        """, neighbors=c.neighbors)
        # cf(u, j) = sum over i of r(u, i) * sim(i, j) is a sparse matrix product: scipy
        # multiplies the 8M terms of 1M events in 0.06 s, where a join grouped by (user,
        # item) took 0.6 s. Users go in chunks of a bounded number of scores (outside
        # DuckDB's memory limit); chunks without history rows are skipped.
        import numpy as np
        import pyarrow as pa
        from scipy.sparse import csr_matrix

        history = self.con.execute("SELECT r.user_id, r.item_id, r.strength FROM recent r "
                                   "JOIN users USING (user_id)").fetchnumpy()
        pairs = self.con.execute("SELECT item, neighbor, sim FROM similar_items").fetchnumpy()
        n_items = 1 + int(self.con.execute("SELECT max(key) FROM item_keys").fetchall()[0][0]
                          or 0)
        n_users = 1 + int(np.max(history["user_id"], initial=0))
        strengths = csr_matrix((history["strength"], (history["user_id"], history["item_id"])),
                               shape=(n_users, n_items))
        sims = csr_matrix((pairs["sim"], (pairs["item"], pairs["neighbor"])),
                          shape=(n_items, n_items))
        chunk = max(1, CF_SCORES_PER_CHUNK // max(1, c.history * c.neighbors))
        built = False
        for start in range(0, n_users, chunk):
            block = strengths[start:start + chunk]
            if built and block.nnz == 0:
                continue
            scores = (block @ sims).tocoo()
            self.con.register("cf_scores", pa.table({
                "user_id": (scores.row + start).astype(np.int32),
                "item_id": scores.col.astype(np.int32), "score": scores.data}))
            self.normalize("cf", "SELECT * FROM cf_scores", append=built)
            built = True
        self.con.unregister("cf_scores")

    def popularity_tables(self, as_of: datetime, half_life_days: float,
                          parts: tuple[str, ...] = POPULARITY_PARTS) -> None:
        """The popularity components among `parts` for one half-life; tuning tries
        half-lives on the global one alone (the category one is the costly one, a join of
        every user's categories with their top items)."""
        self.sql("""
            CREATE OR REPLACE TEMP TABLE item_popularity AS
            SELECT t.item_id, k.category,
                   sum(t.weight * pow(0.5, (epoch($as_of) - epoch(t.ts)) / 86400.0 / $half_life))
                       AS score
            FROM train t JOIN catalog k ON k.id = t.item_id GROUP BY t.item_id, k.category
        """, as_of=as_of, half_life=half_life_days)
        self.sql("""
            CREATE OR REPLACE TEMP TABLE top_overall AS
            SELECT * FROM item_popularity ORDER BY score DESC, item_id LIMIT $pool
        """, pool=self.config.popular_pool)
        if "global_popularity" in parts:
            self.sql("CREATE OR REPLACE TEMP TABLE global_popularity AS SELECT u.user_id, "
                     "p.item_id, p.score FROM users u CROSS JOIN top_overall p")
            self.normalize("global_popularity")
        if "popularity" not in parts:
            return
        self.normalize("popularity", """
            WITH shares AS (
                SELECT i.user_id, k.category,
                       sum(i.strength) / sum(sum(i.strength)) OVER (PARTITION BY i.user_id)
                           AS share
                FROM interactions i JOIN users USING (user_id) JOIN catalog k ON k.id = i.item_id
                GROUP BY i.user_id, k.category
            ), top_in_category AS (
                SELECT * FROM item_popularity
                QUALIFY row_number() OVER (PARTITION BY category ORDER BY score DESC, item_id)
                        <= $pool
            )
            SELECT s.user_id, p.item_id, s.share * p.score AS score
            FROM shares s JOIN top_in_category p ON p.category IS NOT DISTINCT FROM s.category
            UNION ALL
            SELECT u.user_id, p.item_id, p.score
            FROM users u ANTI JOIN shares USING (user_id) CROSS JOIN top_overall p""",
                       pool=self.config.popular_pool)

    def normalize(self, component: str, query: str | None = None, append: bool = False,
                  **params: Any) -> None:
        """<component>_part: each user's top `candidates` items of one component (the
        table of that name, or `query` when given: a large component is then never
        materialized whole), scored relative to that user's best (one window sort per
        component); `append` adds the rows of more users. Parts are FLOAT: half the bytes
        through the joins and sorts that follow."""
        source = f"WITH {component} AS ({query})" if query else ""
        into = (f"INSERT INTO {component}_part" if append else
                f"CREATE OR REPLACE TEMP TABLE {component}_part AS")
        sold = " ANTI JOIN sold_out_items USING (item_id)" if self.in_stock_only else ""
        self.sql(f"""
            {into} {source}
            SELECT user_id, item_id,
                   (score / nullif(first_value(score) OVER best, 0))::FLOAT AS part
            FROM {component}{sold}
            WINDOW best AS (PARTITION BY user_id ORDER BY score DESC, item_id)
            QUALIFY row_number() OVER best <= $candidates
        """, candidates=self.config.candidates, **params)
        if component in COMPONENTS and component not in self.components:
            self.components += (component,)

    def product_index(self) -> Any:
        """The saved product index (taste.py), None without one; loaded once, with table
        item_labels (item key <-> index label)."""
        if self._product_index is None:
            from .taste import product_index

            self._product_index = product_index(self.ws) or False
            label_items(self.con, self._product_index or None)
        return self._product_index or None

    def _taste(self) -> pa.Table:
        """(user_id, label, score): cosine between each user's mean liked-item vector and
        the products, top `taste_pool` per user through the saved product index (see
        taste.py). Items cross as index labels (integers), never as id strings."""
        import pyarrow as pa

        from .taste import nearest_labels, profiles_of

        index = self.product_index()
        empty = pa.table({"user_id": pa.array([], pa.int32()),
                          "label": pa.array([], pa.int64()),
                          "score": pa.array([], pa.float32())})
        if index is None:
            return empty
        liked = self.con.sql(
            "SELECT i.user_id, l.label, i.strength FROM interactions i "
            "JOIN users USING (user_id) JOIN item_labels l ON l.key = i.item_id "
            "WHERE i.liked").to_arrow_table()
        if liked.num_rows == 0:
            return empty
        users, labels, scores = nearest_labels(index, *profiles_of(
            index, *(liked.column(c).to_numpy() for c in liked.column_names)),
            self.config.taste_pool)
        return pa.table({"user_id": pa.array(users, pa.int32()),
                         "label": pa.array(labels, pa.int64()),
                         "score": pa.array(scores, pa.float32())})

    def gather(self, popularity: str = "popularity") -> None:
        """Table `candidates`: every (user, item) some component proposes, with each
        component's part unweighted, minus what the user may not be offered again. Weights
        only reorder these, so tuning gathers once and ranks many times. The items of a
        browsing session are left out: the shopper is looking at them already.
        `popularity` names the table in the category-popularity slot: the evaluation puts
        its baselines there (most_popular, ease) to rank them under the same rules.
        The parts meet in one chain of full outer joins on (user, item): cheaper than a
        union grouped by (user, item), as most pairs come from one component only."""
        built = [c for c in COMPONENTS if c in self.components]
        if not built:
            raise PinshopError("every blend weight is 0: nothing to rank")
        tables = [f"{popularity if c == 'popularity' else c}_part {c}" for c in built]
        tables += ["session_part session"] if self.has_session else []
        joined = " FULL JOIN ".join(
            [tables[0]] + [f"{table} USING (user_id, item_id)" for table in tables[1:]])
        # Only the built components' columns: rank() sums and sorts these for every pair.
        self.gathered = {c: COLUMNS[c] for c in built}
        if self.has_session:
            self.gathered["session"] = "session"
        parts = ", ".join(f"coalesce({c}.part, 0) AS {column}"
                          for c, column in self.gathered.items())
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE candidates AS
            SELECT user_id, item_id, {parts}, k.category_key
            FROM {joined}
            ANTI JOIN (SELECT user_id, item_id FROM interactions
                       ANTI JOIN rebuyable USING (item_id) WHERE purchased) b
                USING (user_id, item_id)
            JOIN catalog k ON k.id = item_id
            {"ANTI JOIN session_items USING (item_id)" if self.has_session else ""}
        """)

    def rank(self, weights: BlendWeights, table: str = "ranked", parts: bool = False,
             k: int | None = None) -> None:
        """Table `table` (user_id, item_id, category_key, score, rank, and with `parts` the
        weighted parts, which explain a recommendation): each user's top k (`k`, else the
        config's) of `candidates` under `weights`, at most `per_category` per category."""
        columns = {**COLUMNS, "session": "session"}
        weighted = "".join(f"$w_{c} * {column} AS {column}, " if c in self.gathered else
                           f"0::FLOAT AS {column}, " for c, column in columns.items()
                           ) if parts else ""
        total = " + ".join(f"$w_{c} * {column}" for c, column in self.gathered.items())
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE {table} AS
            WITH scored AS (
                SELECT user_id, item_id, category_key, {weighted} {total} AS score
                FROM candidates
            ), capped AS (
                SELECT * FROM scored WHERE score > 0
                QUALIFY row_number() OVER (PARTITION BY user_id, category_key
                                           ORDER BY score DESC, item_id) <= $per_category
            )
            SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY score DESC, item_id)
                AS rank
            FROM capped QUALIFY rank <= $k
        """, **{f"w_{c}": (self.config.session_weight * max(weights.to_dict().values())
                           if c == "session" else getattr(weights, c))
                for c in self.gathered},
                 per_category=self.config.per_category, k=k or self.config.k)


def scoring_date(scorer: Scorer) -> datetime:
    """Just after the newest event: every event counts, the newest with full weight. Events
    dated more than a day past this machine's clock are left out (`ingest-events` refuses
    them now; one dated 2045 in an older workspace made every other event weigh nothing)."""
    latest = datetime.now(timezone.utc).replace(tzinfo=None) + FUTURE_TOLERANCE
    newest = scorer.con.execute("SELECT max(ts) FROM all_events WHERE ts <= $latest",
                                {"latest": latest}).fetchone()
    if newest is None or newest[0] is None:
        raise PinshopError("events.parquet has no events up to now: ingest some events first")
    return newest[0] + timedelta(seconds=1)
