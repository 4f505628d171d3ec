"""One live product change: what it sets (`price`, `sale_price`, `availability`), each
value checked; changes merged per product (each field's last setting wins); as an Arrow
table with a `set_` flag per field; and as one DuckDB UPDATE of a loaded `catalog` table.

retrieval/updates.py logs changes on disk and folds them into catalog.parquet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..io.feeds import AVAILABILITY_PROBLEM, AVAILABILITY_SPELLINGS, availability_key

if TYPE_CHECKING:
    import pyarrow as pa

FIELDS = ("price", "sale_price", "availability")
PRICE_TYPE = "DECIMAL(18,2)"  # the catalog's price column (io/catalog_steps.py)
MAX_AMOUNT = 1e16  # DECIMAL(18,2) holds 16 digits before the point


@dataclass(frozen=True)
class ProductChange:
    """What one update sets; a field left out is unchanged (`sale_price=None` with
    `clear_sale` ends a sale). `state` is the product's tracked columns after the change
    (price, sale_price, currency, availability), for the price history."""

    id: str
    price: float | None = None
    sale_price: float | None = None
    availability: str | None = None
    clear_sale: bool = False
    state: dict[str, Any] | None = field(default=None, compare=False)

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
            if availability is None:  # it read "availability '' is not one of ..."
                raise PinshopError("availability cannot be null (a product keeps one)")
            written = str(availability)
            availability = AVAILABILITY_SPELLINGS.get(availability_key(written))
            if availability is None:
                raise PinshopError(f"availability '{written[:60]}'{AVAILABILITY_PROBLEM}")
        return cls(product_id, price, sale, availability,
                   clear_sale="sale_price" in values and sale is None)

    def check_sale(self, row: dict[str, Any]) -> None:
        """A PinshopError when this change sets a price or sale price that puts the product
        `row` (its catalog row now) on sale above its price: a sale lowers the price. (A
        stock change alone is not refused for prices already stored. Two price changes to
        one product at once are each checked against the row before both.)"""
        setting = self.assignments
        if not {"price", "sale_price"} & setting.keys():
            return
        after = {**row, **setting}
        price, sale = after.get("price"), after.get("sale_price")
        if price is not None and sale is not None and float(sale) > float(price):
            raise PinshopError(f"sale_price {float(sale):.2f} is above the price "
                               f"{float(price):.2f}: a sale lowers the price (end it with "
                               "sale_price null)")

    @classmethod
    def from_assignments(cls, product_id: str, found: dict[str, Any]) -> ProductChange:
        sale = found.get("sale_price")
        return cls(product_id, found.get("price"), sale, found.get("availability"),
                   clear_sale="sale_price" in found and sale is None)

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

    def then(self, later: ProductChange) -> ProductChange:
        """This change followed by `later` (same product): each field's last setting."""
        merged = ProductChange.from_assignments(self.id, {**self.assignments,
                                                          **later.assignments})
        return replace(merged, state=later.state or self.state)


def _price(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PinshopError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise PinshopError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or number >= MAX_AMOUNT:
        raise PinshopError(f"{name} must be an amount from 0 to below {MAX_AMOUNT:.0e}, "
                           f"not {value!r}")
    if abs(round(number, 2) - number) > 1e-9 * number:
        # The catalog keeps cents: 0.001 was stored as 0.00, and the product was free.
        raise PinshopError(f"{name} {value!r} has more than 2 decimals: the catalog keeps "
                           "cents")
    return round(number, 2)


def merged(changes: list[ProductChange]) -> list[ProductChange]:
    """One change per product, in first-seen order: fields set later win, fields set only
    earlier are kept."""
    found: dict[str, ProductChange] = {}
    for change in changes:
        known = found.get(change.id)
        found[change.id] = change if known is None else known.then(change)
    return list(found.values())


def _sql_type(column: str) -> str:
    return "VARCHAR" if column == "availability" else PRICE_TYPE


def changed(column: str, source: str, current: str) -> str:
    """`column`'s value after `source`'s change: its setting where it set one, else
    `current`."""
    return (f"CASE WHEN {source}.set_{column} THEN {source}.{column}::{_sql_type(column)} "
            f"ELSE {current} END")


def set_clause(columns: list[str], source: str) -> str:
    """`col = CASE WHEN <source>.set_col THEN <source>.col ELSE col END` for each column."""
    return ", ".join(f"{c} = {changed(c, source, f'catalog.{c}')}" for c in columns)


def changed_catalog_sql(catalog: str, source: str, columns: set[str]) -> str:
    """A SELECT of `catalog` (whose columns are `columns`) with `source`'s changes applied
    by id: what `update_catalog` does in place, as a query (a catalog without a
    `sale_price` column gains one)."""
    replaced = ", ".join(f"{changed(c, 's', f'c.{c}')} AS {c}" for c in FIELDS if c in columns)
    added = "".join(f", {changed(c, 's', f'NULL::{_sql_type(c)}')} AS {c}" for c in FIELDS
                    if c not in columns)
    return f"SELECT c.* REPLACE ({replaced}){added} FROM {catalog} c LEFT JOIN {source} s " \
           "ON s.id = c.id"


def changes_table(changes: list[ProductChange]) -> pa.Table:
    """The changes as an Arrow table (id, value and set_ flag per field), one row per
    product (merged)."""
    import pyarrow as pa

    latest = merged(changes)
    rows = [change.assignments for change in latest]
    columns: dict[str, Any] = {"id": pa.array([c.id for c in latest], pa.string())}
    for name in FIELDS:
        kind = pa.string() if name == "availability" else pa.float64()
        columns[name] = pa.array([row.get(name) for row in rows], kind)
        columns[f"set_{name}"] = pa.array([name in row for row in rows], pa.bool_())
    return pa.table(columns)


def apply_pending(con: Any, changes: list[ProductChange]) -> None:
    """Apply `changes` to the table `catalog` of DuckDB connection `con` in one UPDATE (a
    loaded catalog, before any index's filter columns are built from it)."""
    if not changes:
        return
    con.register("pending_changes", changes_table(changes))
    try:
        update_catalog(con, "pending_changes")
    finally:
        con.unregister("pending_changes")


def update_catalog(con: Any, source: str) -> None:
    """One UPDATE of table `catalog` from table `source` (id, and per field its value and
    `set_` flag, as `changes_table` has them), by id."""
    con.execute(f"ALTER TABLE catalog ADD COLUMN IF NOT EXISTS sale_price {PRICE_TYPE}")
    con.execute(f"UPDATE catalog SET {set_clause(list(FIELDS), source)} "
                f"FROM {source} WHERE catalog.id = {source}.id")
