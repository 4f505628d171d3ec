"""Live price and stock updates on disk: the change log, its writer, folds.

A change (retrieval/changes.py: one product's `price`, `sale_price`, `availability`) is
appended to a change log, `updates/` in the workspace: small Parquet parts listed by a
manifest (workspace/parts.py), written under the workspace lock (without its sweep: an
append leaves nothing to sweep), atomically. A PATCH costs that append, not a rewrite of
catalog.parquet. The changed products' rows reach the price history (io/history.py) shortly
after, in one snapshot per burst.

Every log row names the catalog it applies to (`base`: a hash of catalog.parquet's footer)
and carries `seq` (time.time_ns() at the append, one more per row; appends are serialized by
the lock). Whatever loads the catalog (retrieval/store.py's CatalogStore: every Shop,
Retriever and command) applies the log's rows for that catalog on top of it, in DuckDB
(`ChangeLog.apply`: each field's last setting by `seq`); rows for an older catalog (one an
ingest has since replaced: the feed is the newer word) are ignored and dropped by the next
fold. Folding (`write_changes`) rewrites catalog.parquet with the log and any further
changes, then empties the log: a server does it in the background when the log grows past
`FOLD_AT` changes and when it stops, so the catalog file (what `pinshop sql` reads) catches
up.

Concurrent changes are group-committed (`CatalogWriter`): each caller queues its change and
whoever holds the flush writes everything queued in one append, in queue order; a failed
append fails every change in it, and none of them is written anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..workspace import Workspace
from ..workspace.parts import PartStore
from ..workspace.storage import copy_to_parquet, sql_path, write_parquet
from .changes import (
    FIELDS,
    ProductChange,
    apply_pending,
    changes_table,
    merged,
    update_catalog,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FOLD_AT", "LOG_DIR", "CatalogWriter", "ChangeLog", "ProductChange",
           "catalog_identity", "fold_log", "log_changes", "record_history", "write_changes"]

LOG_DIR = "updates"
#: Logged changes past which a server folds the log into catalog.parquet (in the
#: background): reading the log stays a few small files, the catalog file stays close.
FOLD_AT = 2000
HISTORY_DELAY = 0.5  # seconds a history write waits for more changes to join it
log = logging.getLogger("pinshop.updates")

#: Entered around a write while the workspace lock is held (Shop: to tell its own writes
#: from another process's).
Inside = Callable[[], AbstractContextManager[object]]


def catalog_identity(path: Path) -> str:
    """Which catalog.parquet this is: a hash of its Parquet footer (row groups, sizes,
    statistics), so a copied workspace keeps it and any rewrite changes it. '' if absent."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-8, os.SEEK_END)
            length = struct.unpack("<I", handle.read(4))[0]
            handle.seek(-8 - length, os.SEEK_END)
            return hashlib.sha256(handle.read(length + 8)).hexdigest()[:24]
    except (OSError, struct.error):
        return ""


class ChangeLog:
    """The workspace's log of live changes not yet folded into catalog.parquet."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.store = PartStore(ws.root / LOG_DIR, remake="a new PATCH (the catalog keeps "
                               "its last folded state)")

    @property
    def manifest_path(self) -> Path:
        return self.store.manifest_path

    def rows(self) -> int:
        """Changes logged (for every catalog: the count the manifest keeps)."""
        return self.store.manifest().rows if self.manifest_path.exists() else 0

    def files(self, notes: list[str] | None = None) -> list[Path]:
        """The log's listed parts that are whole (none when there is no log: one stat); a
        damaged one is left out, and described in `notes`."""
        return self.store.files(notes) if self.manifest_path.exists() else []

    def pending(self, base: str | None = None) -> pa.Table:
        """The logged changes for catalog `base` (default: the current catalog.parquet),
        one row per product: each field's last setting by `seq` and whether it was set
        (`set_<field>`), as `changes_table` has them. One aggregate over the log's parts in
        DuckDB; empty (no columns) without a log."""
        import duckdb
        import pyarrow as pa

        files = self.files()
        if not files:
            return pa.table({})
        base = catalog_identity(self.ws.catalog) if base is None else base
        latest = ", ".join(f"arg_max_null({name}, seq) FILTER (WHERE set_{name}) AS {name}, "
                           f"coalesce(bool_or(set_{name}), false) AS set_{name}"
                           for name in FIELDS)
        parts = ", ".join(sql_path(path) for path in files)
        with duckdb.connect() as con:
            return con.sql(f"SELECT id, {latest} FROM read_parquet([{parts}], "
                           "union_by_name = true) WHERE base = $base GROUP BY id ORDER BY id",
                           params={"base": base}).to_arrow_table()

    def apply(self, con: Any, base: str | None = None) -> int:
        """Apply the logged changes for catalog `base` (default: the current
        catalog.parquet) to table `catalog` of DuckDB connection `con` in one UPDATE, no
        Python per row. Returns how many products the log changes."""
        found = self.pending(base)
        if found.num_rows:
            con.register("logged_changes", found)
            try:
                update_catalog(con, "logged_changes")
            finally:
                con.unregister("logged_changes")
        return found.num_rows

    def newest(self) -> datetime | None:
        """When the newest change for the current catalog was logged (UTC, naive)."""
        import duckdb

        files = self.files()
        if not files:
            return None
        parts = ", ".join(sql_path(path) for path in files)
        with duckdb.connect() as con:
            seq = con.execute(f"SELECT max(seq) FROM read_parquet([{parts}], union_by_name = "
                              "true) WHERE base = $base",
                              {"base": catalog_identity(self.ws.catalog)}).fetchall()[0][0]
        return None if seq is None else datetime.fromtimestamp(
            seq / 1e9, timezone.utc).replace(tzinfo=None)

    def append(self, changes: list[ProductChange], base: str) -> None:
        """Log `changes` for catalog `base` (the caller holds the workspace lock)."""
        import pyarrow as pa

        table = changes_table(changes)
        first = time.time_ns()
        table = table.append_column("seq", pa.array(range(first, first + table.num_rows),
                                                    pa.int64()))
        table = table.append_column("base", pa.array([base] * table.num_rows, pa.string()))
        self.store.ensure()
        self.store.append(table, f"{first:020d}")

    def clear(self) -> None:
        """Forget every logged change (the caller holds the lock, after a fold)."""
        from ..workspace.storage import remove

        if not self.manifest_path.exists():
            return
        listed = self.store.manifest().files
        self.store._save([], 0, self.store.manifest().sequence + 1, {})  # noqa: SLF001
        for name in listed:
            remove(self.store.directory / name)
        self.store.sweep()


def record_history(ws: Workspace, changes: list[ProductChange], seen_at: datetime) -> None:
    """Append the changed products' states to the price history (the caller holds the
    lock): io/history.py's snapshot over just these rows."""
    import pyarrow as pa

    from ..io.history import record_snapshot

    states = [dict(c.state, id=c.id) for c in merged(changes) if c.state]
    if not states:
        return
    table = pa.table({
        "id": pa.array([s["id"] for s in states], pa.string()),
        "price": pa.array([_amount(s.get("price")) for s in states], pa.float64()),
        "sale_price": pa.array([_amount(s.get("sale_price")) for s in states],
                               pa.float64()),
        "currency": pa.array([s.get("currency") for s in states], pa.string()),
        "availability": pa.array([s.get("availability") for s in states], pa.string()),
        "title": pa.array([s.get("title") for s in states], pa.string())})
    scratch = ws.root / LOG_DIR / f".history-{os.getpid()}-{threading.get_ident()}.parquet"
    write_parquet(table, scratch)
    try:
        record_snapshot(ws.root, scratch, seen_at, whole=False)  # some rows: none removed
    finally:
        scratch.unlink(missing_ok=True)


def _amount(value: Any) -> float | None:
    return None if value is None else float(value)  # the catalog's DECIMAL


def log_changes(ws: Workspace, changes: list[ProductChange], inside: Inside = nullcontext
                ) -> None:
    """Persist `changes` the cheap way: one small log part, under the lock (no sweep)."""
    with ws.lock(sweep=False), inside():
        ChangeLog(ws).append(changes, catalog_identity(ws.catalog))


def write_changes(ws: Workspace, changes: Sequence[ProductChange] = (),
                  inside: Inside = nullcontext) -> None:
    """Fold (`fold_log`) under the writer lock."""
    with ws.lock(), inside():
        fold_log(ws, changes)


def fold_log(ws: Workspace, changes: Sequence[ProductChange] = ()) -> None:
    """Fold: catalog.parquet rewritten with the log's changes and then `changes`,
    atomically, with the catalog's content versions (prices are not in them: no index goes
    stale); then the log is emptied. The caller holds the writer lock. The history gets
    what it has not seen yet (a change logged by a process killed before its history
    write), stamped with the newest logged change's time, or now with `changes`. An ingest
    folds before its catalog replaces this one, so a price that was served is recorded."""
    import duckdb

    from ..io.catalog import CATALOG_VERSIONS
    from ..io.history import record_snapshot
    from ..workspace.integrity import require_catalog

    log = ChangeLog(ws)
    if (log.rows() or changes) and ws.catalog.exists():
        # A damaged catalog is not rewritten: its new check record would vouch for it.
        require_catalog(ws.catalog)
        newest = log.newest()
        with duckdb.connect() as con:
            con.execute(f"CREATE TABLE catalog AS SELECT * FROM "
                        f"read_parquet({sql_path(ws.catalog)})")
            if log.apply(con) or changes:
                apply_pending(con, list(changes))
                copy_to_parquet(con, "SELECT * FROM catalog", ws.catalog, CATALOG_VERSIONS,
                                checked=True)
                record_snapshot(ws.root, ws.catalog,
                                _now() if changes or newest is None else newest)
    log.clear()


def fold_left_behind(ws: Workspace) -> bool:
    """Fold a log that a process left unfolded (a server killed before its fold), so its
    changes reach the price history now, not at the next ingest. False when there was none,
    or the lock could not be had (another writer holds it: an ingest folds the log first,
    anything else leaves it for the next start or ingest)."""
    from ..errors import PinshopError
    from ..workspace.integrity import parquet_problem

    if not ChangeLog(ws).rows() or parquet_problem(ws.catalog) is not None:
        return False  # a damaged catalog: the Shop says so
    try:
        write_changes(ws)
    except PinshopError:  # WorkspaceLockedError, or a file system without locks
        return False
    return True


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class CatalogWriter:
    """Group commit of product changes to one workspace's change log, folds, and the price
    history written behind them. `inside` is entered around each write of the log or the
    catalog, with the workspace lock held."""

    def __init__(self, ws: Workspace, inside: Inside = nullcontext) -> None:
        self.ws, self.inside = ws, inside
        self._queued: list[tuple[ProductChange, Future[None]]] = []
        self._saved: list[ProductChange] = []  # on disk, not yet taken by `take_saved`
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one writer of this process at a time
        self._history: list[ProductChange] = []
        self._history_ready = threading.Condition()
        self._history_thread: threading.Thread | None = None

    def save(self, change: ProductChange) -> None:
        """Queue `change` and return once it is in the log on disk (in this call's append,
        or in an append or fold another caller made meanwhile: in queue order). Raises what
        that write raised (e.g. WorkspaceLockedError: another process holds the lock); the
        change is then written nowhere. A saved change waits in `take_saved`."""
        ticket: Future[None] = Future()
        with self._queue_lock:
            self._queued.append((change, ticket))
        with self._flush_lock:  # who holds it writes everything queued so far
            if not ticket.done():
                self._write(lambda batch: log_changes(self.ws, batch, self.inside))
        ticket.result()

    def _write(self, write: Callable[[list[ProductChange]], None]) -> None:
        """`write` everything queued (the caller holds the flush lock); every queued caller
        gets the outcome."""
        with self._queue_lock:
            batch, self._queued = self._queued, []
        changes = [change for change, _ in batch]
        try:
            write(changes)
        except BaseException as exc:
            for _, ticket in batch:
                ticket.set_exception(exc)
            raise
        with self._queue_lock:
            self._saved += changes
        for _, ticket in batch:
            ticket.set_result(None)

    def take_saved(self) -> list[ProductChange]:
        """The changes saved since the last call, in the order the log has them."""
        with self._queue_lock:
            saved, self._saved = self._saved, []
        return saved

    def queue_history(self, changes: list[ProductChange]) -> None:
        """Write the price history of saved `changes` (each with its `state`) behind:
        within about HISTORY_DELAY, a burst in one snapshot (a snapshot costs ~0.2 s at
        100k products, too much for a PATCH to wait for)."""
        with self._history_ready:
            self._history += changes
            self._history_ready.notify()
            if self._history_thread is None or not self._history_thread.is_alive():
                self._history_thread = threading.Thread(
                    target=self._write_history_behind, daemon=True, name="pinshop-history")
                self._history_thread.start()

    def _write_history_behind(self) -> None:
        while True:
            with self._history_ready:
                while not self._history:
                    self._history_ready.wait()
            time.sleep(HISTORY_DELAY)  # let a burst gather: one snapshot for all of it
            with self._flush_lock:
                self.flush_history()

    def flush_history(self) -> None:
        """Write the queued history rows now (the caller holds the flush lock). A failure
        is logged and left to the next fold's snapshot, which records what differs."""
        with self._history_ready:
            batch, self._history = self._history, []
        if not batch:
            return
        try:
            with self.ws.lock(sweep=False):
                record_history(self.ws, batch, _now())
        except Exception:  # noqa: BLE001 - the fold's snapshot catches up
            log.warning("price history not written for %d changes (the next fold "
                        "records them)", len(batch), exc_info=True)

    def logged(self) -> int:
        return ChangeLog(self.ws).rows()

    def fold(self) -> None:
        """Fold the log, and every change still queued, into catalog.parquet (between
        appends, never during one); the queued changes count as saved."""
        with self._flush_lock:
            self.flush_history()
            self._write(lambda batch: write_changes(self.ws, batch, self.inside))
