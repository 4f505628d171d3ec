"""One reader of records: a CSV, JSONL or Parquet file becomes the DuckDB temp table
`records`, without a Python loop over rows.

`records` holds one row per data record of the file: `line` (CSV and JSONL: the physical
line the record starts on, the header being a line like any other; Parquet: the row number
from 1), `problem` (why the reader could not read the record, else NULL), `raw` (the
record's text, cut to RAW_CHARS) and the fields `c0..cN` as VARCHAR, in the order of the
names the reader returns. A record with a problem is a reject the caller keeps, with its
line: its fields are NULL but those `recover` asks for, cut from its raw text.

CSV is read with a fixed dialect, never sniffed (one odd line must not change how the
others are read): the delimiter given, quoted with `"`, a quote inside a quoted field
doubled. Two ways to treat broken quoting:
- `multiline=True` (catalogs): a quoted field may hold line breaks, so an unclosed quote
  runs to where a quote would close it, and that whole stretch is one reject;
- `multiline=False` (events): one record per line; a line whose quotes do not pair up is
  rejected on its own and blanked before DuckDB reads the file, so an open quote never
  swallows the lines after it.

The text comes from `text.scan_text` (UTF-8, LF line ends); each fault has one wording
(REASONS), whichever reader finds it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PinshopError, first_line
from . import text as text_scan
from .csv_lines import BOM, record_starts
from .text import Text

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

MAX_LINE_BYTES = 8 << 20
RAW_CHARS = 2000
#: One wording per fault (DuckDB's CSV error types, and the same faults found elsewhere).
REASONS = {
    "MISSING COLUMNS": "too few fields",
    "TOO MANY COLUMNS": "too many fields",
    "UNQUOTED VALUE": "malformed quoting (a stray or unclosed quote)",
    "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE_BYTES >> 20} MB",
    "INVALID ENCODING": "not valid UTF-8",
    "INVALID UNICODE": "not valid UTF-8",
}
BAD_QUOTES = REASONS["UNQUOTED VALUE"]
NOT_UTF8 = REASONS["INVALID ENCODING"]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- CSV ------------------------------------------------------------------------------------
def read_csv(con: duckdb.DuckDBPyConnection, text: Text, name: str, *, delimiter: str = ",",
             multiline: bool = True,
             recover: Callable[[list[str]], Collection[int]] | None = None) -> list[str]:
    """Fill `records` from the CSV `text` (named `name` in errors); return its header. The
    header is the first record that is not a blank line; `recover(header)` names the
    columns a refused record fills from its raw text (e.g. its id)."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    path, bad = text.path, dict[int, bytes]()
    if not multiline:
        path, bad = _one_record_per_line(text, name, delimiter)
    header = _header(path, delimiter, name)
    columns = ", ".join(f"'c{n}': 'VARCHAR'" for n in range(len(header)))
    # The header is read as record 1 like any other (DuckDB's own header handling loses
    # files whose header cells hold line breaks or a BOM before a quote), then dropped.
    # One reject per record (DuckDB reports each bad field): its first error is the reason;
    # line_byte_position is where the record starts, or the blank lines before it.
    try:
        con.execute(f"""
            CREATE TEMP TABLE records_parsed AS
            SELECT * FROM read_csv($path,
                header = false, auto_detect = false, columns = {{{columns}}},
                delim = $delim, quote = '"', escape = '"', store_rejects = true,
                max_line_size = {MAX_LINE_BYTES})""", {"path": str(path), "delim": delimiter})
        rejected = con.sql(f"""
            SELECT line_byte_position AS position, {_reason_sql(
                "arg_min(error_type, byte_position)",
                "arg_min(error_message, byte_position)")} AS reason,
                   left(trim(any_value(csv_line), chr(10) || chr(13)), {RAW_CHARS}) AS raw
            FROM reject_errors WHERE scan_id = (SELECT max(scan_id) FROM reject_scans)
            GROUP BY line_byte_position ORDER BY position""").to_arrow_table()
        parsed = con.execute("SELECT count(*) FROM records_parsed").fetchall()[0][0]
    except duckdb.Error as exc:
        raise PinshopError(f"cannot read {name}: not a readable CSV file "
                           f"({first_line(exc, 200)})") from None
    positions = rejected.column("position").to_numpy(zero_copy_only=False).astype(np.int64)
    starts, lines = record_starts(path, delimiter, parsed + len(positions), name)
    # DuckDB's position is the record's first byte or the one after it (seen both); the
    # first record starting at or after position - 1 is the record either way.
    record_of = np.minimum(np.searchsorted(starts, positions - 1, side="left"),
                           len(starts) - 1)
    # A header DuckDB refused (e.g. not UTF-8) is no data row: its names came from Python's
    # reader, and the first parsed row is then already data.
    header_parsed = not (len(record_of) and record_of.min() == 0)
    good = np.ones(len(starts), bool)
    good[record_of] = False
    data_rejects = record_of > 0
    rejected = rejected.filter(pa.array(data_rejects))
    # The lines of DuckDB's parsed records, in the order it read them.
    lines_of_parsed = pa.table({"line": lines[good]})
    refused_records = pa.table({
        "line": np.concatenate([lines[record_of[data_rejects]],
                                np.array(list(bad), np.int64)]),
        "reason": pa.concat_arrays([rejected.column("reason").combine_chunks().cast(pa.string()),
                                    pa.array([BAD_QUOTES] * len(bad), pa.string())]),
        "raw": pa.concat_arrays([rejected.column("raw").combine_chunks().cast(pa.string()),
                                 pa.array([raw.decode("utf-8", "replace")[:RAW_CHARS]
                                           for raw in bad.values()], pa.string())])})
    con.register("records_lines", lines_of_parsed)
    con.register("records_refused", refused_records)
    header_line = int(lines[0]) if header_parsed and len(lines) else 0
    keep = set(recover(header)) if recover else set()
    fields = ", ".join(f"p.c{n}" for n in range(len(header)))
    joined = ", ".join(f"coalesce(p.c{n}, '')" for n in range(len(header)))
    refused = ", ".join(_field_sql("raw", n, delimiter) if n in keep else "NULL"
                        for n in range(len(header)))
    con.execute(f"""
        CREATE TEMP TABLE records AS
        SELECT g.line::BIGINT AS line, NULL::VARCHAR AS problem,
               left(concat_ws({_sql_text(delimiter)}, {joined}), {RAW_CHARS}) AS raw, {fields}
        FROM records_parsed p POSITIONAL JOIN records_lines g WHERE g.line > {header_line}
        UNION ALL
        SELECT line::BIGINT, reason, raw, {refused} FROM records_refused""")
    con.execute("DROP TABLE records_parsed")
    con.unregister("records_lines")
    con.unregister("records_refused")
    return header


def _reason_sql(error_type: str, message: str) -> str:
    cases = " ".join(f"WHEN {_sql_text(k)} THEN {_sql_text(v)}" for k, v in REASONS.items())
    return (f"CASE {error_type} {cases} ELSE 'unreadable CSV record: ' || "
            f"left(split_part({message}, chr(10), 1), 200) END")


def _header(path: Path, delimiter: str, name: str) -> list[str]:
    """The column names: the first record that is not a blank line."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            header = next((row for row in csv.reader(handle, delimiter=delimiter) if row), [])
    except (OSError, csv.Error) as exc:
        raise PinshopError(f"cannot read {name}: {first_line(exc)}") from None
    if not any(h.strip() for h in header):
        raise PinshopError(f"{name} has no header row: its first line must name the columns")
    return header


def _one_record_per_line(text: Text, name: str, delimiter: str
                         ) -> tuple[Path, dict[int, bytes]]:
    """(the file with its lines of broken quoting emptied, those lines by number with
    their bytes). Each line keeps its number; broken quoting in the header refuses the
    file."""
    pattern = _bad_quotes_pattern(delimiter)
    bad: dict[int, bytes] = {}
    header_line = seen = 0
    for block, body in _bodies(text.path):
        if not header_line and (nonblank := re.search(rb"[^\n]", block)):
            header_line = seen + 1 + block.count(b"\n", 0, nonblank.start())
        if b'"' in body:
            line, counted = seen + 1, 0
            for match in pattern.finditer(body):
                line += body.count(b"\n", counted, match.start())
                counted = match.start()
                bad[line] = match.group(1)
        seen += block.count(b"\n")
    if header_line in bad:
        raise PinshopError(f"cannot read {name}: its header (line {header_line}) has a "
                           "stray or unclosed quote")
    if not bad:
        return text.path, bad
    target = text.scratch / "quotes.txt"
    with open(target, "wb") as out:
        for block, body in _bodies(text.path):
            out.write(block[:len(block) - len(body)] + pattern.sub(b"", body))
    return target, bad


def _bodies(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(block of whole lines, the same without the file's BOM) for each block."""
    first = True
    for block in text_scan.line_blocks(path):
        yield block, block[len(BOM):] if first and block.startswith(BOM) else block
        first = False


def _bad_quotes_pattern(delimiter: str) -> re.Pattern[bytes]:
    """A line whose quoting is broken: some quote neither opens a field, nor closes one
    (before a delimiter or the line end), nor is doubled inside one."""
    sep = re.escape(delimiter.encode())
    field = rb'(?:"[^"\n]*(?:""[^"\n]*)*"|[^"' + sep + rb'\n]*)'
    record = field + rb"(?:" + sep + field + rb")*"
    return re.compile(rb"^(?!" + record + rb"$)(.*)$", re.MULTILINE)


def _field_sql(text: str, n: int, delimiter: str) -> str:
    """SQL for the n-th field of the raw CSV record `text` (quoted fields and doubled
    quotes understood), unquoted; NULL when the text ends before it."""
    sep = re.escape(delimiter)
    field = f'"(?:[^"]|"")*"|[^{sep}"\\r\\n]*'
    pattern = f"^(?:(?:{field}){sep}){{{n}}}({field})".replace("'", "''")
    value = f"regexp_extract({text}, '{pattern}', 1)"
    unquoted = f"""replace(regexp_replace({value}, '^"(.*)"$', '\\1', 's'), '""', '"')"""
    return f"nullif(trim({unquoted}), '')"


# -- JSONL ----------------------------------------------------------------------------------
def read_jsonl(con: duckdb.DuckDBPyConnection, text: Text, name: str) -> list[str]:
    """Fill `records` from JSON Lines: one record per physical line (blank lines are none),
    parsed by DuckDB's JSON functions; the names are every key, in order of first use."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    content = text.path.read_text(encoding="utf-8-sig")
    lines = pc.split_pattern(pa.array([content], pa.large_string()), "\n").flatten()
    del content
    numbers = np.arange(1, len(lines) + 1)
    keep = pc.invert(pc.match_substring_regex(lines, r"^\s*$"))
    con.register("json_text", pa.table({"line": numbers, "raw": lines}).filter(keep))
    con.execute(f"""
        CREATE TEMP TABLE json_lines AS
        SELECT line, raw, CASE WHEN contains(raw, '\ufffd') THEN '{NOT_UTF8}'
                               WHEN NOT json_valid(raw) THEN 'invalid JSON'
                               WHEN json_type(raw) <> 'OBJECT' THEN 'not a JSON object'
                          END AS problem
        FROM json_text""")
    con.unregister("json_text")
    keys = [row[0] for row in con.execute("""
        SELECT key FROM (SELECT unnest(json_keys(raw)) AS key, line FROM json_lines
                         WHERE problem IS NULL)
        GROUP BY key ORDER BY min(line), key""").fetchall()]
    if not keys:
        raise PinshopError(f"{name} holds no JSON object with fields: each line must "
                           'be an object like {"id": "P1", "title": "Oak chair"}')
    # JSON Pointer paths (RFC 6901): any key works, quotes, backslashes, '' and '*' included.
    pointers = ["/" + k.replace("~", "~0").replace("/", "~1") for k in keys]
    fields = ", ".join(f"CASE WHEN problem IS NULL THEN json_extract_string(raw, "
                       f"{_sql_text(p)}) END AS c{n}" for n, p in enumerate(pointers))
    con.execute(f"CREATE TEMP TABLE records AS SELECT line::BIGINT AS line, problem, "
                f"left(raw, {RAW_CHARS}) AS raw, {fields} FROM json_lines")
    con.execute("DROP TABLE json_lines")
    return keys


# -- Parquet --------------------------------------------------------------------------------
def read_parquet(con: duckdb.DuckDBPyConnection, path: Path, name: str) -> list[str]:
    """Fill `records` from Parquet: every column cast to text (NULL where it cannot be),
    `raw` the row's values joined by commas."""
    import duckdb

    source = {"path": str(path)}
    try:
        names = [row[0] for row in con.execute(
            "DESCRIBE SELECT * FROM read_parquet($path)", source).fetchall()]
        if not names:
            raise PinshopError(f"{name} has no columns")
        fields = ", ".join(f"TRY_CAST({_ident(n)} AS VARCHAR) AS c{i}"
                           for i, n in enumerate(names))
        values = ", ".join(f"c{i}" for i in range(len(names)))
        con.execute(f"""
            CREATE TEMP TABLE records AS
            SELECT (file_row_number + 1)::BIGINT AS line, NULL::VARCHAR AS problem,
                   left(concat_ws(',', {values}), {RAW_CHARS}) AS raw,
                   * EXCLUDE (file_row_number)
            FROM (SELECT file_row_number, {fields}
                  FROM read_parquet($path, file_row_number = true))""", source)
    except duckdb.Error as exc:
        raise PinshopError(f"cannot read {name}: not a readable Parquet file "
                           f"({first_line(exc, 200)})") from None
    return names


def read_arrow(con: duckdb.DuckDBPyConnection, table: pa.Table) -> list[str]:
    """Fill `records` from an Arrow table held in memory (line: the row number from 1), as
    `read_parquet` does from a file."""
    import pyarrow as pa

    # The row number travels with the rows: a scan's order is not the table's.
    numbered = pa.table({"line": pa.array(range(1, table.num_rows + 1), pa.int64()),
                         **{f"c{i}": column for i, column in enumerate(table.columns)}})
    fields = ", ".join(f"TRY_CAST(c{i} AS VARCHAR) AS c{i}" for i in range(table.num_columns))
    con.register("arrow_records", numbered)
    con.execute(f"""
        CREATE TEMP TABLE records AS
        SELECT line, NULL::VARCHAR AS problem, NULL::VARCHAR AS raw, {fields}
        FROM arrow_records""")
    con.unregister("arrow_records")
    return list(table.column_names)
