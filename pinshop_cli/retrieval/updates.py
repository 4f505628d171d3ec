"""Live price and stock updates: one product's `price`, `sale_price` and `availability`.

A change is applied to the served catalog in memory at once (CatalogStore.apply, one UPDATE
on DuckDB's table by its ART index; Retriever.apply patches the filter columns), and written
to catalog.parquet through the workspace's one writer path: under the lock, atomically, with
the same content versions (a price is not part of them, so no index goes stale), and to the
price history (io/history.py) as a snapshot of the rows that changed.

Writing catalog.parquet rewrites the file, so concurrent changes are group-committed: each
caller queues its change and whoever holds the flush writes everything queued in one
rewrite; a burst of N changes costs a few rewrites, not N.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import PinshopError
from ..workspace import Workspace
from ..workspace.storage import copy_to_parquet, sql_path

#: Google Merchant Center's availability values (a feed's own spelling is normalized).
AVAILABILITY = ("in_stock", "out_of_stock", "preorder", "backorder")
FIELDS = ("price", "sale_price", "availability")
PRICE_TYPE = "DECIMAL(18,2)"  # the catalog's price column (io/catalog_steps.py)


@dataclass(frozen=True)
class ProductChange:
    """What one update sets; a field left out is unchanged (`sale_price=None` with
    `clear_sale` ends a sale)."""

    id: str
    price: float | None = None
    sale_price: float | None = None
    availability: str | None = None
    clear_sale: bool = False

    @classmethod
    def parse(cls, product_id: str, values: dict[str, Any]) -> ProductChange:
        """A change from JSON-like values, each checked (a PinshopError names the bad one)."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise PinshopError(f"unknown field {unknown[0]!r}: a product update sets "
                               f"{', '.join(FIELDS)}")
        if not values:
            raise PinshopError(f"nothing to update: give one of {', '.join(FIELDS)}")
        price = _price("price", values["price"]) if "price" in values else None
        if "price" in values and price is None:
            raise PinshopError("price cannot be null (a product keeps a price)")
        sale = _price("sale_price", values.get("sale_price"))
        availability = values.get("availability")
        if "availability" in values:
            availability = str(availability or "").strip().lower().replace(" ", "_")
            if availability not in AVAILABILITY:
                raise PinshopError(f"availability must be one of {', '.join(AVAILABILITY)}")
        return cls(product_id, price, sale, availability,
                   clear_sale="sale_price" in values and sale is None)

    @property
    def assignments(self) -> dict[str, Any]:
        """Column -> new value, for the fields this change sets."""
        found: dict[str, Any] = {}
        if self.price is not None:
            found["price"] = self.price
        if self.sale_price is not None or self.clear_sale:
            found["sale_price"] = self.sale_price
        if self.availability is not None:
            found["availability"] = self.availability
        return found


def _price(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PinshopError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise PinshopError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or number >= 1e16:
        raise PinshopError(f"{name} must be a non-negative amount, not {value!r}")
    return round(number, 2)


def set_clause(columns: list[str], source: str) -> str:
    """`col = CASE WHEN <source>.set_col THEN <source>.col ELSE col END` for each column."""
    return ", ".join(
        f"{c} = CASE WHEN {source}.set_{c} THEN {source}.{c}"
        f"{'::' + PRICE_TYPE if c != 'availability' else ''} ELSE catalog.{c} END"
        for c in columns)


def changes_table(changes: list[ProductChange]) -> Any:
    """The changes as an Arrow table (id, value and set_ flag per field), last one wins."""
    import pyarrow as pa

    latest = {change.id: change for change in changes}  # queued changes, not catalog rows
    rows = [change.assignments for change in latest.values()]
    columns: dict[str, Any] = {"id": pa.array(list(latest), pa.string())}
    for name in FIELDS:
        kind = pa.string() if name == "availability" else pa.float64()
        columns[name] = pa.array([row.get(name) for row in rows], kind)
        columns[f"set_{name}"] = pa.array([name in row for row in rows], pa.bool_())
    return pa.table(columns)


def write_changes(ws: Workspace, changes: list[ProductChange]) -> None:
    """Apply `changes` to catalog.parquet: one rewrite under the writer lock, atomic, with
    the catalog's content versions (prices are not in them: no index goes stale)."""
    import duckdb

    from ..io.catalog import CATALOG_VERSIONS
    from ..io.history import record_snapshot

    with ws.lock(), duckdb.connect() as con:
        con.execute(f"CREATE TABLE catalog AS SELECT * FROM read_parquet({sql_path(ws.catalog)})")
        con.execute(f"ALTER TABLE catalog ADD COLUMN IF NOT EXISTS sale_price {PRICE_TYPE}")
        con.register("changes", changes_table(changes))
        con.execute(f"UPDATE catalog SET {set_clause(list(FIELDS), 'changes')} "
                    "FROM changes WHERE catalog.id = changes.id")
        copy_to_parquet(con, "SELECT * FROM catalog", ws.catalog, CATALOG_VERSIONS)
        # The price history gets the changed rows, as after an ingest (one snapshot per
        # group commit).
        record_snapshot(ws.root, ws.catalog, datetime.now(timezone.utc).replace(tzinfo=None))


class CatalogWriter:
    """Group commit of product changes to one workspace's catalog.parquet."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._queued: list[ProductChange] = []
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def commit(self, change: ProductChange) -> None:
        """Queue `change` and return once it is on disk (in this call's rewrite or in one
        another caller made meanwhile)."""
        with self._queue_lock:
            self._queued.append(change)
        with self._flush_lock:  # who holds it writes everything queued so far
            with self._queue_lock:
                batch, self._queued = self._queued, []
            if batch:
                try:
                    write_changes(self.ws, batch)
                except BaseException:
                    with self._queue_lock:  # not written: the next flush tries again
                        self._queued[:0] = batch
                    raise
