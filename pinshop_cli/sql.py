"""DuckDB over the workspace: one view per table, so users query names, not file paths.

The connection is read-only by default, enforced by DuckDB itself rather than by parsing
the user's SQL:

- every table is registered as an Arrow dataset (pyarrow reads the Parquet files, not
  DuckDB's file system), and only then is `enable_external_access` switched off, so no
  statement can touch a file: `COPY ... TO`, `ATTACH`, `INSTALL`, `LOAD` of an extension
  file, `read_text('/etc/shadow')`, `read_parquet(...)` of any path all fail;
- a file whose real path lies outside the workspace (a symlink planted in rejects/) never
  becomes a view: it is skipped with a note;
- the default database is an empty database file opened read-only, so `CREATE TABLE` and
  `CREATE VIEW` fail (temporary tables are allowed: they live in memory and vanish);
- `lock_configuration` keeps the statement from switching any of this back on (the
  built-in extensions parquet, json and icu are loaded already: `LOAD json` is a no-op).

`allow_writes=True` (opt-in) is a writer: it takes the workspace lock, uses an in-memory
database, and statements read and write files in `<workspace>/exports/` only (DuckDB's
`allowed_directories`), e.g. `COPY (SELECT ...) TO '<workspace>/exports/top.parquet'`.

Limits: a timeout (60 s by default) and Ctrl-C interrupt a statement inside DuckDB (it runs
in a worker thread; the main thread calls `interrupt()`); memory is capped at half of what is
available, spills go to a private temp directory. A read-only query is one statement (of
several only the last one's rows would show). A file that is not readable Parquet (a stray
file in rejects/) is skipped and named in `QueryResult.notes`, as is a damaged part.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DamagedFileError, PinshopError, first_line
from .io.history import history_store
from .limits import default_memory_limit, memory_limit_bytes, resident_bytes
from .workspace.embeddings import SOURCE_HASH, store
from .workspace.integrity import readers_verify, recorded_problem
from .workspace.layout import EMBEDDING_KINDS, Workspace

DEFAULT_TIMEOUT = 60.0
OnRows = Callable[[list[str], list[tuple[Any, ...]]], None]
#: Rows fetched per step, so a stop request is seen between steps of a huge result.
FETCH_ROWS = 50_000
#: Rows fetched at a time when a column holds lists (vectors): 50,000 rows of 384 floats
#: are 19M Python floats, and `sql --json` of 100k embeddings peaked at 4.1 GB.
NESTED_FETCH_ROWS = 1_000
#: Seconds a Ctrl-C waits for the query thread to begin before leaving it to quit alone.
STARTUP_WAIT = 1.0

# Settings applied after the views exist; the last one locks them all.
LOCKDOWN = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_persistent_secrets = false",
    "SET python_enable_replacements = false",  # no scanning of the caller's Python variables
    "SET enable_external_access = false",
)


#: The command that makes each workspace view, named when a query asks for a missing one.
MADE_BY = {**dict.fromkeys(("catalog", "rejects_catalog", "rejects_product_images",
                            "price_history", "embeddings", "embeddings_product_image",
                            "embeddings_product_text"), "`pinshop ingest CATALOG`"),
           **dict.fromkeys(("pins", "detections", "embeddings_crop", "rejects_pins"),
                           "`pinshop ingest --pins DIR`"),
           **dict.fromkeys(("events", "rejects_events"), "`pinshop ingest-events FILE`"),
           "recommendations": "`pinshop recommend --all`",
           "duplicates": "`pinshop duplicates`", "audit": "`pinshop audit`"}


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    notes: list[str] = field(default_factory=list)
    more: bool = False  # rows past `max_rows` were left unfetched


def _readable_parquet(paths: list[Path], notes: list[str]) -> dict[Path, Any]:
    """The paths whose Parquet footer parses, with their Arrow schemas; the others are
    named in `notes`, as are tables changed since pinshop wrote them."""
    import pyarrow.parquet as pq

    good = {}
    for path in paths:
        try:
            schema = pq.read_schema(path)
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            notes.append(f"skipped {path}: not a readable Parquet file "
                         f"({first_line(exc)})")
            continue
        if readers_verify() and (problem := recorded_problem(path)):
            # Still shown (sql is where one looks at such a file), but not as trustworthy.
            notes.append(f"{path} is damaged ({problem}): its rows may be wrong")
        good[path] = schema
    return good


def workspace_datasets(ws: Workspace, notes: list[str] | None = None) -> dict[str, Any]:
    """View name -> pyarrow dataset, for every readable table present whose real path lies
    inside the workspace."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    notes = notes if notes is not None else []
    files: dict[str, list[Path]] = {}
    for name in ("catalog", "pins", "detections", "events", "recommendations", "duplicates",
                 "audit"):
        files[name] = [ws.root / f"{name}.parquet"]
    for kind in EMBEDDING_KINDS:  # the live parts; views keep the current row per id
        try:
            files[f"parts_{kind}"] = store(ws, kind).files(notes)
        except DamagedFileError as exc:
            notes.append(f"no embeddings_{kind} view: {exc}")
    for path in sorted(ws.rejects_dir.glob("*.parquet")):
        files[f"rejects_{path.stem}"] = [path]
    try:  # price_history: each product's first row and one per snapshot that changed it
        files["price_history"] = history_store(ws.root).files(notes)
    except DamagedFileError as exc:
        notes.append(f"no price_history view: {exc}")
    datasets = {}
    for name, paths in files.items():
        inside = _inside(ws, [p for p in paths if p.is_file()], notes)
        if good := _readable_parquet(inside, notes):  # all parts' columns: old ones lack some
            datasets[name] = ds.dataset([str(p) for p in good], format="parquet",
                                        schema=pa.unify_schemas(list(good.values())))
    return datasets


def _inside(ws: Workspace, paths: list[Path], notes: list[str]) -> list[Path]:
    """The paths whose real location is inside the workspace; links leading out of it are
    named in `notes` and never read."""
    root = ws.root.resolve()
    kept = []
    for path in paths:
        if path.resolve().is_relative_to(root):
            kept.append(path)
        else:
            notes.append(f"skipped {path}: it links to a file outside the workspace")
    return kept


def _current_view(kind: str, datasets: dict[str, Any]) -> str | None:
    """embeddings_<kind>: exactly one current vector per id. A product row is current when
    its hash still matches the catalog's; a crop when its detection is still listed (none
    when the table lacks that column: another table copied over it)."""
    source = "detections" if kind == "crop" else "catalog"
    column = "det_id" if kind == "crop" else SOURCE_HASH[kind]
    table = datasets.get(source)
    if f"parts_{kind}" not in datasets or table is None or column not in table.schema.names:
        return None
    if kind == "crop":
        join = "JOIN detections s ON s.det_id = e.id"
    else:
        join = f"JOIN catalog s ON s.id = e.id AND s.{SOURCE_HASH[kind]} = e.source_hash"
    return (f"SELECT e.* FROM parts_{kind} e {join} "
            "QUALIFY row_number() OVER (PARTITION BY e.id, e.model_id ORDER BY e.source_hash) = 1")


def _embeddings_view(names: set[str]) -> str | None:
    # Kinds differ in dimension (offline pair: 1280 vs 384), so the union view carries
    # vectors as variable-length lists.
    parts = [f"SELECT id, kind, model_id, source_hash, vector::FLOAT[] AS vector "
             f"FROM embeddings_{kind}" for kind in EMBEDDING_KINDS
             if f"embeddings_{kind}" in names]
    return " UNION ALL ".join(parts) or None


def _apply_change_log(con: Any, ws: Workspace, catalog: Any, notes: list[str]) -> None:
    """The `catalog` view shows the live changes (PATCH) not yet folded into catalog.parquet,
    as every other reader of the catalog does (retrieval/updates.py)."""
    import duckdb

    from .retrieval.changes import changed_catalog_sql
    from .retrieval.updates import ChangeLog

    log = ChangeLog(ws)
    try:
        files = log.files(notes)
        if not files or len(_inside(ws, files, notes)) < len(files):
            return  # no log; or a part links out of the workspace: never read (in notes)
        pending = log.pending()
    except (DamagedFileError, OSError, duckdb.Error) as exc:
        notes.append(f"catalog shows the last folded prices: the change log is unreadable "
                     f"({first_line(exc)})")
        return
    if not pending.num_rows:
        return
    con.unregister("catalog")
    con.register("catalog_folded", catalog)  # catalog.parquet as it is on disk
    con.register("catalog_changes", pending)
    con.execute("CREATE TEMP VIEW catalog AS " + changed_catalog_sql(
        "catalog_folded", "catalog_changes", set(catalog.schema.names)))


def _read_only_database() -> Any:
    """A connection whose default database is an empty, read-only database file. The file
    is unlinked at once: the open handle keeps it alive and nothing is left behind."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="pinshop-sql-") as tmp:
        path = os.path.join(tmp, "empty.duckdb")
        duckdb.connect(path).close()
        return duckdb.connect(path, read_only=True)


def connect(workspace: str | Path | None = None, allow_writes: bool = False,
            notes: list[str] | None = None, memory_limit: str | None = None,
            spill_dir: str | None = None) -> Any:
    """A locked-down DuckDB connection with a view per workspace table.

    Read-only by default; `allow_writes` allows reading and writing files in the
    workspace's exports/ directory only (run_sql takes the writer lock for it).
    `memory_limit` (e.g. "4GB") defaults to half the memory available now; past it DuckDB
    spills to `spill_dir`, at most as much again (none: it stops with an out-of-memory
    error). Files skipped as unreadable are appended to `notes` when given."""
    import duckdb

    ws = Workspace.open(workspace)
    notes = notes if notes is not None else []
    con = duckdb.connect() if allow_writes else _read_only_database()
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamps are stored as naive UTC
        con.execute("SET memory_limit = $limit",
                    {"limit": memory_limit or default_memory_limit()})
        con.execute("SET temp_directory = $dir", {"dir": spill_dir or ""})
        # Spills may take as much disk as the memory limit, not DuckDB's 90% of the disk.
        con.execute("SET max_temp_directory_size = $size",
                    {"size": f"{memory_limit_bytes(con) >> 20}MiB"})
        datasets = workspace_datasets(ws, notes)
        for name, dataset in datasets.items():
            con.register(name, dataset)  # a temporary view scanning the Arrow dataset
        views = set(datasets)
        if "catalog" in views:
            _apply_change_log(con, ws, datasets["catalog"], notes)
        for kind in EMBEDDING_KINDS:
            if current := _current_view(kind, datasets):
                con.execute(f"CREATE TEMP VIEW embeddings_{kind} AS {current}")
                views.add(f"embeddings_{kind}")
        if union := _embeddings_view(views):
            con.execute(f"CREATE TEMP VIEW embeddings AS {union}")
        if allow_writes:
            con.execute("SET allowed_directories = $dirs",
                        {"dirs": [f"{ws.exports_dir()}{os.sep}"]})
        for statement in LOCKDOWN:
            con.execute(statement)
        con.execute("SET lock_configuration = true")
    except (duckdb.InvalidInputException, duckdb.ParserException) as exc:  # --memory-limit
        con.close()
        raise PinshopError(f"SQL error: {first_line(exc)}") from None
    except BaseException:
        con.close()
        raise
    return con


def run_sql(query: str, workspace: str | Path | None = None, allow_writes: bool = False,
            timeout: float | None = DEFAULT_TIMEOUT, memory_limit: str | None = None,
            max_rows: int | None = None, on_rows: OnRows | None = None) -> QueryResult:
    """Run `query` over the workspace views; DuckDB errors become one-line PinshopErrors.
    `timeout` (seconds; None or 0: none) interrupts the statement inside DuckDB, as does
    Ctrl-C; `memory_limit` bounds DuckDB's memory (default: half of what is available);
    `max_rows` stops the fetch there (`QueryResult.more` says whether rows were left);
    `on_rows(columns, rows)` is handed each fetched chunk instead, none kept (a result of
    any size in flat memory: `sql --json`)."""
    if not query.strip():
        raise PinshopError("no SQL to run: pass a query")
    ws = Workspace.open(workspace)
    with (ws.lock() if allow_writes else contextlib.nullcontext(),
          tempfile.TemporaryDirectory(prefix="pinshop-sql-spill-") as spill):
        notes: list[str] = []
        con = connect(ws.root, allow_writes=allow_writes, notes=notes,
                      memory_limit=memory_limit, spill_dir=spill)
        try:
            if not allow_writes and _statements(con, query) > 1:
                raise PinshopError("one query at a time: only the last one's rows would show")
            columns, rows = _run_limited(con, query, timeout, allow_writes,
                                         memory_limit_bytes(con), max_rows, on_rows)
            more = max_rows is not None and len(rows) > max_rows
            return QueryResult(columns, rows[:max_rows] if more else rows, notes, more)
        except PinshopError as exc:  # a view left out for damage fails as "does not exist"
            missing = re.search(r"Table with name (\w+) does not exist", str(exc))
            view = missing[1].lower() if missing else ""
            why = notes or ([f"this workspace has no {view} yet: {MADE_BY[view]} makes it"]
                            if view in MADE_BY else [])  # notes: it was left out for damage
            if why and missing:
                raise PinshopError(f"{exc} ({'; '.join(why)})") from None
            raise
        finally:
            con.close()


def _statements(con: Any, query: str) -> int:
    """How many statements `query` holds (1 when it does not parse: its run says why)."""
    with contextlib.suppress(Exception):
        return len(con.extract_statements(query))
    return 1


def _run_limited(con: Any, query: str, timeout: float | None, allow_writes: bool,
                 budget: int, max_rows: int | None = None, on_rows: OnRows | None = None
                 ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Execute and fetch in a worker thread; the main thread waits, and interrupts DuckDB
    at the deadline or on Ctrl-C (a signal never reaches a thread blocked inside DuckDB).
    The wait is on an Event the worker sets when done: a Thread.join cut short by Ctrl-C
    can report a running thread as finished."""
    outcome: dict[str, Any] = {}
    stop, began, done = threading.Event(), threading.Event(), threading.Event()

    def work() -> None:
        began.set()
        try:
            if stop.is_set():  # Ctrl-C came while the thread was starting
                raise KeyboardInterrupt
            outcome["result"] = _fetch(con, query, stop, budget, max_rows, on_rows)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        finally:
            done.set()

    try:
        # Inside the try: Ctrl-C can land in the middle of start(), after the thread is up.
        threading.Thread(target=work, name="pinshop-sql", daemon=True).start()
        finished = done.wait(timeout) if timeout else _wait_forever(done)
    except KeyboardInterrupt:
        stop.set()
        if began.wait(STARTUP_WAIT):  # a thread that begins later sees `stop` and quits
            _interrupt(con, done)
        raise
    if not finished:
        stop.set()
        _interrupt(con, done)
        raise PinshopError(f"SQL error: the query ran longer than {timeout:g} s and was "
                           "stopped (pass --timeout SECONDS to allow more, 0 for no limit)")
    if "error" in outcome:
        raise _one_line(outcome["error"], allow_writes) from None
    return outcome["result"]


def _wait_forever(done: threading.Event) -> bool:
    while not done.wait(1.0):  # short waits: Ctrl-C gets through between them
        pass
    return True


def _interrupt(con: Any, done: threading.Event) -> None:
    """Stop the statement inside DuckDB (the fetch stops between chunks once `stop` is set),
    and wait for the worker to let go of the connection."""
    while not done.wait(0.05):
        con.interrupt()


def _fetch(con: Any, query: str, stop: threading.Event, budget: int,
           max_rows: int | None = None, on_rows: OnRows | None = None
           ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `query` and fetch its rows in chunks. DuckDB's memory limit does not cover the
    Python rows of a huge result, so the process may grow by at most `budget` bytes while
    it runs (a cross join of two 10^9 ranges reached 8 GB in 12 s without this)."""
    baseline = resident_bytes()
    con.execute(query)
    if con.description is None:  # a statement with no result set
        return [], []
    columns, rows = [column[0] for column in con.description], []
    nested = any("[" in str(kind) or str(kind).startswith(("STRUCT", "MAP", "UNION"))
                 for _, kind, *_ in con.description)
    chunk_rows = NESTED_FETCH_ROWS if nested else FETCH_ROWS
    wanted = chunk_rows if max_rows is None else min(chunk_rows, max_rows + 1)
    while not stop.is_set() and (chunk := con.fetchmany(wanted)):
        if on_rows is not None:
            on_rows(columns, chunk)
            continue
        rows.extend(chunk)
        if max_rows is not None and len(rows) > max_rows:  # one more: there are more
            break
        if resident_bytes() - baseline > budget:
            raise PinshopError(f"SQL error: the result outgrew the memory limit "
                               f"({budget >> 20} MiB) after {len(rows):,} rows: add a LIMIT, "
                               "or COPY it to exports/ with --allow-writes")
    if stop.is_set():
        raise KeyboardInterrupt
    return columns, rows


def _one_line(exc: BaseException, allow_writes: bool) -> BaseException:
    """A DuckDB error as a one-line PinshopError (anything else as it is)."""
    import duckdb

    if isinstance(exc, duckdb.PermissionException):
        scope = ("files outside the workspace's exports/ directory are off limits; a relative "
                 "path starts from the current directory, so give exports/ files by full path"
                 if allow_writes else "pinshop sql is read-only over the workspace views")
        return PinshopError(f"SQL error: {first_line(exc)} ({scope})")
    if isinstance(exc, duckdb.InterruptException):
        return KeyboardInterrupt()
    if isinstance(exc, duckdb.OutOfMemoryException):
        return PinshopError(f"SQL error: {first_line(exc)} (the statement's memory limit: "
                            "pass --memory-limit to change it)")
    if isinstance(exc, duckdb.Error):
        message = first_line(exc)
        if "read-only mode" in message:
            message = "the connection is read-only: create TEMP tables or views instead"
        return PinshopError(f"SQL error: {message}")
    return exc
