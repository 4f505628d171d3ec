"""Catalog normalization in DuckDB: CSV / JSONL / Parquet in, one clean Parquet table plus
rejects out, without a Python loop over rows.

The steps, each a whole-table operation:
1. read: DuckDB parses the file into all-VARCHAR columns (CSV with `store_rejects`, so a
   malformed record becomes a reject instead of an abort; JSONL as one raw line per row,
   parsed by DuckDB's JSON functions; Parquet cast to text). Every row keeps the line it
   came from (Parquet: its row number).
2. validate: missing id or title, unparsable or out-of-range price, duplicate id; each
   refusal is a reject with its line and a one-line reason.
3. images: distinct image files are checked and hashed in parallel threads.
4. write: COPY straight from DuckDB to Parquet (atomically), so a million rows never
   become Python objects.

Files that are not valid UTF-8 are read as Latin-1 when they hold no UTF-8 at all (a
legacy export); in a file that mixes both, the lines that are not UTF-8 are rejected.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..workspace.integrity import parquet_problem
from ..workspace.storage import (
    atomic_path,
    copy_to_parquet,
    rows_version_sql,
    sha256_file,
    sql_path,
)
from .images import DEFAULT_MAX_PIXELS, ImageRejected, check_image

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

KNOWN_COLUMNS = (
    "id", "title", "description", "category", "brand", "color",
    "price", "currency", "image", "url", "availability",
)  # fmt: skip
#: Columns pinshop derives; a user column of the same name is kept with a suffix.
DERIVED_COLUMNS = ("image_sha256", "image_width", "image_height", "product_text",
                   "product_text_hash", "source_line")
PRICE_TYPE = "DECIMAL(18, 2)"
MAX_PRICE = 1e16  # DECIMAL(18, 2) holds up to 9,999,999,999,999,999.99
MAX_LINE_BYTES = 8 << 20
RAW_CHARS = 2000
CHUNK_BYTES = 32 << 20
SUFFIXES = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class CatalogLoad:
    """A normalized catalog held in memory (for notebooks and tests; `normalize_catalog`
    writes the same tables straight to Parquet)."""

    table: pa.Table
    rejects: pa.Table
    notes: list[str] = field(default_factory=list)

    @property
    def rows_ok(self) -> int:
        return self.table.num_rows


@dataclass
class CatalogSummary:
    rows_ok: int
    rows_rejected: int
    notes: list[str] = field(default_factory=list)
    #: Against the catalog this one replaced: ids new, ids gone, ids kept with other values.
    rows_added: int = 0
    rows_removed: int = 0
    rows_changed: int = 0


# -- column names ---------------------------------------------------------------------------
def output_names(names: list[str]) -> list[str]:
    """The catalog column each input column becomes. Names are trimmed and lower-cased;
    when two inputs claim one name ('ID' and 'id ', 'Color' and 'color') the one already
    spelled that way (else the first) gets it and the other keeps its own spelling with a
    numeric suffix, so no value is lost. Derived names are never taken by user columns."""
    keys = [name.strip().lower() or f"column_{n + 1}" for n, name in enumerate(names)]
    owner: dict[str, int] = {}
    for n, key in enumerate(keys):
        if key in DERIVED_COLUMNS:
            continue
        exact = names[n].strip() == key
        if key not in owner or (exact and names[owner[key]].strip() != key):
            owner[key] = n
    taken = set(owner) | set(DERIVED_COLUMNS)
    result = []
    for n, key in enumerate(keys):
        if owner.get(key) == n:
            result.append(key)
            continue
        base = names[n].strip() or key
        suffix = 2
        while f"{base}_{suffix}".lower() in taken:
            suffix += 1
        result.append(f"{base}_{suffix}")
        taken.add(result[-1].lower())
    return result


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- encodings -----------------------------------------------------------------------------
def _chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(size):
            yield block


def detect_encoding(path: Path) -> str:
    """'utf-8' when the whole file decodes as UTF-8; 'latin-1' when it holds no UTF-8
    multi-byte sequence at all (a legacy 8-bit export); else 'mixed'."""
    strict = codecs.getincrementaldecoder("utf-8")()
    try:
        for block in _chunks(path):
            strict.decode(block)
        strict.decode(b"", final=True)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    lenient = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for block in _chunks(path):
        text = lenient.decode(block)
        if re.search(r"[^\x00-\x7f\ufffd]", text):
            return "mixed"
    return "latin-1"


def _line_end_fix(path: Path) -> bytes | None:
    """How to rewrite lone carriage returns, or None when the file has no CR: a file with
    no LF uses CR as its line end (Excel's "CSV (Macintosh)"), so CR becomes LF; in an LF
    or CRLF file a lone CR is stray text (pasted from elsewhere) and becomes a space. CRLF
    always becomes LF: DuckDB loses its way when a quoted cell of a CRLF file holds an LF."""
    import numpy as np

    data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else \
        np.zeros(0, np.uint8)
    if not np.count_nonzero(data == 13):
        return None
    return b" " if np.count_nonzero(data == 10) else b"\n"


def _normalize_line_ends(path: Path, lone_cr: bytes, directory: str) -> Path:
    import re as regex

    target = Path(directory) / f"lines{path.suffix}"
    target.write_bytes(regex.sub(rb"\r(?!\n)", lone_cr, path.read_bytes().replace(b"\r\n",
                                                                                  b"\n")))
    return target


def _quotes_look_clean(path: Path, delimiter: str) -> bool:
    """True when every quote sits where a well-formed field puts one (opening at a field
    start, closing before a delimiter or line end, or doubled) and they pair up: then the
    fast quote-parity scan finds the same records as DuckDB."""
    import numpy as np

    data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else \
        np.zeros(0, np.uint8)
    quotes = np.flatnonzero(data == 34)
    if not len(quotes):
        return True
    if len(quotes) % 2:
        return False
    edges = np.array([ord(delimiter), 10, 13, 34])
    before = np.where(quotes > 0, np.asarray(data[np.maximum(quotes - 1, 0)]), 10)
    after = np.where(quotes + 1 < len(data),
                     np.asarray(data[np.minimum(quotes + 1, len(data) - 1)]), 10)
    return bool((np.isin(before, edges) | np.isin(after, edges)).all())


def _utf8_copy(path: Path, encoding: str, directory: str) -> Path:
    """A UTF-8 copy of `path` (in `directory`); 'mixed' lines that are not UTF-8 become
    U+FFFD-marked so that they are rejected, never half-read."""
    target = Path(directory) / f"utf8{path.suffix}"
    errors = "replace" if encoding == "mixed" else "strict"
    decoder = codecs.getincrementaldecoder("latin-1" if encoding == "latin-1" else "utf-8")(
        errors=errors)
    with open(target, "w", encoding="utf-8", newline="") as out:
        for block in _chunks(path):
            out.write(decoder.decode(block))
        out.write(decoder.decode(b"", final=True))
    return target


# -- readers: each fills the temp table `raw` (line, raw, c0..cN as VARCHAR) -----------------
def _record_lines(path: Path) -> tuple[Any, Any]:
    """(start byte, line number) of every non-empty CSV record, header included. A newline
    ends a record only outside quotes; since an escaped quote is a pair of quotes, the
    parity of the quotes before a newline says whether it is inside a field."""
    import numpy as np

    data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else \
        np.zeros(0, np.uint8)
    ends = []
    quotes_before = 0
    for offset in range(0, len(data), CHUNK_BYTES):
        block = np.asarray(data[offset:offset + CHUNK_BYTES])
        newlines = np.flatnonzero(block == 10)
        parity = (np.cumsum(block == 34)[newlines] + quotes_before) % 2 if len(newlines) \
            else np.zeros(0, np.int64)
        outside = newlines[parity == 0]
        ends.append(outside + offset)
        quotes_before += int(np.count_nonzero(block == 34))
    end = np.concatenate([*ends, np.array([len(data)])]).astype(np.int64)
    return _non_blank(data, end)


def _non_blank(data: Any, end: Any) -> tuple[Any, Any]:
    """(start byte, line) of the records ending at the newlines `end` (plus end of file),
    without the empty ones, which DuckDB skips (blank lines, a lone \r)."""
    import numpy as np

    start = np.concatenate([[0], end[:-1] + 1]).astype(np.int64)
    newlines = np.flatnonzero(np.asarray(data) == 10)
    line = np.searchsorted(newlines, start) + 1
    length = end - start
    blank = length == 0
    if len(data):
        last = np.minimum(np.maximum(end - 1, 0), len(data) - 1)
        blank |= (length == 1) & (np.asarray(data[last]) == 13)
    return start[~blank], line[~blank]


def _record_lines_exact(path: Path, delimiter: str) -> tuple[Any, Any]:
    """Record starts by DuckDB's quoting rules, for files where the quote-parity scan
    disagrees with DuckDB (a literal quote inside an unquoted field, text after a closing
    quote). A quote opens a quoted field only where a field starts; inside one, a doubled
    quote is a quote and a single one closes it; text after a closing quote spoils the rest
    of the line (DuckDB rejects the record and picks up after the line end). The loop runs
    over quotes, delimiters and newlines only, and only for such damaged files."""
    import numpy as np

    data = np.asarray(np.memmap(path, dtype=np.uint8, mode="r")) if path.stat().st_size \
        else np.zeros(0, np.uint8)
    sep = ord(delimiter)
    special = np.flatnonzero((data == 34) | (data == 10) | (data == sep)).tolist()
    ends: list[int] = []
    field_start, in_quotes, spoiled, skip = 3 if data[:3].tobytes() == b"\xef\xbb\xbf" else 0, \
        False, False, -1
    for position in special:
        if position == skip:
            continue
        byte = data[position]
        if in_quotes:
            if byte == 34:
                if position + 1 < len(data) and data[position + 1] == 34:
                    skip = position + 1  # an escaped quote
                else:
                    in_quotes = False
                    after = data[position + 1] if position + 1 < len(data) else 10
                    spoiled = after not in (sep, 10, 13)
        elif byte == 10:
            ends.append(position)
            field_start, spoiled = position + 1, False
        elif spoiled:
            continue
        elif byte == 34:
            in_quotes = position == field_start
        else:
            field_start = position + 1
    return _non_blank(data, np.array([*ends, len(data)], dtype=np.int64))


def _read_csv(con: duckdb.DuckDBPyConnection, path: Path, delimiter: str) -> list[str]:
    import numpy as np
    import pyarrow as pa

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        header = next(csv.reader(handle, delimiter=delimiter), None)
    if not header or not any(h.strip() for h in header):
        raise PinshopError(f"{path.name} has no header row: the first line must name the "
                           "columns (id and title are required)")
    columns = ", ".join(f"'c{n}': 'VARCHAR'" for n in range(len(header)))
    delim = delimiter.replace("'", "''")
    # The header is read as record 1 like any other (DuckDB's own header handling loses
    # files whose header cells hold line breaks or a BOM before a quote), then dropped.
    con.execute(f"""
        CREATE TEMP TABLE parsed AS
        SELECT row_number() OVER () AS record, * FROM read_csv({sql_path(path)},
            header = false, auto_detect = false, columns = {{{columns}}}, delim = '{delim}',
            quote = '"', escape = '"', store_rejects = true,
            max_line_size = {MAX_LINE_BYTES})""")
    # One reject per record (DuckDB reports each bad field); its first error is the reason.
    # line_byte_position is where the record starts, or the blank lines before it.
    rejected = con.sql("""
        SELECT line_byte_position AS position, arg_min(error_type, byte_position) AS error_type,
               arg_min(error_message, byte_position) AS error_message,
               any_value(csv_line) AS csv_line
        FROM reject_errors GROUP BY line_byte_position ORDER BY position""").to_arrow_table()
    positions = rejected.column("position").to_numpy(zero_copy_only=False).astype(np.int64)
    parsed_count = con.execute("SELECT count(*) FROM parsed").fetchall()[0][0]
    # Lines: records from our own scan of the file (a fast quote-parity scan, else the exact
    # one), matched to DuckDB's records; DuckDB's rejects name their first byte.
    exact = lambda p: _record_lines_exact(p, delimiter)  # noqa: E731
    scans = (_record_lines, exact) if _quotes_look_clean(path, delimiter) else (exact,)
    for scan in scans:
        starts, lines = scan(path)
        if len(starts) == parsed_count + len(positions):
            break
    else:
        raise PinshopError(f"cannot read {path.name} reliably: its quoting splits records "
                           "in ways no CSV reader agrees on; fix the quotes or export again")
    # DuckDB's position is the record's first byte or the one after it (seen both); the
    # first record starting at or after position - 1 is the record either way.
    record_of = np.minimum(np.searchsorted(starts, positions - 1, side="left"),
                           len(starts) - 1)
    # A header DuckDB refused (e.g. not UTF-8) is no data row: its names came from Python's
    # reader, and the first parsed row is then already data.
    header_parsed = not (len(record_of) and record_of.min() == 0)
    good = np.ones(len(starts), bool)
    good[record_of] = False
    con.register("good_lines", pa.table({"record": np.arange(1, parsed_count + 1),
                                         "line": lines[good]}))
    data_rejects = record_of > 0
    record_of, rejected = record_of[data_rejects], rejected.filter(pa.array(data_rejects))
    con.register("csv_rejects", pa.table({
        "line": lines[record_of],
        "reason": pa.array([_csv_reason(t, m) for t, m in zip(
            rejected.column("error_type").to_pylist(),
            rejected.column("error_message").to_pylist(), strict=True)], pa.string()),
        "raw": rejected.column("csv_line")}))
    fields = ", ".join(f"p.c{n}" for n in range(len(header)))
    raw_fields = ", ".join(f"coalesce(p.c{n}, '')" for n in range(len(header)))
    # A refused record keeps its id where the raw text still shows it (a line over 8 MB,
    # a broken quote later in the line): the id field is cut from the raw text.
    names = output_names(header)
    rejected_fields = ", ".join(
        _csv_field_sql(f"left(ltrim(raw, chr(10) || chr(13)), {RAW_CHARS})", n, delimiter)
        if name == "id" else "NULL" for n, name in enumerate(names))
    con.execute(f"""
        CREATE TEMP TABLE raw AS
        SELECT g.line, NULL::VARCHAR AS problem,
               left(concat_ws('{delim}', {raw_fields}), {RAW_CHARS}) AS raw, {fields}
        FROM parsed p JOIN good_lines g USING (record) WHERE p.record > {int(header_parsed)}
        UNION ALL
        SELECT line, reason, left(ltrim(raw, chr(10) || chr(13)), {RAW_CHARS}),
               {rejected_fields}
        FROM csv_rejects""")
    return header


def _csv_field_sql(text: str, n: int, delimiter: str) -> str:
    """SQL for the n-th field of the raw CSV record `text` (quoted fields and doubled
    quotes understood), unquoted; NULL when the text ends before it."""
    sep = re.escape(delimiter)
    field = f'"(?:[^"]|"")*"|[^{sep}"\\r\\n]*'
    pattern = f"^(?:(?:{field}){sep}){{{n}}}({field})".replace("'", "''")
    value = f"regexp_extract({text}, '{pattern}', 1)"
    unquoted = f"""replace(regexp_replace({value}, '^"(.*)"$', '\\1', 's'), '""', '"')"""
    return f"nullif(trim({unquoted}), '')"


def _csv_reason(error_type: str, message: str) -> str:
    reasons = {
        "MISSING COLUMNS": "too few fields",
        "TOO MANY COLUMNS": "too many fields",
        "UNQUOTED VALUE": "malformed quoting (a quote is not closed, or text follows one)",
        "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE_BYTES >> 20} MB",
        "INVALID ENCODING": "not valid UTF-8",
        "INVALID UNICODE": "not valid UTF-8",
    }
    return reasons.get(error_type, f"unreadable CSV record: {message.splitlines()[0][:200]}")


def _read_jsonl(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """One row per physical line (blank lines dropped); DuckDB's JSON functions parse."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    text = path.read_text(encoding="utf-8-sig")
    lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
    del text
    numbers = np.arange(1, len(lines) + 1)
    keep = pc.invert(pc.match_substring_regex(lines, r"^\s*$"))
    con.register("lines", pa.table({"line": numbers, "raw": lines}).filter(keep))
    con.execute("""
        CREATE TEMP TABLE json_lines AS
        SELECT line, raw, CASE WHEN contains(raw, '\ufffd') THEN 'not valid UTF-8'
                               WHEN NOT json_valid(raw) THEN 'invalid JSON'
                               WHEN json_type(raw) <> 'OBJECT' THEN 'not a JSON object'
                          END AS problem
        FROM lines""")
    keys = [row[0] for row in con.execute("""
        SELECT key FROM (SELECT unnest(json_keys(raw)) AS key, line FROM json_lines
                         WHERE problem IS NULL)
        GROUP BY key ORDER BY min(line), key""").fetchall()]
    if not keys:
        raise PinshopError(f"{path.name} holds no JSON object with fields: each line must "
                           'be an object like {"id": "P1", "title": "Oak chair"}')
    # JSON Pointer paths (RFC 6901): any key works, quotes, backslashes, '' and '*' included.
    pointers = ["/" + k.replace("~", "~0").replace("/", "~1") for k in keys]
    fields = ", ".join(f"CASE WHEN problem IS NULL THEN json_extract_string(raw, "
                       f"'{p.replace(chr(39), chr(39) * 2)}') END AS c{n}"
                       for n, p in enumerate(pointers))
    con.execute(f"CREATE TEMP TABLE raw AS SELECT line, problem, left(raw, {RAW_CHARS}) AS raw,"
                f" {fields} FROM json_lines")
    return keys


def _read_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    names = [row[0] for row in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({sql_path(path)})").fetchall()]
    fields = ", ".join(f"TRY_CAST({_ident(n)} AS VARCHAR) AS c{i}" for i, n in enumerate(names))
    con.execute(f"""
        CREATE TEMP TABLE raw AS
        SELECT file_row_number + 1 AS line, NULL::VARCHAR AS problem,
               left(concat_ws(',', {", ".join(f"c{i}" for i in range(len(names)))}),
                    {RAW_CHARS}) AS raw, * EXCLUDE (file_row_number)
        FROM (SELECT file_row_number, {fields}
              FROM read_parquet({sql_path(path)}, file_row_number = true))""")
    return names


# -- validation ----------------------------------------------------------------------------
# The price text with currency symbols/codes and spaces removed, classified by shape.
_PRICE_CLEAN = (r"regexp_replace(lower(trim({p})), "
                r"'^(?:[$€£¥]|usd|eur|gbp|chf|jpy)\s*|\s*(?:[$€£¥]|usd|eur|gbp|chf|jpy)$', "
                r"'', 'g')")
_PRICE_SQL = """
    CASE
        WHEN {c} ~ '^\\d+(\\.\\d+)?$' THEN {c}
        WHEN {c} ~ '^\\d{{1,3}}(,\\d{{3}})+(\\.\\d+)?$' THEN replace({c}, ',', '')
        WHEN {c} ~ '^\\d{{1,3}}(\\.\\d{{3}})+(,\\d+)?$'
            THEN replace(replace({c}, '.', ''), ',', '.')
        WHEN {c} ~ '^\\d+,\\d{{1,2}}$' THEN replace({c}, ',', '.')
        WHEN {c} ~ '^\\d+(\\.\\d+)?e[+-]?\\d+$' THEN {c}
    END"""


def _validate(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[tuple[str, str]]:
    """`checked`: every row with its normalized values and the first reason to refuse it.
    Returns the user's other columns as (internal name, output name): they keep internal
    names until the final SELECT, so no user name can collide with a working column."""
    out = output_names(names)
    column = {name: f"c{n}" for n, name in enumerate(out)}

    def text(name: str) -> str:
        return f"nullif(trim({column[name]}), '')" if name in column else "NULL::VARCHAR"

    price_raw = text("price")
    cleaned = _PRICE_CLEAN.format(p=price_raw)
    price_text = _PRICE_SQL.format(c="price_clean")
    extras = [(column[name], name) for name in out
              if name not in KNOWN_COLUMNS]
    extra_sql = "".join(f", nullif(trim({c}), '') AS {c}" for c, _ in extras)
    known_sql = ", ".join(f"{text(name)} AS {name}" for name in KNOWN_COLUMNS
                          if name not in ("price", "category"))
    con.execute(f"""
        CREATE TEMP TABLE staged AS
        WITH cleaned AS (
            SELECT *, {cleaned} AS price_clean FROM raw
        ), typed AS (
            SELECT *, {price_text} AS price_text FROM cleaned
        )
        SELECT line, problem, raw, {known_sql}, lower({text("category")}) AS category,
               {price_raw} AS price_raw, price_text,
               try_cast(price_text AS DOUBLE) AS price_value{extra_sql}
        FROM typed""")
    con.execute(f"""
        CREATE TEMP TABLE checked AS
        SELECT *, CASE
            WHEN problem IS NOT NULL THEN problem
            WHEN id IS NULL THEN 'missing id'
            WHEN title IS NULL THEN 'missing title'
            WHEN price_raw IS NOT NULL AND price_raw ~ '^\\s*-' THEN
                'invalid price ' || q60(price_raw) || ' (negative)'
            WHEN price_raw IS NOT NULL AND price_value IS NULL THEN
                'unparsable price ' || q60(price_raw)
            WHEN price_value IS NOT NULL AND NOT (isfinite(price_value)
                 AND price_value < {MAX_PRICE}) THEN
                'price out of range ' || q60(price_raw) || ' (at most 1e16)'
        END AS reason
        FROM staged""")
    return extras


def _check_images(con: duckdb.DuckDBPyConnection, base: Path, max_pixels: int,
                  threads: int) -> None:
    """Table `images`: image reference -> resolved path, sha256 and displayed size, or why
    it is refused."""
    import pyarrow as pa

    refs = con.sql("SELECT DISTINCT image FROM checked WHERE reason IS NULL "
                   "AND image IS NOT NULL").to_arrow_table().column("image").to_pylist()

    def check(ref: str) -> tuple[str | None, str | None, str | None, tuple[int, int] | None]:
        try:
            candidate = Path(ref).expanduser()
            candidate = candidate if candidate.is_absolute() else base / candidate
            size = check_image(candidate, max_pixels)
            return str(candidate.resolve()), sha256_file(candidate), None, size
        except ImageRejected as exc:
            return None, None, f"image {ref[:200]}: {exc}", None
        except (OSError, ValueError) as exc:  # name too long, NUL byte, permission, ...
            return None, None, f"image {ref[:200]}: unreadable path ({_os_reason(exc)})", None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(check, refs))
    con.register("images", pa.table({
        "ref": pa.array(refs, pa.string()),
        "path": pa.array([r[0] for r in results], pa.string()),
        "sha256": pa.array([r[1] for r in results], pa.string()),
        "problem": pa.array([r[2] for r in results], pa.string()),
        "width": pa.array([r[3][0] if r[3] else None for r in results], pa.int32()),
        "height": pa.array([r[3][1] if r[3] else None for r in results], pa.int32()),
    }))


def _os_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0][:120]


def _finish(con: duckdb.DuckDBPyConnection, source: str, extras: list[tuple[str, str]]
            ) -> None:
    """Tables `catalog_out` and `rejects_out`."""
    con.execute("""
        CREATE TEMP TABLE resolved AS
        SELECT c.*, i.path AS image_path, i.sha256 AS image_sha256,
               i.width AS image_width, i.height AS image_height,
               coalesce(c.reason, i.problem) AS refusal
        FROM checked c LEFT JOIN images i ON i.ref = c.image""")
    con.execute("""
        CREATE TEMP TABLE final AS
        SELECT *, CASE WHEN refusal IS NOT NULL THEN refusal
                       WHEN first_line < line THEN
                           'duplicate id ' || q60(id) || ' (first on line ' || first_line || ')'
                  END AS why
        FROM (SELECT *, min(line) FILTER (WHERE refusal IS NULL)
                            OVER (PARTITION BY id) AS first_line FROM resolved)""")
    extra_sql = "".join(f", {c} AS {_ident(name)}" for c, name in extras)
    con.execute(f"""
        CREATE TEMP TABLE catalog_out AS
        SELECT id, title, description, category, brand, color,
               CASE WHEN price_text ~ 'e' THEN CAST(price_value AS {PRICE_TYPE})
                    ELSE CAST(price_text AS {PRICE_TYPE}) END AS price, currency,
               image_path AS image, url, availability, image_sha256, image_width,
               image_height, product_text,
               sha256(product_text) AS product_text_hash, line AS source_line{extra_sql}
        FROM (SELECT *, concat_ws('. ', title, category, color, brand) || '.' AS product_text
              FROM final WHERE why IS NULL)
        ORDER BY line""")
    con.execute("""
        CREATE TEMP TABLE rejects_out AS
        SELECT $source AS source, line::BIGINT AS line, id, why AS reason, raw
        FROM final WHERE why IS NOT NULL ORDER BY line""", {"source": source})


def _run(path: Path, max_pixels: int, threads: int) -> tuple[duckdb.DuckDBPyConnection,
                                                              list[str], Any]:
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise PinshopError(f"catalog not found: {path}")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise PinshopError(f"unsupported catalog format {path.suffix!r}: use .csv, .jsonl or "
                           ".parquet")
    if path.stat().st_size == 0:
        raise PinshopError(f"{path.name} is empty: a catalog needs a header and rows")
    notes: list[str] = []
    con = duckdb.connect()
    scratch = tempfile.TemporaryDirectory(prefix="pinshop-catalog-")
    con.execute(f"SET temp_directory = {sql_path(scratch.name)}")
    con.execute("SET memory_limit = '1GB'")
    con.execute("CREATE MACRO q60(s) AS '''' || left(s, 60) || ''''")
    source = path
    try:
        if kind != "parquet":
            encoding = detect_encoding(path)
            if encoding == "latin-1" or (encoding == "mixed" and kind == "jsonl"):
                source = _utf8_copy(path, encoding, scratch.name)
            if encoding == "latin-1":
                notes.append(f"{path.name} is not UTF-8: read as Latin-1")
            elif encoding == "mixed":
                notes.append(f"{path.name} mixes UTF-8 with another encoding: lines that are "
                             "not UTF-8 are rejected")
        if kind == "csv":
            if (lone_cr := _line_end_fix(source)) is not None:
                source = _normalize_line_ends(source, lone_cr, scratch.name)
                if lone_cr == b"\n":
                    notes.append(f"{path.name}: carriage returns read as line ends")
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            names = _read_csv(con, source, delimiter)
        elif kind == "jsonl":
            names = _read_jsonl(con, source)
        else:
            names = _read_parquet(con, source)
        if "id" not in {n.strip().lower() for n in names}:
            raise PinshopError(f"{path.name} has no 'id' column (columns: "
                               f"{', '.join(names[:12])}); id and title are required")
        if "title" not in {n.strip().lower() for n in names}:
            raise PinshopError(f"{path.name} has no 'title' column; id and title are required")
        extras = _validate(con, names)
        _check_images(con, path.parent, max_pixels, threads)
        _finish(con, path.name, extras)
    except duckdb.Error as exc:
        con.close()
        scratch.cleanup()
        what = "a readable Parquet file" if kind == "parquet" else f"a readable {kind} file"
        raise PinshopError(f"cannot read {path.name}: not {what} "
                           f"({str(exc).splitlines()[0][:200]})") from None
    except BaseException:
        con.close()
        scratch.cleanup()
        raise
    return con, notes, scratch


def _threads() -> int:
    return min(16, 2 * (os.cpu_count() or 1))


def load_catalog(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> CatalogLoad:
    """Normalize a catalog into Arrow tables: the clean rows and the rejects."""
    con, notes, scratch = _run(Path(path), max_pixels, _threads())
    try:
        return CatalogLoad(con.sql("SELECT * FROM catalog_out").to_arrow_table(),
                           con.sql("SELECT * FROM rejects_out").to_arrow_table(), notes)
    finally:
        con.close()
        scratch.cleanup()


# One content version per embedding kind, over the columns each depends on: a new title
# must not make image indexes stale (see workspace.embeddings.table_version).
CATALOG_VERSIONS = {
    "product_text": rows_version_sql("id", "category", "product_text_hash"),
    "product_image": rows_version_sql("id", "category", "image_sha256",
                                      where="image_sha256 IS NOT NULL"),
}


def normalize_catalog(path: str | Path, catalog_target: Path, rejects_target: Path,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> CatalogSummary:
    """Normalize a catalog file into `catalog_target` (Parquet) and its refused rows into
    `rejects_target`, both written atomically. A catalog with no usable row is refused
    with an error and leaves the existing catalog in place."""
    path = Path(path)
    con, notes, scratch = _run(path, max_pixels, _threads())
    try:
        ok, rejected = con.execute("SELECT (SELECT count(*) FROM catalog_out), "
                                   "(SELECT count(*) FROM rejects_out)").fetchall()[0]
        with atomic_path(rejects_target) as tmp:
            con.execute(f"COPY rejects_out TO {sql_path(tmp)} (FORMAT parquet, "
                        "COMPRESSION zstd)")
        if ok == 0:
            raise PinshopError(
                f"{path.name} has no usable rows ({rejected} rejected: see `pinshop sql "
                "\"SELECT line, reason FROM rejects_catalog\"`); the existing catalog was kept")
        added, removed, changed = _changes(con, catalog_target, notes)
        copy_to_parquet(con, "SELECT * FROM catalog_out", catalog_target, CATALOG_VERSIONS)
        return CatalogSummary(int(ok), int(rejected), notes, added, removed, changed)
    finally:
        con.close()
        scratch.cleanup()


def _changes(con: duckdb.DuckDBPyConnection, previous: Path, notes: list[str]
             ) -> tuple[int, int, int]:
    """(added, removed, changed) ids of `catalog_out` against the catalog it replaces; a
    row changed when any column both have differs (but its line number and image path). A
    previous catalog that cannot be read counts as none, with a note."""
    import duckdb

    count = "(SELECT count(*) FROM catalog_out)"
    if not previous.exists():
        return int(con.execute(f"SELECT {count}").fetchall()[0][0]), 0, 0
    if (problem := parquet_problem(previous)) is not None:
        notes.append(f"the previous {previous.name} was damaged ({problem}): replaced whole")
        return int(con.execute(f"SELECT {count}").fetchall()[0][0]), 0, 0
    old = f"read_parquet({sql_path(previous)})"
    try:
        before = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {old}").fetchall()]
        after = [r[0] for r in con.execute("DESCRIBE catalog_out").fetchall()]
        # The image is compared by content (image_sha256), not by where the file lies.
        differs = " OR ".join(f"n.{_ident(c)} IS DISTINCT FROM o.{_ident(c)}" for c in after
                              if c in before and c not in ("id", "source_line", "image"))
        added, removed, changed = con.execute(f"""
            SELECT count(*) FILTER (WHERE o.id IS NULL),
                   count(*) FILTER (WHERE n.id IS NULL),
                   count(*) FILTER (WHERE o.id IS NOT NULL AND n.id IS NOT NULL
                                    AND ({differs or 'false'}))
            FROM catalog_out n FULL JOIN (SELECT * FROM {old}) o ON n.id = o.id""").fetchall()[0]
    except duckdb.Error as exc:  # e.g. a column whose type changed between versions
        notes.append(f"cannot compare with the previous {previous.name}: "
                     f"{str(exc).splitlines()[0][:200]}")
        return 0, 0, 0
    return int(added), int(removed), int(changed)


def rejects_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("line", pa.int64()), ("id", pa.string()),
                      ("reason", pa.string()), ("raw", pa.string())])


def product_text(row: dict[str, Any]) -> str:
    """The text embedded for a product: '{title}. {category}. {color}. {brand}' (the SQL in
    `_finish` builds the same string for every row)."""
    parts = (row.get("title"), row.get("category"), row.get("color"), row.get("brand"))
    return ". ".join(str(p) for p in parts if p) + "."
