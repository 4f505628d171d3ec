"""The workspace's catalog and events in one DuckDB connection, under integer keys.

Every join, group and sort of the scorer runs on integer surrogate keys (ids are strings
of any length), and ids come back as strings only for the rows shown. The tables:

    all_events(user_id, item_id, event, weight, ts)   events.parquet as ingested (a view)
    item_keys(item_id, key), user_keys(user_id, key)  id <-> key
    catalog(id, title, category, price,               products, by item key, with the
            currency, sold_out, category_key)         change log's live price and stock
    events(user_id, item_id, event, weight, ts)       all_events, by user and item key
    users(user_id)                                    the user keys being scored
    item_labels(key, label)                           item key <-> product index label
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import PinshopError
from ..retrieval.updates import ChangeLog, catalog_identity
from ..workspace.integrity import require_catalog, require_parquet
from ..workspace.layout import EVENTS_AGAIN
from ..workspace.storage import sql_path

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from ..index.hnsw import LoadedIndex
    from ..workspace.layout import Workspace


def connect(ws: Workspace, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A connection with the workspace's tables, spilling to disk beyond `memory_limit`."""
    import duckdb

    if not ws.events.exists():
        raise PinshopError(f"no events in {ws.root}: run `pinshop ingest-events FILE`")
    require_parquet(ws.events, EVENTS_AGAIN)
    require_catalog(ws.catalog)
    con = duckdb.connect()
    tmp = ws.root / ".duckdb-tmp"
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = {sql_path(tmp)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"CREATE VIEW all_events AS SELECT * FROM read_parquet({sql_path(ws.events)})")
    con.execute(f"""
        CREATE TEMP TABLE item_keys AS
        SELECT item_id, (row_number() OVER (ORDER BY item_id))::INTEGER AS key FROM (
            SELECT id AS item_id FROM read_parquet({sql_path(ws.catalog)})
            UNION SELECT item_id FROM all_events)""")
    con.execute("""
        CREATE TEMP TABLE user_keys AS
        SELECT user_id, (row_number() OVER (ORDER BY user_id))::INTEGER AS key
        FROM (SELECT DISTINCT user_id FROM all_events)""")
    # The catalog as every reader sees it: with the live price and stock changes (a
    # server's PATCH) that are not folded into catalog.parquet yet.
    base = catalog_identity(ws.catalog)  # the log rows that apply name this catalog
    con.execute(f"""
        CREATE TEMP TABLE catalog AS SELECT id, title, category, price, currency, availability
        FROM read_parquet({sql_path(ws.catalog)})""")
    try:
        ChangeLog(ws).apply(con, base)
    except duckdb.IOException:  # a server folded the log meanwhile
        raise PinshopError("the catalog changed while it was read (a server folded its live "
                           "changes into it): run the command again") from None
    con.execute("ALTER TABLE catalog RENAME TO live_catalog")
    con.execute("""
        CREATE TEMP TABLE catalog AS
        SELECT k.key AS id, c.title, c.category, c.price, c.currency,
               coalesce(c.availability = 'out_of_stock', false) AS sold_out,
               -- the diversity cap sorts by category: an integer sorts faster
               dense_rank() OVER (ORDER BY c.category)::INTEGER AS category_key
        FROM live_catalog c JOIN item_keys k ON k.item_id = c.id""")
    con.execute("DROP TABLE live_catalog")
    con.execute("""
        CREATE TEMP TABLE events AS
        SELECT u.key AS user_id, i.key AS item_id, e.event, e.weight, e.ts
        FROM all_events e JOIN user_keys u USING (user_id) JOIN item_keys i USING (item_id)""")
    return con


def select_users(con: duckdb.DuckDBPyConnection, users: pa.Table | None) -> None:
    """Table `users`: the keys of `users` (a one-column table `user_id` of user ids, or of
    integer keys already), or of every user with events in table `train` when None. A user
    id with no events yet (a cold user) gets a new key."""
    import pyarrow as pa

    if users is None:
        con.execute("CREATE OR REPLACE TEMP TABLE users AS SELECT DISTINCT user_id FROM train")
        return
    con.register("users_in", users)
    if pa.types.is_integer(users.schema.field("user_id").type):  # keys already
        con.execute("CREATE OR REPLACE TEMP TABLE users AS "
                    "SELECT DISTINCT user_id FROM users_in")
        return
    con.execute("""
        INSERT INTO user_keys
        SELECT user_id, (SELECT coalesce(max(key), 0) FROM user_keys)
                        + (row_number() OVER (ORDER BY user_id))::INTEGER
        FROM (SELECT DISTINCT user_id FROM users_in ANTI JOIN user_keys USING (user_id))
    """)
    con.execute("CREATE OR REPLACE TEMP TABLE users AS SELECT DISTINCT k.key AS user_id "
                "FROM users_in JOIN user_keys k USING (user_id)")


def label_items(con: duckdb.DuckDBPyConnection, index: LoadedIndex | None) -> None:
    """Table `item_labels`: each item key's label in the product index (empty without one):
    the taste component's items cross to hnswlib as labels, never as id strings."""
    import pyarrow as pa

    con.register("index_labels", index.label_table if index is not None else
                 pa.table({"label": pa.array([], pa.int64()), "id": pa.array([], pa.string())}))
    con.execute("CREATE OR REPLACE TEMP TABLE item_labels AS SELECT k.key, l.label "
                "FROM index_labels l JOIN item_keys k ON k.item_id = l.id")
    con.unregister("index_labels")
