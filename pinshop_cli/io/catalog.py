"""Catalog normalization in DuckDB: CSV / JSONL / Parquet in, one clean Parquet table plus
rejects out, without a Python loop over rows.

`records.py` reads the file into the table `records` (every field as text, each record
with the line it came from, and the records the reader refused with their reason); `text.py`
settles the encoding and line ends first. Then a small pipeline of named steps (STEPS), each
one SELECT over the table the step before made, kept as a temp table of the step's name:

1. typed: known columns trimmed, category lower-cased, the price read by its shape;
2. checked: the first rule a row breaks (missing id or title, unparsable, negative or
   out-of-range price), as its reason;
3. imaged: distinct image files are checked and hashed in parallel threads, and joined in;
4. deduplicated: a second usable row of one id is refused (first on line N).

The split writes the clean rows and the rejects (with line and a one-line reason); COPY
goes straight from DuckDB to Parquet (atomically), so a million rows never become Python
objects.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError, first_line
from ..workspace.integrity import parquet_problem
from ..workspace.storage import (
    atomic_path,
    copy_to_parquet,
    rows_version_sql,
    sha256_file,
    sql_path,
)
from . import records
from .images import DEFAULT_MAX_PIXELS, ImageRejected, check_image
from .text import scan_text

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


# -- reading -------------------------------------------------------------------------------
def _read(con: duckdb.DuckDBPyConnection, path: Path, kind: str, scratch: Path
          ) -> tuple[list[str], list[str]]:
    """Fill `records` from the catalog file; return (its column names, notes)."""
    if kind == "parquet":
        return records.read_parquet(con, path, path.name), []
    text = scan_text(path, scratch, path.name, fix_line_ends=kind == "csv",
                     mark_undecodable=kind == "jsonl")
    if kind == "jsonl":
        return records.read_jsonl(con, text, path.name), list(text.notes)
    names = records.read_csv(con, text, path.name,
                             delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
                             recover=_id_column)
    return names, list(text.notes)


def _id_column(names: list[str]) -> list[int]:
    """A refused CSV record keeps its id where the raw text still shows it (a line over
    8 MB, a broken quote later in the line)."""
    out = output_names(names)
    return [out.index("id")] if "id" in out else []


# -- the pipeline --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """What the steps need to know about the file."""

    columns: dict[str, str]  # output name -> its field in `records` (c0..cN)
    base: Path  # image paths are relative to it
    max_pixels: int
    threads: int

    @classmethod
    def of(cls, names: list[str], base: Path, max_pixels: int, threads: int) -> _Plan:
        columns = {name: f"c{n}" for n, name in enumerate(output_names(names))}
        return cls(columns, base, max_pixels, threads)

    @property
    def extras(self) -> list[tuple[str, str]]:
        """The user's other columns as (field, output name): they keep their field names
        until the split, so no user name can collide with a working column."""
        return [(c, name) for name, c in self.columns.items() if name not in KNOWN_COLUMNS]

    def text(self, name: str) -> str:
        """SQL for the trimmed text of a known column (NULL when empty or absent)."""
        column = self.columns.get(name)
        return f"nullif(trim({column}), '')" if column else "NULL::VARCHAR"


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

#: A step: (connection, the table of the step before, plan) -> the SELECT of its own table.
Step = Callable[["duckdb.DuckDBPyConnection", str, _Plan], str]


def typed(con: duckdb.DuckDBPyConnection, rows: str, plan: _Plan) -> str:
    """Known columns trimmed (empty is NULL), category lower-cased, the price cleaned of
    currency marks and read by its shape (`price_text`, `price_value`); user columns
    trimmed."""
    price_raw = plan.text("price")
    known = ", ".join(f"{plan.text(name)} AS {name}" for name in KNOWN_COLUMNS
                      if name not in ("price", "category"))
    extras = "".join(f", nullif(trim({c}), '') AS {c}" for c, _ in plan.extras)
    return f"""
        WITH cleaned AS (
            SELECT *, {_PRICE_CLEAN.format(p=price_raw)} AS price_clean FROM {rows}
        ), shaped AS (
            SELECT *, {_PRICE_SQL.format(c="price_clean")} AS price_text FROM cleaned
        )
        SELECT line, problem, raw, {known}, lower({plan.text("category")}) AS category,
               {price_raw} AS price_raw, price_text,
               try_cast(price_text AS DOUBLE) AS price_value{extras}
        FROM shaped"""


def checked(con: duckdb.DuckDBPyConnection, rows: str, plan: _Plan) -> str:
    """`reason`: the reader's problem, else the first rule the row breaks."""
    return f"""
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
        FROM {rows}"""


def imaged(con: duckdb.DuckDBPyConnection, rows: str, plan: _Plan) -> str:
    """The image's resolved path, sha256 and displayed size, and `refusal`: the reason,
    else why the image is refused."""
    _check_images(con, rows, plan)
    return f"""
        SELECT r.*, i.path AS image_path, i.sha256 AS image_sha256,
               i.width AS image_width, i.height AS image_height,
               coalesce(r.reason, i.problem) AS refusal
        FROM {rows} r LEFT JOIN images i ON i.ref = r.image"""


def deduplicated(con: duckdb.DuckDBPyConnection, rows: str, plan: _Plan) -> str:
    """`why`: the refusal, or for a usable row whose id a usable row on an earlier line
    already has, 'duplicate id'."""
    return f"""
        SELECT *, CASE WHEN refusal IS NOT NULL THEN refusal
                       WHEN first_line < line THEN
                           'duplicate id ' || q60(id) || ' (first on line ' || first_line || ')'
                  END AS why
        FROM (SELECT *, min(line) FILTER (WHERE refusal IS NULL)
                            OVER (PARTITION BY id) AS first_line FROM {rows})"""


STEPS: tuple[Step, ...] = (typed, checked, imaged, deduplicated)


def _normalize(con: duckdb.DuckDBPyConnection, plan: _Plan) -> str:
    """Run STEPS over `records`, each into a temp table of its name; return the last."""
    table = "records"
    for step in STEPS:
        con.execute(f"CREATE TEMP TABLE {step.__name__} AS {step(con, table, plan)}")
        table = step.__name__
    return table


def _split(con: duckdb.DuckDBPyConnection, rows: str, plan: _Plan, source: str) -> None:
    """Tables `catalog_out` (the clean rows, by line) and `rejects_out`."""
    extras = "".join(f", {c} AS {_ident(name)}" for c, name in plan.extras)
    con.execute(f"""
        CREATE TEMP TABLE catalog_out AS
        SELECT id, title, description, category, brand, color,
               CASE WHEN price_text ~ 'e' THEN CAST(price_value AS {PRICE_TYPE})
                    ELSE CAST(price_text AS {PRICE_TYPE}) END AS price, currency,
               image_path AS image, url, availability, image_sha256, image_width,
               image_height, product_text,
               sha256(product_text) AS product_text_hash, line AS source_line{extras}
        FROM (SELECT *, concat_ws('. ', title, category, color, brand) || '.' AS product_text
              FROM {rows} WHERE why IS NULL)
        ORDER BY line""")
    con.execute(f"""
        CREATE TEMP TABLE rejects_out AS
        SELECT $source AS source, line::BIGINT AS line, id, why AS reason, raw
        FROM {rows} WHERE why IS NOT NULL ORDER BY line""", {"source": source})


def _check_images(con: duckdb.DuckDBPyConnection, rows: str, plan: _Plan) -> None:
    """Table `images`: each distinct image reference of a row not yet refused -> resolved
    path, sha256 and displayed size, or why it is refused."""
    import pyarrow as pa

    refs = con.sql(f"SELECT DISTINCT image FROM {rows} WHERE reason IS NULL "
                   "AND image IS NOT NULL").to_arrow_table().column("image").to_pylist()

    def check(ref: str) -> tuple[str | None, str | None, str | None, tuple[int, int] | None]:
        try:
            candidate = Path(ref).expanduser()
            candidate = candidate if candidate.is_absolute() else plan.base / candidate
            size = check_image(candidate, plan.max_pixels)
            return str(candidate.resolve()), sha256_file(candidate), None, size
        except ImageRejected as exc:
            return None, None, f"image {ref[:200]}: {exc}", None
        except (OSError, ValueError) as exc:  # name too long, NUL byte, permission, ...
            reason = getattr(exc, "strerror", None) or first_line(exc, 120)
            return None, None, f"image {ref[:200]}: unreadable path ({reason})", None

    with ThreadPoolExecutor(max_workers=plan.threads) as pool:
        results = list(pool.map(check, refs))
    con.register("images", pa.table({
        "ref": pa.array(refs, pa.string()),
        "path": pa.array([r[0] for r in results], pa.string()),
        "sha256": pa.array([r[1] for r in results], pa.string()),
        "problem": pa.array([r[2] for r in results], pa.string()),
        "width": pa.array([r[3][0] if r[3] else None for r in results], pa.int32()),
        "height": pa.array([r[3][1] if r[3] else None for r in results], pa.int32()),
    }))


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
    con = duckdb.connect()
    scratch = tempfile.TemporaryDirectory(prefix="pinshop-catalog-")
    con.execute(f"SET temp_directory = {sql_path(scratch.name)}")
    con.execute("SET memory_limit = '1GB'")
    con.execute("CREATE MACRO q60(s) AS '''' || left(s, 60) || ''''")
    try:
        names, notes = _read(con, path, kind, Path(scratch.name))
        if "id" not in {n.strip().lower() for n in names}:
            raise PinshopError(f"{path.name} has no 'id' column (columns: "
                               f"{', '.join(names[:12])}); id and title are required")
        if "title" not in {n.strip().lower() for n in names}:
            raise PinshopError(f"{path.name} has no 'title' column; id and title are required")
        plan = _Plan.of(names, path.parent, max_pixels, threads)
        _split(con, _normalize(con, plan), plan, path.name)
    except duckdb.Error as exc:
        con.close()
        scratch.cleanup()
        what = "a readable Parquet file" if kind == "parquet" else f"a readable {kind} file"
        raise PinshopError(f"cannot read {path.name}: not {what} "
                           f"({first_line(exc, 200)})") from None
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
                     f"{first_line(exc, 200)}")
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
