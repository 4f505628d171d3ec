"""Live price and stock updates: one product's `price`, `sale_price` and `availability`.

A change (retrieval/changes.py: the change model, checked and merged, and its SQL) is
applied to the served catalog in memory at once (CatalogStore.apply, one UPDATE on DuckDB's
table by its ART index; Retriever.apply patches the filter columns). On disk it is appended
to a change log, `updates/` in the workspace: small Parquet parts listed by a manifest
(workspace/parts.py), written through the workspace's one writer path (under the lock,
atomically), with the changed rows appended to the price history (io/history.py) in the
same step. A PATCH costs that append, not a rewrite of catalog.parquet.

Every log row names the catalog it applies to (`base`: a hash of catalog.parquet's footer).
A Shop loading the catalog applies the log's rows for that catalog on top of it
(`pending`, `apply_pending`); rows for an older catalog (one an ingest has since replaced:
the feed is the newer word) are ignored and dropped by the next fold. Folding
(`write_changes`) rewrites catalog.parquet with the log and any further changes, then
empties the log: a server does it in the background when the log grows past `FOLD_AT`
changes and when it stops, so the catalog file (what `pinshop sql` reads) catches up.

Concurrent changes are group-committed: each caller queues its change and whoever holds
the flush writes everything queued in one append.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..workspace import Workspace
from ..workspace.parts import PartStore
from ..workspace.storage import copy_to_parquet, sql_path, write_parquet
from .changes import (  # noqa: F401 - AVAILABILITY, PRICE_TYPE: read from here too
    AVAILABILITY,
    FIELDS,
    PRICE_TYPE,
    ProductChange,
    apply_pending,
    changes_table,
    merged,
)

LOG_DIR = "updates"
#: Logged changes past which a server folds the log into catalog.parquet (in the
#: background): reading the log stays a few small files, the catalog file stays close.
FOLD_AT = 2000
HISTORY_DELAY = 0.5  # seconds a history write waits for more changes to join it
log = logging.getLogger("pinshop.updates")


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

    def pending(self, base: str | None = None) -> list[ProductChange]:
        """The logged changes for catalog `base` (default: the current catalog.parquet),
        merged per product, oldest first."""
        import pyarrow.parquet as pq

        files = self.store.files() if self.manifest_path.exists() else []
        if not files:
            return []
        base = catalog_identity(self.ws.catalog) if base is None else base
        rows = []
        for path in files:
            rows += pq.ParquetFile(path).read().to_pylist()
        rows.sort(key=lambda row: row["seq"])
        return merged([ProductChange.from_assignments(row["id"], {
            name: row[name] for name in FIELDS if row[f"set_{name}"]})
            for row in rows if row["base"] == base])

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
        "availability": pa.array([s.get("availability") for s in states], pa.string())})
    scratch = ws.root / LOG_DIR / f".history-{os.getpid()}-{threading.get_ident()}.parquet"
    write_parquet(table, scratch)
    try:
        record_snapshot(ws.root, scratch, seen_at, whole=False)  # some rows: none removed
    finally:
        scratch.unlink(missing_ok=True)


def _amount(value: Any) -> float | None:
    return None if value is None else float(value)  # the catalog's DECIMAL


def log_changes(ws: Workspace, changes: list[ProductChange]) -> None:
    """Persist `changes` the cheap way: one small log part, under the lock."""
    with ws.lock():
        ChangeLog(ws).append(changes, catalog_identity(ws.catalog))


def write_changes(ws: Workspace, changes: Sequence[ProductChange] = ()) -> None:
    """Fold: catalog.parquet rewritten with the log's changes and then `changes`, under the
    writer lock, atomically, with the catalog's content versions (prices are not in them:
    no index goes stale); then the log is emptied. The history gets what changed."""
    import duckdb

    from ..io.catalog import CATALOG_VERSIONS
    from ..io.history import record_snapshot

    with ws.lock():
        log = ChangeLog(ws)
        everything = [*log.pending(), *changes]
        if everything:
            with duckdb.connect() as con:
                con.execute(f"CREATE TABLE catalog AS SELECT * FROM "
                            f"read_parquet({sql_path(ws.catalog)})")
                apply_pending(con, everything)
                copy_to_parquet(con, "SELECT * FROM catalog", ws.catalog, CATALOG_VERSIONS)
            # What the history has not seen yet (a change logged by a process killed
            # before its history write, and `changes`), stamped now.
            record_snapshot(ws.root, ws.catalog, _now())
        log.clear()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class CatalogWriter:
    """Group commit of product changes to one workspace's change log; their price history
    written behind them; folds."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._queued: list[ProductChange] = []
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one writer of this process at a time
        self._history: list[ProductChange] = []
        self._history_ready = threading.Condition()
        self._history_thread: threading.Thread | None = None

    def commit(self, change: ProductChange) -> None:
        """Queue `change` and return once it is in the log on disk (in this call's append
        or in one another caller made meanwhile). Its price history row follows within
        about HISTORY_DELAY (a history snapshot costs ~0.2 s at 100k products, too much to
        wait for)."""
        with self._queue_lock:
            self._queued.append(change)
        with self._flush_lock:  # who holds it writes everything queued so far
            with self._queue_lock:
                batch, self._queued = self._queued, []
            if batch:
                try:
                    log_changes(self.ws, batch)
                except BaseException:
                    with self._queue_lock:  # not written: the next flush tries again
                        self._queued[:0] = batch
                    raise
        if batch:
            self._queue_history(batch)

    def _queue_history(self, batch: list[ProductChange]) -> None:
        with self._history_ready:
            self._history += batch
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
            with self.ws.lock():
                record_history(self.ws, batch, _now())
        except Exception:  # noqa: BLE001 - the fold's snapshot catches up
            log.warning("price history not written for %d changes (the next fold "
                        "records them)", len(batch), exc_info=True)

    def logged(self) -> int:
        return ChangeLog(self.ws).rows()

    def fold(self) -> None:
        """Fold the log into catalog.parquet (between appends, never during one)."""
        with self._flush_lock:
            self.flush_history()
            write_changes(self.ws, [])
