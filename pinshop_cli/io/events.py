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
  arithmetic of `pinshop recommend` later;
- weight (optional): a finite number from 0 to 1e9; empty means the event type's default.

Reading the file:

- CSV text is comma-separated, quoted with `"` (a quote inside a quoted field doubled),
  never sniffed: one odd line must not change how the others are read. It is UTF-8 (a BOM
  is fine) or UTF-16 with a BOM (read through a UTF-8 copy). A file with bytes that are not
  UTF-8 and no UTF-8 multi-byte sequence anywhere is a legacy 8-bit export (e.g. Excel on
  Windows) and is read as Latin-1 as a whole, so `Café` stays `Café`. A UTF-8 file with a
  few undecodable lines gets those lines rejected ("not valid UTF-8 text"). Malformed lines
  (too many or too few fields, a stray or unclosed quote) are rejected with the reason, each
  on its own: lines whose quotes do not pair up are blanked in a copy of the file before
  DuckDB reads it, so an open quote never swallows the lines after it. Blank lines are not
  rows. A file that cannot be read at all (binary, empty, corrupt Parquet, no permission,
  a header with broken quoting) is refused with a one-line error.
- Line numbers: for CSV the physical line in the file, the header being line 1 (exact as
  long as no quoted field spans lines, which events never need); for Parquet the row
  number, from 1.

Paths are passed to DuckDB as bound parameters, never pasted into SQL.
"""

from __future__ import annotations

import codecs
import csv
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..workspace.layout import Workspace
from ..workspace.storage import write_parquet

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

#: Default strength of each event type (an explicit `weight` column overrides it).
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "save": 4.0, "cart": 6.0, "purchase": 10.0}
REQUIRED = ("user_id", "item_id", "event", "ts")
FIELDS = (*REQUIRED, "weight")

#: Accepted timestamps: [TS_MIN, TS_MAX) in UTC, and the same bounds in epoch seconds.
TS_MIN, TS_MAX = "1970-01-01", "2100-01-01"
TS_MIN_S, TS_MAX_S = 0, 4_102_444_800
#: A numeric ts above this is epoch milliseconds (as seconds it would be after 5138).
MILLIS_ABOVE = 1e11
MAX_WEIGHT = 1e9  # "must be from 0 to 1e9" in the reject reason
ORDER = "ts, user_id, item_id, event, weight"  # events.parquet order, deterministic

CHUNK = 1 << 20
# A valid UTF-8 multi-byte sequence (RFC 3629). A file that holds one is meant as UTF-8.
UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}")
# A line whose quoting is broken: some quote neither opens a field, nor closes one (before a
# comma or the line end), nor is doubled inside one. Group 2 keeps a CRLF line's CR.
_FIELD = rb'(?:"[^"\n]*(?:""[^"\n]*)*"|[^",\r\n]*)'
_RECORD = _FIELD + rb"(?:," + _FIELD + rb")*"
BAD_QUOTES = re.compile(
    rb"^(?!(?:\A\xef\xbb\xbf)?" + _RECORD + rb"(?:\r" + _RECORD + rb")*$)(.*?)(\r?)$",
    re.MULTILINE)
# DuckDB's CSV reader error types, as a user reads them.
CSV_ERRORS = {"INVALID ENCODING": "not valid UTF-8 text",
              "MISSING COLUMNS": "malformed CSV line: too few fields",
              "TOO MANY COLUMNS": "malformed CSV line: too many fields",
              "UNQUOTED VALUE": "malformed CSV line: stray quote",
              "LINE SIZE OVER MAXIMUM": "malformed CSV line: line too long"}
WHITESPACE = "' ' || chr(9) || chr(10) || chr(13)"


@dataclass
class EventsSummary:
    rows_ok: int  # valid rows, duplicates included
    rows_rejected: int
    added: int  # rows not already in events.parquet
    total: int
    duplicates: int = 0  # valid rows identical to another row of the file or a stored event
    encoding: str | None = None  # the text encoding a CSV was read with


@dataclass
class _Source:
    """The input as text columns (line, user_id, item_id, event, ts, weight), plus the lines
    the file reader itself refused (line, reason, raw)."""

    rows: pa.Table
    unreadable: pa.Table | None = None
    encoding: str | None = None


def ingest_events(path: str | Path, workspace: str | Path | None = None) -> EventsSummary:
    """Validate and append an events file to the workspace's events.parquet."""
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise PinshopError(f"events file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise PinshopError(f"unsupported events format {suffix!r}: use .csv or .parquet")
    ws = Workspace.open(workspace)
    if not ws.catalog.exists():
        raise PinshopError(f"no catalog in {ws.root}: events refer to catalog item ids; "
                           "run `pinshop ingest CATALOG` first")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # timestamps are stored as naive UTC
        source = _read_csv(con, path) if suffix == ".csv" else _read_parquet(con, path)
        try:
            checked = _check(con, source.rows, ws.catalog)
            rejects = _rejects(con, path.name, checked, source.unreadable)
            new = _arrow(con, f"""
                SELECT user_id, item_id, event, ts,
                       coalesce(weight, CASE event {_default_weights()} END) AS weight
                FROM checked WHERE reason IS NULL""", tables={"checked": checked})
            with ws.lock():
                before, merged = _merge(con, new, ws.events)
                write_parquet(merged, ws.events)
                write_parquet(rejects, ws.rejects_dir / "events.parquet")
        except duckdb.Error as exc:
            raise PinshopError(f"cannot ingest {path.name}: {_first_line(exc)}") from None
    added = merged.num_rows - before
    return EventsSummary(new.num_rows, rejects.num_rows, added, merged.num_rows,
                         duplicates=new.num_rows - added, encoding=source.encoding)


# -- reading --------------------------------------------------------------------------------

def _read_csv(con: Any, path: Path) -> _Source:
    import duckdb
    import pyarrow as pa

    with tempfile.TemporaryDirectory(prefix="pinshop-events-") as tmp:
        utf16 = _utf8_copy(path, Path(tmp) / "utf8.csv")
        source = utf16 or path
        scan = _sniff_text(source, path)
        first = _first_data_line(scan.blank_lines)
        if first - 1 in scan.bad_quotes:
            raise PinshopError(f"cannot read {path}: its header (line {first - 1}) has a stray "
                               "or unclosed quote")
        header = _header(source, scan.encoding, path)
        columns = _columns(path, header)
        if scan.bad_quotes:
            source = _blank_bad_quotes(source, Path(tmp) / "quoted.csv")
        # Dialect and columns are given, not sniffed (one bad line could change how the whole
        # file is read); a bad line (undecodable, wrong number of fields) is recorded in
        # reject_errors with its line number instead of failing the whole file.
        names = ", ".join(f"'c{n}': 'VARCHAR'" for n in range(len(header)))
        reader = (f"read_csv($path, auto_detect = false, header = true, skip = {first - 2}, "
                  f"columns = {{{names}}}, delim = ',', quote = '\"', escape = '\"', "
                  "store_rejects = true, encoding = $encoding)")
        try:
            table = _arrow(con, f"SELECT * FROM {reader}",
                           {"path": str(source), "encoding": scan.encoding})
            unreadable = _arrow(con, f"""
                SELECT CAST(line AS BIGINT) AS line, {_csv_reason()} AS reason,
                       trim(any_value(csv_line), chr(10) || chr(13)) AS raw
                FROM reject_errors WHERE scan_id = (SELECT max(scan_id) FROM reject_scans)
                GROUP BY line""")
        except duckdb.Error as exc:
            raise PinshopError(f"cannot read {path}: {_first_line(exc)}") from None
    quoted = pa.table({
        "line": list(scan.bad_quotes),
        "reason": [CSV_ERRORS["UNQUOTED VALUE"]] * len(scan.bad_quotes),
        "raw": [raw.decode(scan.encoding, "replace") for raw in scan.bad_quotes.values()]},
        schema=unreadable.schema)
    unreadable = pa.concat_tables([unreadable, quoted])
    skipped = _numpy_lines(unreadable.column("line"), scan.blank_lines)
    lines = _record_lines(table.num_rows, skipped, first=first)
    rows = pa.table({"line": lines, **{f: _text(table, columns.get(f)) for f in FIELDS}})
    return _Source(rows, unreadable, "utf-16" if utf16 else scan.encoding)


def _read_parquet(con: Any, path: Path) -> _Source:
    import duckdb
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise PinshopError(f"cannot read {path}: not a readable Parquet file "
                           f"({_first_line(exc)})") from None
    columns = _columns(path, names)
    select = ", ".join(
        f"CAST({_quote(names[columns[f]])} AS VARCHAR) AS {f}" if f in columns
        else f"NULL AS {f}"
        for f in FIELDS)
    try:
        rows = _arrow(con, f"SELECT file_row_number + 1 AS line, {select} "
                           "FROM read_parquet($path, file_row_number = true)",
                      {"path": str(path)})
    except duckdb.Error as exc:
        raise PinshopError(f"cannot read {path}: {_first_line(exc)}") from None
    return _Source(rows)


def _columns(path: Path, names: list[str]) -> dict[str, int]:
    """Our field -> the index of the file's column; names match case-insensitively, trimmed
    (the first of two that match wins)."""
    found: dict[str, int] = {}
    for index, name in enumerate(names):
        found.setdefault(name.strip().lower(), index)
    if missing := [c for c in REQUIRED if c not in found]:
        raise PinshopError(f"{path.name} lacks column(s) {', '.join(missing)}; "
                           f"events need {', '.join(REQUIRED)} (weight optional)")
    return {f: found[f] for f in FIELDS if f in found}


@dataclass
class _Text:
    """What one pass over a CSV's bytes found."""

    encoding: str  # of the bytes, for DuckDB
    blank_lines: np.ndarray
    bad_quotes: dict[int, bytes]  # line -> its bytes, for lines BAD_QUOTES matches


def _utf8_copy(path: Path, target: Path) -> Path | None:
    """`target`, a UTF-8 copy of `path` when it is UTF-16 with a BOM (DuckDB's own UTF-16
    reader refuses the surrogate pairs of characters beyond the BMP, such as emoji); else
    None."""
    decoder = codecs.getincrementaldecoder("utf-16")()
    try:
        with open(path, "rb") as handle:
            if handle.read(2) not in (b"\xff\xfe", b"\xfe\xff"):
                return None
            handle.seek(0)
            with open(target, "wb") as out:
                while chunk := handle.read(CHUNK):
                    out.write(decoder.decode(chunk).encode())
                out.write(decoder.decode(b"", final=True).encode())
    except OSError as exc:
        raise PinshopError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PinshopError(f"cannot read {path}: not valid UTF-16 text ({exc.reason})") from None
    return target


def _line_blocks(handle: Any) -> Iterator[bytes]:
    """The file in blocks of whole lines of about CHUNK bytes (the last may lack its \\n)."""
    parts: list[bytes] = []
    while chunk := handle.read(CHUNK):
        cut = chunk.rfind(b"\n") + 1
        if cut:
            yield b"".join([*parts, chunk[:cut]])
            parts = []
        if cut < len(chunk):
            parts.append(chunk[cut:])
    if parts:
        yield b"".join(parts)


def _sniff_text(path: Path, shown: Path) -> _Text:
    """Encoding, blank lines and lines with broken quoting of `path` (named `shown` in
    errors), from one streaming pass over its bytes."""
    blank = _BlankLines()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, multibyte = True, False
    bad_quotes: dict[int, bytes] = {}
    empty = True
    try:
        with open(path, "rb") as handle:
            for block in _line_blocks(handle):
                if empty and b"\x00" in block[:CHUNK]:
                    raise PinshopError(f"cannot read {shown}: it is a binary file, not CSV text")
                if utf8:
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError:
                        utf8 = False
                # Blocks end at a newline, so no multi-byte sequence straddles two.
                if not multibyte and not block.isascii():
                    multibyte = UTF8_MULTIBYTE.search(block) is not None
                line, counted = blank.lines + 1, 0
                for match in BAD_QUOTES.finditer(block) if b'"' in block else ():
                    line += block.count(b"\n", counted, match.start())
                    counted = match.start()
                    bad_quotes[line] = match.group(1)
                blank.scan(block)
                empty = False
    except OSError as exc:
        raise PinshopError(f"cannot read {shown}: {exc.strerror or exc}") from None
    if empty:
        raise PinshopError(f"cannot read {shown}: the file is empty")
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    # Mostly UTF-8 with a few bad lines: reject those lines. No UTF-8 at all: Latin-1.
    return _Text("utf-8" if utf8 or multibyte else "latin-1", blank.found(), bad_quotes)


def _header(path: Path, encoding: str, shown: Path) -> list[str]:
    """The column names: the first record that is not a blank line."""
    try:
        with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding,
                  errors="replace", newline="") as handle:
            return next((row for row in csv.reader(handle) if row), [])
    except (OSError, csv.Error) as exc:
        raise PinshopError(f"cannot read {shown}: {_first_line(exc)}") from None


def _blank_bad_quotes(path: Path, target: Path) -> Path:
    """`target`, a copy of `path` with the lines BAD_QUOTES matches emptied (their line end
    kept, so every other line keeps its number)."""
    with open(path, "rb") as handle, open(target, "wb") as out:
        for block in _line_blocks(handle):
            out.write(BAD_QUOTES.sub(rb"\2", block))
    return target


class _BlankLines:
    """Line numbers (1-based) of empty lines ('' or a lone CR), found chunk by chunk with
    numpy: DuckDB skips them, so they shift the line numbers of the rows after them."""

    def __init__(self) -> None:
        self.lines = 0  # newlines seen so far
        self.pending = 0  # bytes of the current, unfinished line
        self.pending_first = -1  # its first byte
        self.blank: list[np.ndarray] = []

    def scan(self, chunk: bytes) -> None:
        import numpy as np

        data = np.frombuffer(chunk, np.uint8)
        ends = np.flatnonzero(data == 10)
        if ends.size:
            starts = np.concatenate(([0], ends[:-1] + 1))
            lengths = ends - starts
            first = data[np.minimum(starts, data.size - 1)].astype(np.int16)
            if self.pending:
                lengths[0] += self.pending
                first[0] = self.pending_first
            is_blank = (lengths == 0) | ((lengths == 1) & (first == 13))
            self.blank.append(self.lines + 1 + np.flatnonzero(is_blank))
            self.lines += ends.size
            tail = data.size - (ends[-1] + 1)
            self.pending, self.pending_first = tail, (int(data[-tail]) if tail else -1)
        elif data.size:
            if not self.pending:
                self.pending_first = int(data[0])
            self.pending += data.size

    def found(self) -> np.ndarray:
        import numpy as np

        return np.concatenate(self.blank) if self.blank else np.zeros(0, np.int64)


def _first_data_line(blank_lines: np.ndarray) -> int:
    """The line after the header; blank lines before the header push it down."""
    first = 2
    leading = set(blank_lines[:64].tolist())
    while first - 1 in leading:
        first += 1
    return first


def _numpy_lines(lines: pa.ChunkedArray, blank_lines: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.union1d(np.asarray(lines.to_numpy(), dtype=np.int64), blank_lines)


def _record_lines(count: int, skipped: np.ndarray, first: int) -> np.ndarray:
    """Line numbers of the rows DuckDB returned, in file order: the lines from `first` on
    that were neither refused by the reader nor blank."""
    import numpy as np

    candidates = np.arange(first, first + count + skipped.size, dtype=np.int64)
    return candidates[~np.isin(candidates, skipped)][:count]


def _text(table: pa.Table, column: int | None) -> pa.Array | pa.ChunkedArray:
    import pyarrow as pa

    return table.column(column) if column is not None else pa.nulls(table.num_rows,
                                                                     pa.string())


def _csv_reason() -> str:
    # A line can have several errors (DuckDB records one per field count it tried).
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in CSV_ERRORS.items())
    return (f"CASE min(error_type) {cases} "
            "ELSE 'malformed CSV line: ' || lower(min(error_type)) END")


# -- checking -------------------------------------------------------------------------------

def _check(con: Any, rows: pa.Table, catalog: Path) -> pa.Table:
    """`rows` with parsed ts and weight and a `reason` (NULL when the row is valid)."""
    events = ", ".join(f"'{e}'" for e in EVENT_WEIGHTS)
    in_window = (f"ts_tz >= TIMESTAMPTZ '{TS_MIN} 00:00:00+00' "
                 f"AND ts_tz < TIMESTAMPTZ '{TS_MAX} 00:00:00+00'")
    seconds_ok = f"isfinite(ts_s) AND ts_s >= {TS_MIN_S} AND ts_s < {TS_MAX_S}"
    window = f"not between {TS_MIN} and {TS_MAX}"
    return _arrow(con, f"""
        WITH raw AS (
            SELECT line,
                   nullif(trim(user_id, {WHITESPACE}), '') AS user_id,
                   nullif(trim(item_id, {WHITESPACE}), '') AS item_id,
                   nullif(lower(trim(event, {WHITESPACE})), '') AS event,
                   nullif(trim(ts, {WHITESPACE}), '') AS ts_raw,
                   nullif(trim(weight, {WHITESPACE}), '') AS weight_raw
            FROM source
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
        SELECT p.line, p.user_id, p.item_id, p.event, p.ts_raw, p.weight_raw, p.ts, p.weight,
        CASE
            WHEN p.user_id IS NULL THEN 'missing user_id'
            WHEN p.item_id IS NULL THEN 'missing item_id'
            WHEN p.event IS NULL THEN 'missing event'
            WHEN p.event NOT IN ({events}) THEN 'unknown event type ''' || p.event || ''''
            WHEN p.ts_raw IS NULL THEN 'missing ts'
            WHEN p.ts IS NULL AND (p.ts_tz IS NOT NULL OR isfinite(p.ts_num))
                THEN 'bad timestamp ''' || p.ts_raw || ''': {window}'
                     || CASE WHEN p.ts_tz IS NULL AND p.ts_num > {MILLIS_ABOVE}
                             THEN ' (read as epoch milliseconds)' ELSE '' END
            WHEN p.ts IS NULL THEN 'bad timestamp ''' || p.ts_raw || ''''
            WHEN p.weight_raw IS NOT NULL AND p.weight IS NULL
                THEN 'bad weight ''' || p.weight_raw || ''''
            WHEN NOT isfinite(p.weight)
                THEN 'bad weight ''' || p.weight_raw || ''': not a finite number'
            WHEN p.weight < 0 OR p.weight > {MAX_WEIGHT}
                THEN 'bad weight ''' || p.weight_raw || ''': must be from 0 to 1e9'
            WHEN c.id IS NULL THEN 'unknown item id ''' || p.item_id || ''''
        END AS reason
        FROM timed p
        LEFT JOIN (SELECT DISTINCT CAST(id AS VARCHAR) AS id FROM read_parquet($catalog)) c
            ON c.id = p.item_id
        ORDER BY p.line""", {"catalog": str(catalog)}, tables={"source": rows})


def _rejects(con: Any, source: str, checked: pa.Table, unreadable: pa.Table | None) -> pa.Table:
    """One row per refused input line: source, line, id, reason, raw."""
    tables = {"checked": checked}
    union = ""
    if unreadable is not None:
        tables["unreadable"] = unreadable
        union = ("UNION ALL SELECT line, CAST(NULL AS VARCHAR) AS id, reason, raw "
                 "FROM unreadable")
    return _arrow(con, f"""
        SELECT $source AS source, CAST(line AS BIGINT) AS line, id, reason, raw FROM (
            SELECT line, item_id AS id, reason,
                   concat_ws(',', coalesce(user_id, ''), coalesce(item_id, ''),
                             coalesce(event, ''), coalesce(ts_raw, ''),
                             coalesce(weight_raw, '')) AS raw
            FROM checked WHERE reason IS NOT NULL
            {union}
        ) ORDER BY line""", {"source": source}, tables=tables)


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


def _default_weights() -> str:
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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
