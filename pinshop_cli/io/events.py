"""Events ingestion: CSV/Parquet interactions into events.parquet, validated in DuckDB.

Every data row of the input ends up in exactly one place: events.parquet, or
rejects/events.parquet with its line number and reason. The one exception is an exact
duplicate (all five stored fields equal to another accepted row of this file or to a stored
event): it is merged into that event and counted in `EventsSummary.duplicates`, which is
what makes re-ingesting a file idempotent (events.parquet is a distinct set of rows).

What is accepted:

- ids, event type, ts and weight are trimmed of surrounding whitespace; the event type is
  case-insensitive (view|click|save|cart|purchase);
- ts: ISO-8601 text (an offset such as `+02:00` or `Z` is converted; stored as naive UTC),
  epoch seconds, or epoch milliseconds: a number above 1e11 (as seconds, after the year 5138)
  is read as milliseconds. Only instants from 1970-01-01 00:00:00 UTC up to, not including,
  2100-01-01 are accepted: `infinity`, `NaN`, far past/future dates (a millisecond value
  mistaken for seconds, a sign error) are data errors, and would overflow the date
  arithmetic of `pinshop recommend` later. Nor is an instant more than a day ahead of this
  machine's clock: recommendations age every event from the newest, so one event dated
  2045 made every other event weigh nothing, for every shopper;
- weight (optional): a finite number from 0 to 1e9; empty means the event type's default.

Reading the file (`text.scan_text`, then `records.read_csv` or `records.read_parquet`, the
readers catalogs use too):

- CSV text is comma-separated, quoted with `"` (a quote inside a quoted field doubled),
  never sniffed, one record per line: events never need a field that spans lines, so a line
  whose quotes do not pair up is rejected on its own and never swallows the lines after it.
  It is UTF-8 (a BOM is fine), UTF-16 with a BOM, or a legacy 8-bit export read as
  Windows-1252 as a whole, so `Café` stays `Café`; a UTF-8 file with a few undecodable
  lines gets those lines rejected. Line ends may be LF, CRLF or CR alone. Malformed lines
  (too many or too few fields, a stray or unclosed quote) are rejected with the reason, in
  the same words as a catalog's. Blank lines are not rows. A file that cannot be read at
  all (binary, empty, corrupt Parquet, no permission, a header with broken quoting) is
  refused with a one-line error.
- Line numbers: for CSV the physical line in the file, the header being line 1 (blank
  lines before it count); for Parquet the row number, from 1.

Paths are passed to DuckDB as bound parameters, never pasted into SQL.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError, first_line
from ..workspace.integrity import parquet_problem
from ..workspace.layout import Workspace
from ..workspace.storage import write_parquet
from . import records
from .text import scan_text

if TYPE_CHECKING:
    import pyarrow as pa

#: Default strength of each event type (an explicit `weight` column overrides it).
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "save": 4.0, "cart": 6.0, "purchase": 10.0}
REQUIRED = ("user_id", "item_id", "event", "ts")
FIELDS = (*REQUIRED, "weight")

#: Accepted timestamps: [TS_MIN, TS_MAX) in UTC, and the same bounds in epoch seconds.
TS_MIN, TS_MAX = "1970-01-01", "2100-01-01"
TS_MIN_S, TS_MAX_S = 0, 4_102_444_800
#: How far past this machine's clock an event may be (another time zone's clock, a skew).
FUTURE_TOLERANCE = timedelta(days=1)
#: A numeric ts above this is epoch milliseconds (as seconds it would be after 5138).
MILLIS_ABOVE = 1e11
MAX_WEIGHT = 1e9  # "must be from 0 to 1e9" in the reject reason
ORDER = "ts, user_id, item_id, event, weight"  # events.parquet order, deterministic

WHITESPACE = "' ' || chr(9) || chr(10) || chr(13)"


@dataclass
class EventsSummary:
    rows_ok: int  # valid rows, duplicates included
    rows_rejected: int
    added: int  # rows not already in events.parquet
    total: int
    duplicates: int = 0  # valid rows identical to another row of the file or a stored event
    encoding: str | None = None  # the text encoding a CSV was read with
    notes: list[str] = field(default_factory=list)


def ingest_events(path: str | Path, workspace: str | Path | None = None) -> EventsSummary:
    """Validate and append an events file to the workspace's events.parquet."""
    import duckdb

    path = Path(path)
    check_format(path, "events")
    ws = Workspace.open(workspace)
    if not ws.catalog.exists():
        raise PinshopError(f"no catalog in {ws.root}: events refer to catalog item ids; "
                           "run `pinshop ingest CATALOG` first")
    notes: list[str] = []
    with duckdb.connect() as con, tempfile.TemporaryDirectory(prefix="pinshop-events-") as tmp:
        con.execute("SET TimeZone = 'UTC'")  # timestamps are stored as naive UTC
        names, encoding = read_records(con, path, Path(tmp))
        try:
            checked = check_events(con, columns(path.name, names, REQUIRED), ws.catalog)
            rejects = _rejects(con, path.name, checked)
            new = _arrow(con, f"""
                SELECT user_id, item_id, event, ts,
                       coalesce(weight, CASE event {default_weight_sql()} END) AS weight
                FROM checked WHERE reason IS NULL""", tables={"checked": checked})
            with ws.lock():
                # A damaged events.parquet is what `recommend` sends the user here to fix:
                # its rows cannot be read, so this file's rows replace it.
                damage = parquet_problem(ws.events) if ws.events.exists() else None
                if damage is not None and damage.startswith("unreadable:"):  # EACCES, EIO
                    raise PinshopError(f"cannot read {ws.events}: {damage}")
                if damage is not None:  # kept aside, never dropped
                    aside = ws.events.with_name(f"events.parquet.damaged-{time.time_ns()}")
                    ws.events.replace(aside)
                    notes.append(f"{ws.events} was damaged ({damage}), moved to {aside.name}: "
                                 f"written again from {path.name}; ingest the others again")
                before, merged = _merge(con, new, ws.events)
                write_parquet(merged, ws.events, checked=True)
                write_parquet(_with_earlier_rejects(con, rejects, ws.rejects_dir /
                                                    "events.parquet", notes),
                              ws.rejects_dir / "events.parquet")
        except duckdb.Error as exc:
            raise PinshopError(f"cannot ingest {path.name}: {first_line(exc)}") from None
    added = merged.num_rows - before
    return EventsSummary(new.num_rows, rejects.num_rows, added, merged.num_rows,
                         duplicates=new.num_rows - added, encoding=encoding, notes=notes)


# -- reading -------------------------------------------------------------------------------

def check_format(path: Path, what: str) -> None:
    """Refuse a file that is not there or not CSV or Parquet (`what` names it in errors)."""
    if path.is_dir():
        raise PinshopError(f"{path} is a directory: name the {what} file")
    if not path.is_file():
        raise PinshopError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise PinshopError(f"unsupported {what} format {suffix!r}: use .csv or .parquet")


def read_records(con: Any, path: Path, scratch: Path) -> tuple[list[str], str | None]:
    """Fill the table `records` from an events file: (its column names, the encoding a
    CSV was read with)."""
    if path.suffix.lower() == ".parquet":
        return records.read_parquet(con, path, path.name), None
    text = scan_text(path, scratch, path.name, refuse_binary=True)
    return records.read_csv(con, text, path.name, multiline=False), text.encoding


def columns(name: str, names: list[str], required: tuple[str, ...]) -> dict[str, int]:
    """Our field -> the index of the file's column; names match case-insensitively, trimmed
    (the first of two that match wins)."""
    found: dict[str, int] = {}
    for index, column in enumerate(names):
        found.setdefault(column.strip().lower(), index)
    if missing := [c for c in required if c not in found]:
        optional = ", ".join(f for f in FIELDS if f not in required)
        # "user_id;item_id;event" read as one column: the separator, not the names, is wrong
        separator = next((c for c in ";\t|" if len(names) == 1 and c in names[0]), None)
        hint = (f" (its header is one column, {names[0][:60]!r}: fields are separated by "
                f"commas, not {separator!r})" if separator else "")
        raise PinshopError(f"{name} lacks column(s) {', '.join(missing)}; "
                           f"it needs {', '.join(required)} ({optional} optional){hint}")
    return {f: found[f] for f in FIELDS if f in found}


# -- checking -------------------------------------------------------------------------------

def check_events(con: Any, columns: dict[str, int], catalog: Path | None,
                 required: tuple[str, ...] = REQUIRED) -> pa.Table:
    """The rows of `records` with parsed ts and weight and a `reason` (NULL when the row
    is valid; the reader's problem when it could not read the line). A row must have each
    `required` field; its item id must be in `catalog` (unless None)."""
    missing = "\n".join(f"WHEN p.{f} IS NULL THEN 'missing {f}'"
                        for f in ("user_id", "item_id", "event") if f in required)
    no_ts = "WHEN p.ts_raw IS NULL THEN 'missing ts'" if "ts" in required else ""
    unknown_item = ("WHEN c.id IS NULL THEN 'unknown item id ''' || p.item_id || ''''"
                    if catalog else "")
    ids = "read_parquet($catalog)" if catalog else "(SELECT NULL::VARCHAR AS id)"
    fields = ", ".join(f"c{columns[f]} AS {f}" if f in columns else f"NULL::VARCHAR AS {f}"
                       for f in FIELDS)
    events = ", ".join(f"'{e}'" for e in EVENT_WEIGHTS)
    in_window = (f"ts_tz >= TIMESTAMPTZ '{TS_MIN} 00:00:00+00' "
                 f"AND ts_tz < TIMESTAMPTZ '{TS_MAX} 00:00:00+00'")
    seconds_ok = f"isfinite(ts_s) AND ts_s >= {TS_MIN_S} AND ts_s < {TS_MAX_S}"
    window = f"not between {TS_MIN} and {TS_MAX}"
    latest = (datetime.now(timezone.utc) + FUTURE_TOLERANCE).strftime("%Y-%m-%d %H:%M:%S")
    return _arrow(con, f"""
        WITH raw AS (
            SELECT line, problem,
                   nullif(trim(user_id, {WHITESPACE}), '') AS user_id,
                   nullif(trim(item_id, {WHITESPACE}), '') AS item_id,
                   nullif(lower(trim(event, {WHITESPACE})), '') AS event,
                   nullif(trim(ts, {WHITESPACE}), '') AS ts_raw,
                   nullif(trim(weight, {WHITESPACE}), '') AS weight_raw
            FROM (SELECT line, problem, {fields} FROM records)
        ), parsed AS (
            SELECT *, try_cast(ts_raw AS TIMESTAMPTZ) AS ts_tz,
                      try_cast(ts_raw AS DOUBLE) AS ts_num,
                      try_cast(weight_raw AS DOUBLE) AS weight
            FROM raw
        ), seconds AS (
            SELECT *, CASE WHEN ts_num > {MILLIS_ABOVE} THEN ts_num / 1000 ELSE ts_num END
                      AS ts_s
            FROM parsed
        ), timed AS (
            -- Out-of-window values are clamped before the conversion, so no input can
            -- make a conversion raise; the CASE then keeps only in-window results.
            SELECT *, CASE
                WHEN ts_tz IS NOT NULL THEN CASE WHEN {in_window} THEN
                    least(greatest(ts_tz, TIMESTAMPTZ '{TS_MIN} 00:00:00+00'),
                          TIMESTAMPTZ '{TS_MAX} 00:00:00+00')::TIMESTAMP END
                WHEN {seconds_ok} THEN make_timestamp(CAST(round(
                    least(greatest(ts_s, {TS_MIN_S}), {TS_MAX_S}) * 1000000) AS BIGINT))
            END AS ts
            FROM seconds
        )
        SELECT p.line, p.problem, p.user_id, p.item_id, p.event, p.ts_raw,
               p.weight_raw, p.ts, p.weight,
        CASE
            WHEN p.problem IS NOT NULL THEN p.problem
            {missing}
            WHEN p.event NOT IN ({events}) THEN 'unknown event type ''' || p.event || ''''
            {no_ts}
            WHEN p.ts IS NULL AND (p.ts_tz IS NOT NULL OR isfinite(p.ts_num))
                THEN 'bad timestamp ''' || p.ts_raw || ''': {window}'
                     || CASE WHEN p.ts_tz IS NULL AND p.ts_num > {MILLIS_ABOVE}
                             THEN ' (read as epoch milliseconds)' ELSE '' END
            WHEN p.ts IS NULL AND p.ts_raw IS NOT NULL
                THEN 'bad timestamp ''' || p.ts_raw || ''''
            WHEN p.ts > TIMESTAMP '{latest}'
                THEN 'bad timestamp ''' || p.ts_raw || ''': in the future (after {latest} '
                     || 'UTC, a day past this machine''s clock)'
            WHEN p.weight_raw IS NOT NULL AND p.weight IS NULL
                THEN 'bad weight ''' || p.weight_raw || ''''
            WHEN NOT isfinite(p.weight)
                THEN 'bad weight ''' || p.weight_raw || ''': not a finite number'
            WHEN p.weight < 0 OR p.weight > {MAX_WEIGHT}
                THEN 'bad weight ''' || p.weight_raw || ''': must be from 0 to 1e9'
            {unknown_item}
        END AS reason
        FROM timed p
        LEFT JOIN (SELECT DISTINCT CAST(id AS VARCHAR) AS id FROM {ids}) c
            ON c.id = p.item_id
        ORDER BY p.line""", {"catalog": str(catalog)} if catalog else None)


def _rejects(con: Any, source: str, checked: pa.Table) -> pa.Table:
    """One row per refused input line: source, line, id, reason, raw (the line as read when
    the reader refused it, else the fields as trimmed)."""
    return _arrow(con, """
        SELECT $source AS source, CAST(c.line AS BIGINT) AS line, c.item_id AS id, c.reason,
               coalesce(r.raw, concat_ws(',', coalesce(c.user_id, ''),
                                         coalesce(c.item_id, ''), coalesce(c.event, ''),
                                         coalesce(c.ts_raw, ''), coalesce(c.weight_raw, '')))
                   AS raw
        FROM checked c
        LEFT JOIN (SELECT line, raw FROM records WHERE problem IS NOT NULL) r USING (line)
        WHERE c.reason IS NOT NULL ORDER BY c.line""", {"source": source},
                  tables={"checked": checked})


def _with_earlier_rejects(con: Any, rejects: pa.Table, stored: Path, notes: list[str]
                          ) -> pa.Table:
    """`rejects` with those of the files ingested before (events come in many files; each
    run wrote over the last one's reasons), each reject once: a file ingested again adds
    none twice. (Matched by content, not by name: days/01/events.csv and days/02/events.csv
    are two files.)"""
    if not stored.exists():
        return rejects
    if damage := parquet_problem(stored):
        notes.append(f"{stored} was damaged ({damage}): the rejects of earlier files are lost")
        return rejects
    return _arrow(con, "SELECT DISTINCT * FROM (SELECT * FROM read_parquet($stored) "
                       "UNION ALL BY NAME SELECT * FROM rejects) ORDER BY source, line",
                  {"stored": str(stored)}, tables={"rejects": rejects})


def _merge(con: Any, new: pa.Table, events: Path) -> tuple[int, pa.Table]:
    """(rows stored before, the distinct union of the stored and the new events)."""
    if not events.exists():
        return 0, _arrow(con, f"SELECT DISTINCT * FROM new ORDER BY {ORDER}", tables={"new": new})
    stored = "SELECT user_id, item_id, event, ts, weight FROM read_parquet($events)"
    before = _arrow(con, f"SELECT count(*) AS n FROM ({stored})", {"events": str(events)})
    merged = _arrow(con, f"SELECT DISTINCT * FROM ({stored} UNION ALL SELECT * FROM new) "
                         f"ORDER BY {ORDER}",
                    {"events": str(events)}, tables={"new": new})
    return int(before.column("n")[0].as_py()), merged


def default_weight_sql() -> str:
    return " ".join(f"WHEN '{e}' THEN {w}" for e, w in EVENT_WEIGHTS.items())


# -- helpers --------------------------------------------------------------------------------

def _arrow(con: Any, sql: str, params: dict[str, Any] | None = None,
           tables: dict[str, Any] | None = None) -> pa.Table:
    """Run one query on `con` and return an Arrow table (tables are registered for it)."""
    for name, table in (tables or {}).items():
        con.register(name, table)
    try:
        relation = con.sql(sql, params=params or None)
        # duckdb 2 names it to_arrow_table; 1.x arrow().
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        return fetch()
    finally:
        for name in tables or {}:
            con.unregister(name)
