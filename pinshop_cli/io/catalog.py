"""Catalog normalization in DuckDB: CSV / JSONL / Parquet in, one clean Parquet table plus
rejects out, without a Python loop over rows.

1. text (`text.py`): encoding (UTF-8, UTF-16, Windows-1252, mixed) and line ends, settled once;
2. records (`records.py`): the file as the table `records`, every field as text, each
   record with the line it came from, and the records the reader refused with their reason;
3. the normalize steps (`catalog_steps.py`): typed, checked, imaged, deduplicated, then
   split into clean rows and rejects;
4. write: COPY straight from DuckDB to Parquet (atomically), so a million rows never
   become Python objects.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError, first_line
from ..workspace.integrity import parquet_problem
from ..workspace.storage import (
    atomic_path,
    copy_to_parquet,
    rows_version_sql,
    sql_path,
    write_json,
)
from . import records
from .catalog_steps import Plan, ident, normalize, output_names, split
from .feeds import xml_to_parquet
from .images import DEFAULT_MAX_PIXELS
from .shopify import is_shopify, regroup
from .text import scan_text

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from .photo_fetch import PhotoStore

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".xml": "xml",
            ".rss": "xml", ".atom": "xml"}


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
    #: Photo URLs that could not be fetched: (source, line, id, reason, raw) as rejects.
    photo_rejects: pa.Table | None = None


# -- reading -------------------------------------------------------------------------------
def _read(con: duckdb.DuckDBPyConnection, path: Path, kind: str, scratch: Path
          ) -> tuple[list[str], list[str]]:
    """Fill `records` from the catalog file; return (its column names, notes)."""
    if kind == "parquet":
        return records.read_parquet(con, path, path.name), []
    if kind == "xml":  # RSS 2.0 / Atom: converted once, then read like Parquet
        converted = scratch / "feed.parquet"
        notes = xml_to_parquet(path, converted)
        return records.read_parquet(con, converted, path.name), notes
    text = scan_text(path, scratch, path.name, fix_line_ends=kind == "csv",
                     mark_undecodable=kind == "jsonl")
    if kind == "jsonl":
        return records.read_jsonl(con, text, path.name), list(text.notes)
    names = records.read_csv(con, text, path.name, delimiter=_delimiter(path),
                             recover=_id_column)
    if is_shopify(names):  # one row per variant, grouped by Handle
        names = regroup(con, names)
    return names, list(text.notes)


def _delimiter(path: Path) -> str:
    """Tab for .tsv, and for .txt or .csv whose header has a tab and no comma (Merchant
    Center's and Pinterest's "TSV" feeds often carry .txt or .csv names)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, "rb") as handle:
        header = handle.readline(1 << 16)
    return "\t" if b"\t" in header and b"," not in header else ","


def _id_column(names: list[str]) -> list[int]:
    """A refused CSV record keeps its id where the raw text still shows it (a line over
    8 MB, a broken quote later in the line)."""
    out = output_names(names)
    return [out.index("id")] if "id" in out else []


def refuse_url(path: str | Path) -> None:
    """A catalog is read from a file, not fetched: said before anything else is."""
    if str(path).startswith(("http:/", "https:/")):  # a Path keeps one slash of "//"
        raise PinshopError("pinshop reads a catalog from a file: download the feed first "
                           "(e.g. curl -o feed.xml URL), then ingest that file")


def _run(path: Path, max_pixels: int, threads: int, photos: PhotoStore | None = None
         ) -> tuple[duckdb.DuckDBPyConnection,
                                                              list[str], Any]:
    import duckdb

    refuse_url(path)
    path = Path(path)
    if not path.is_file():
        raise PinshopError(f"catalog not found: {path}")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise PinshopError(f"unsupported catalog format {path.suffix!r}: use .csv, .tsv, "
                           ".jsonl, .parquet or an .xml feed")
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
        plan = Plan.of(names, path.parent, max_pixels, threads, photos)
        split(con, normalize(con, plan), plan, path.name)
        notes += photos.notes if photos is not None else []
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
                      max_pixels: int = DEFAULT_MAX_PIXELS,
                      photos: PhotoStore | None = None) -> CatalogSummary:
    """Normalize a catalog file into `catalog_target` (Parquet) and its refused rows into
    `rejects_target`, both written atomically. A catalog with no usable row is refused
    with an error and leaves the existing catalog in place. Photo URLs are fetched into
    `photos` (without it they are left out, as photo rejects)."""
    path = Path(path)
    con, notes, scratch = _run(path, max_pixels, _threads(), photos)
    try:
        ok, rejected = con.execute("SELECT (SELECT count(*) FROM catalog_out), "
                                   "(SELECT count(*) FROM rejects_out)").fetchall()[0]
        with atomic_path(rejects_target) as tmp:
            con.execute(f"COPY rejects_out TO {sql_path(tmp)} (FORMAT parquet, "
                        "COMPRESSION zstd)")
        first = con.execute("SELECT line, reason FROM rejects_out ORDER BY line LIMIT 1"
                            ).fetchall()
        seen = (f"{rejected} rejected, the first at line {first[0][0]}: {first[0][1]}"
                if first else "no data rows")
        if ok == 0:
            kept = ("; the existing catalog was kept (every reason: `pinshop sql \"SELECT "
                    "line, reason FROM rejects_catalog\"`)" if catalog_target.exists()
                    else "; no catalog was written")
            raise PinshopError(f"{path.name} has no usable rows ({seen}){kept}")
        if first:  # the reason at once, not only behind a second command
            notes.append(f"catalog rows: {seen}")
        counts = _changes(con, catalog_target, notes)
        if counts == (0, 0, 0) and catalog_target.exists():  # this catalog, again?
            counts = _undelivered(catalog_target, notes)
        added, removed, changed = counts
        copy_to_parquet(con, "SELECT * FROM catalog_out", catalog_target, CATALOG_VERSIONS,
                        checked=True)
        write_json({"catalog": _signature(catalog_target), "added": added,
                    "removed": removed, "changed": changed}, _changes_path(catalog_target))
        photo_rejects = con.sql("SELECT * FROM photo_rejects_out").to_arrow_table()
        return CatalogSummary(int(ok), int(rejected), notes, added, removed, changed,
                              photo_rejects)
    finally:
        con.close()
        scratch.cleanup()


def report_delivered(catalog: Path) -> None:
    """The ingest that wrote `catalog` has reported its changes (see `_undelivered`)."""
    _changes_path(catalog).unlink(missing_ok=True)


def _undelivered(catalog: Path, notes: list[str]) -> tuple[int, int, int]:
    """The changes an ingest counted when it wrote `catalog` and was then stopped before
    it reported them: its re-run finds the catalog already replaced, unchanged (a cron log
    keeps the re-run's "0 added, 0 removed, 0 changed"). (0, 0, 0) when there are none."""
    try:
        written = json.loads(_changes_path(catalog).read_text())
        if written["catalog"] == _signature(catalog):
            notes.append("the ingest that wrote this catalog was stopped before it finished: "
                         "its changes are counted here")
            return int(written["added"]), int(written["removed"]), int(written["changed"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none, or not ours to read
    return 0, 0, 0


def _changes_path(catalog: Path) -> Path:
    return catalog.with_name(".catalog-changes.json")


def _signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


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
        differs = " OR ".join(f"n.{ident(c)} IS DISTINCT FROM o.{ident(c)}" for c in after
                              if c in before and c not in ("id", "source_line", "image"))
        added, removed, changed, old_rows, refused = con.execute(f"""
            SELECT count(*) FILTER (WHERE o.id IS NULL),
                   count(*) FILTER (WHERE n.id IS NULL),
                   count(*) FILTER (WHERE o.id IS NOT NULL AND n.id IS NOT NULL
                                    AND ({differs or 'false'})),
                   count(o.id),
                   count(*) FILTER (WHERE n.id IS NULL
                                    AND o.id IN (SELECT id FROM rejects_out))
            FROM catalog_out n FULL JOIN (SELECT * FROM {old}) o ON n.id = o.id""").fetchall()[0]
    except duckdb.Error as exc:  # e.g. a column whose type changed between versions
        notes.append(f"cannot compare with the previous {previous.name}: "
                     f"{first_line(exc, 200)}")
        return 0, 0, 0
    if refused:  # not delisted by the merchant: a bad row this time
        notes.append(f"{refused} of the {removed} products removed have a rejected row in "
                     "this file (rejects_catalog): they are out until it is fixed")
    if removed >= CUT_SHORT_MIN and removed > CUT_SHORT_SHARE * old_rows:
        notes.append(f"{removed:,} products ({removed / old_rows:.0%} of the catalog) left the "
                     "feed: if the file was cut short, ingest it again whole")
    return int(added), int(removed), int(changed)


#: A feed that removes more than this share of the catalog (and at least CUT_SHORT_MIN
#: products) gets a warning: a download cut short removed half a 100k catalog with only
#: "1 rejected: too few fields" to say so.
CUT_SHORT_SHARE, CUT_SHORT_MIN = 0.2, 100


def rejects_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("line", pa.int64()), ("id", pa.string()),
                      ("reason", pa.string()), ("raw", pa.string())])
