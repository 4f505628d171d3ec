"""The shopper's current browsing session: what they are looking at now pulls in its
neighbours, "because you looked at X".

A session is a few events in the events' columns (item_id, event; ts, weight and user_id
optional) that the workspace has not ingested: the CLI reads them from a file
(`recommend --session FILE`), the chat and the serve API pass the ones they hold. For the
user being scored, with s(i) the session's weight on item i:

    s(i)          = sum over the session's events on i of
                    weight(e) * 0.5 ** (events after e in the session / SESSION_HALF_LIFE)
    co(i, j)      = sum_u r(u,i) r(u,j) / (||r(., i)|| ||r(., j)||) over all training
                    interactions (scorer.py's r): bought or saved together
    look(i, j)    = cos(vector(i), vector(j)), the `neighbors` nearest in the product
                    index: looks alike
    session(u, j) = sum over i of s(i) * (co(i, j) + look(i, j)), for j not in the session
    because(u, j) = the i with the largest term

Each session item keeps its `neighbors` best co-occurrence neighbours, and only the
PULLING_ITEMS strongest items pull: the work grows with the buyers of those few items, never
with the catalog or the session's length.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..io.events import check_events, check_format, columns, default_weight_sql, read_records
from ..io.records import read_arrow
from ..io.text import EIGHT_BIT

if TYPE_CHECKING:
    import pyarrow as pa

    from .scorer import Scorer

SESSION_HALF_LIFE = 5.0  # events: the fifth-newest look counts half as much as the newest
#: The session items that pull in neighbours, strongest first: the 100th newest look weighs
#: 0.5 ** 20 (one millionth) of the newest, so a longer session adds nothing but work (a
#: 100k-event file cost 34 s and 3.5 GB pairing every item it named).
PULLING_ITEMS = 100


def read_session(source: str | Path | pa.Table | Sequence[Mapping[str, Any]],
                 notes: list[str] | None = None, user: str | None = None) -> pa.Table:
    """The session's events as a table (item_id, event, weight, position), position 0 the
    newest: from a CSV or Parquet file, an Arrow table or a list of event dicts. A CSV with
    no UTF-8 at all is read as Windows-1252, as events are, and `notes` says so.

    Each row is checked as an ingested event is (io/events.py), except that user_id is
    not needed and ts may be left out (then the rows' order is the session's, the last row
    the newest): a bad row is an error that names it. Item ids are matched to the catalog
    when the session is scored; one that is not there pulls in nothing.

    A session is one shopper's. Where rows name a user_id, those of users other than
    `user` (the shopper recommended for, None: an anonymous one) are left out and said so;
    a session of other users' events only, or one mixing several users' events for an
    anonymous shopper, is an error: it was taken as this shopper's without a word."""
    import duckdb
    import pyarrow as pa

    if not isinstance(source, (str, Path)):
        table = source if isinstance(source, pa.Table) else _events_table(source)
        if table.num_rows == 0:  # a conversation that has shown nothing yet
            return pa.table({"item_id": pa.array([], pa.string()),
                             "event": pa.array([], pa.string()),
                             "weight": pa.array([], pa.float64()),
                             "position": pa.array([], pa.int64())})
    with duckdb.connect() as con, tempfile.TemporaryDirectory(prefix="pinshop-session-") as tmp:
        con.execute("SET TimeZone = 'UTC'")  # ts with an offset compare as instants
        if isinstance(source, (str, Path)):
            path = Path(source)
            check_format(path, "session")
            names, encoding = read_records(con, path, Path(tmp))
            name, row = path.name, f"{path.name} line"
            if encoding == EIGHT_BIT and notes is not None:  # else ids read wrong, unsaid
                notes.append(f"{path.name} is not UTF-8: read as {EIGHT_BIT}")
        else:
            names, name, row = read_arrow(con, table), "the session", "session event"
        found = columns(name, names, ("item_id", "event"))
        checked = check_events(con, found, None,
                               ("item_id", "event", *(("ts",) if "ts" in found else ())))
        con.register("checked", checked)
        bad = con.execute("SELECT line, reason, count(*) OVER () FROM checked "
                          "WHERE reason IS NOT NULL ORDER BY line LIMIT 1").fetchone()
        if bad is not None:
            more = f" (and {bad[2] - 1} more)" if bad[2] > 1 else ""
            rule = ("; give ts on every event or on none (without ts, the last event is the "
                    "newest)" if bad[1] == "missing ts" else "")
            raise PinshopError(f"{row} {bad[0]}: {bad[1]}{more}{rule}")
        if checked.num_rows == 0:
            raise PinshopError(f"{name} has no events: a session needs at least one "
                               "(item_id, event)")
        others_out = _leave_out_others(con, name, user, notes)
        return con.sql(f"""
            SELECT item_id, event,
                   coalesce(weight, CASE event {default_weight_sql()} END) AS weight,
                   row_number() OVER (ORDER BY ts DESC NULLS LAST, line DESC) - 1 AS position
            FROM checked
            WHERE NOT $others_out OR user_id IS NULL OR user_id = $user
            ORDER BY position""", params={"others_out": others_out, "user": user}
                       ).to_arrow_table()


def _leave_out_others(con: Any, name: str, user: str | None, notes: list[str] | None
                      ) -> bool:
    """Whether rows of `checked` naming a user other than `user` are to be left out (and
    said so); an error where no row would be left, or an anonymous session mixes users."""
    users, others, named, strangers = con.execute("""
        SELECT count(DISTINCT user_id), count(*) FILTER (stranger),
               list(DISTINCT user_id ORDER BY user_id) FILTER (user_id IS NOT NULL)[:3],
               count(DISTINCT user_id) FILTER (stranger)
        FROM (SELECT *, user_id IS DISTINCT FROM $user AND user_id IS NOT NULL AS stranger
              FROM checked)""", {"user": user}).fetchall()[0]

    def listed(ids: list[str], count: int) -> str:
        return ", ".join(repr(u) for u in ids) + (", ..." if count > len(ids) else "")

    if user is None:
        if users > 1:
            raise PinshopError(f"{name} mixes the events of {users} users "
                               f"({listed(named, users)}): a "
                               "session is one shopper's; recommend for one of them by "
                               "user id, or leave user_id out")
        if users == 1 and notes is not None:
            notes.append(f"the session names user {named[0]!r}: recommended for an "
                         "anonymous shopper; give the user id to add their history")
        return False
    if others == 0:
        return False
    total = con.execute("SELECT count(*) FROM checked").fetchall()[0][0]
    if others == total:
        raise PinshopError(f"{name} holds no events of user {user!r}: its user_id names "
                           f"{listed(named, users)}")
    if notes is not None:
        shown = con.execute("SELECT DISTINCT user_id FROM checked WHERE user_id <> $user "
                            "ORDER BY user_id LIMIT 3", {"user": user}).fetchall()
        one = others == 1
        notes.append(f"{others} of the session's {total} events name{'s' if one else ''} "
                     f"another user than {user!r} "
                     f"({listed([u for (u,) in shown], strangers)}) and "
                     f"{'was' if one else 'were'} left out")
    return True


def _events_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Event dicts as text columns, one for every key any of them has (a session holds a
    few events: at most the API's 1,000)."""
    import pyarrow as pa

    keys = dict.fromkeys(key for row in rows for key in row)
    return pa.table({key: pa.array([None if row.get(key) is None else str(row[key])
                                    for row in rows], pa.string()) for key in keys})


def session_tables(scorer: Scorer, session: pa.Table, notes: list[str] | None = None
                   ) -> None:
    """Tables session_part (user_id, item_id, part) and session_because (user_id, item_id,
    because) for every user in table `users` (the one being scored), from `session`
    (read_session) and table `interactions` (built by Scorer.prepare). Ids not in the
    catalog are said in `notes` (none known at all is an error)."""
    import numpy as np
    import pyarrow as pa

    c = scorer.config
    scorer.con.register("session_in", session)
    scorer.sql("""
        CREATE OR REPLACE TEMP TABLE session_items AS
        SELECT k.key AS item_id,
               sum(s.weight * pow(0.5, s.position / $half_life)) AS strength
        FROM session_in s JOIN item_keys k ON k.item_id = s.item_id GROUP BY k.key
    """, half_life=SESSION_HALF_LIFE)
    unknown, named, examples = scorer.con.execute("""
        SELECT count(DISTINCT s.item_id) FILTER (WHERE k.key IS NULL),
               count(DISTINCT s.item_id),
               list(DISTINCT s.item_id ORDER BY s.item_id) FILTER (WHERE k.key IS NULL)[:3]
        FROM session_in s LEFT JOIN item_keys k ON k.item_id = s.item_id""").fetchall()[0]
    if unknown:
        listed = ", ".join(repr(item) for item in examples)
        if unknown == named:
            # Every id unknown (a typo, another shop's export): not an anonymous popular list.
            raise PinshopError(f"none of the session's items is in the catalog (e.g. {listed})")
        if notes is not None:
            notes.append(f"{unknown} of the session's {named} items "
                         f"{'is' if unknown == 1 else 'are'} not in the catalog and "
                         f"{'pulls' if unknown == 1 else 'pull'} in "
                         f"nothing: {listed}{', ...' if unknown > 3 else ''}")
    scorer.con.unregister("session_in")
    scorer.sql("""
        CREATE OR REPLACE TEMP TABLE session_co AS
        WITH norms AS (
            SELECT item_id, sqrt(sum(strength * strength)) AS norm
            FROM interactions GROUP BY item_id
        ), pairs AS (
            SELECT a.item_id AS item, b.item_id AS neighbor, sum(a.strength * b.strength) AS dot
            FROM interactions a SEMI JOIN (SELECT item_id FROM session_items
                                           ORDER BY strength DESC, item_id LIMIT $pulling) s
                ON s.item_id = a.item_id
            JOIN interactions b ON b.user_id = a.user_id AND b.item_id <> a.item_id
            GROUP BY a.item_id, b.item_id
        )
        SELECT item, neighbor, dot / (ni.norm * nj.norm) AS sim
        FROM pairs JOIN norms ni ON ni.item_id = item JOIN norms nj ON nj.item_id = neighbor
        WHERE ni.norm > 0 AND nj.norm > 0
        QUALIFY row_number() OVER (PARTITION BY item ORDER BY sim DESC, neighbor) <= $n
    """, n=c.neighbors, pulling=PULLING_ITEMS)
    # Looks alike: one batched hnswlib query for the session items' vectors.
    looks = pa.table({"item": pa.array([], pa.int32()), "label": pa.array([], pa.int64()),
                      "sim": pa.array([], pa.float32())})
    index = scorer.product_index()
    if index is not None:
        labelled = scorer.con.execute(
            "SELECT s.item_id, l.label FROM session_items s JOIN item_labels l "
            "ON l.key = s.item_id ORDER BY s.strength DESC, s.item_id LIMIT $pulling",
            {"pulling": PULLING_ITEMS}).fetchnumpy()
        if len(labelled["label"]):
            k = min(c.neighbors + 1, index.live_count)  # +1: an item finds itself first
            labels, cosines = index.knn(index.vectors_of(labelled["label"]), k)
            looks = pa.table({"item": np.repeat(labelled["item_id"], k).astype(np.int32),
                              "label": labels.ravel().astype(np.int64),
                              "sim": cosines.ravel().astype(np.float32)})
    scorer.con.register("session_looks", looks)
    scorer.sql("""
        CREATE OR REPLACE TEMP TABLE session_terms AS
        WITH neighbours AS (
            SELECT item, neighbor, sim FROM session_co
            UNION ALL
            SELECT x.item, l.key AS neighbor, greatest(x.sim, 0) AS sim
            FROM session_looks x JOIN item_labels l USING (label)
        )
        SELECT u.user_id, n.neighbor AS item_id, n.item AS because,
               sum(s.strength * n.sim) AS score
        FROM neighbours n JOIN session_items s ON s.item_id = n.item
        ANTI JOIN session_items x ON x.item_id = n.neighbor
        CROSS JOIN users u
        GROUP BY u.user_id, n.neighbor, n.item
    """)
    scorer.con.unregister("session_looks")
    scorer.sql("""
        CREATE OR REPLACE TEMP TABLE session_because AS
        SELECT user_id, item_id, arg_max(because, score) AS because FROM session_terms
        GROUP BY user_id, item_id
    """)
    scorer.normalize("session", "SELECT user_id, item_id, sum(score) AS score "
                                "FROM session_terms GROUP BY user_id, item_id")
    scorer.has_session = True
