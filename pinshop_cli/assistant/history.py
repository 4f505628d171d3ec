"""The price history chat may quote: each shown product's last price change, read from the
`price_history` rows (io/history.py) and nothing else.

One DuckDB query over the history parts, filtered to the shown ids before anything else
(never the whole history): each id's rows in time order, the last row whose price differs
from the row before it in the same currency. A change is given to the model only while it
still describes the catalog: its new price is the product's current price. The guard
(grounding.py) accepts "down from 129.00 on 2026-11-02" or "was 129.00" only when one of
these changes of a cited product says so.

The price is the catalog's `price`, the one chat renders beside each title; a sale price is
not quoted as a change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PinshopError, first_line

if TYPE_CHECKING:
    import duckdb

    from ..retrieval.store import Product

log = logging.getLogger(__name__)

#: What a change's date is written as, in the prompt and in a claim the guard accepts.
DATE_FORMAT = "%Y-%m-%d"


@dataclass(frozen=True)
class PriceChange:
    """A product's last price change: from `old_price` to `new_price` (its price now), seen
    in the snapshot of `changed_on` (YYYY-MM-DD, UTC)."""

    id: str
    old_price: float
    new_price: float
    currency: str | None
    changed_on: str

    @property
    def down(self) -> bool:
        return self.new_price < self.old_price

    def text(self) -> str:
        """'down from 129.00 on 2026-11-02': how the prompt states it, and how the model
        may repeat it."""
        return f"{'down' if self.down else 'up'} from {self.old_price:.2f} on {self.changed_on}"


def _literals(ids: Sequence[str]) -> str:
    return ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)


def changes_sql(files: Sequence[Path], ids: Sequence[str] | None) -> str:
    """The query of each id's last price change in the history parts `files`: of `ids`
    only (filtered before the window functions), or of every product (None)."""
    from ..io.history import REMOVED, history_rows_sql

    only = f"id IN ({_literals(ids)}) AND " if ids is not None else ""
    return f"""
        WITH rows AS (
            SELECT id, seen_at, price::DOUBLE AS price, currency,
                   lag(price::DOUBLE) OVER w AS before,
                   lag(currency) OVER w AS before_currency
            FROM {history_rows_sql(list(files))}
            WHERE {only}availability IS DISTINCT FROM '{REMOVED}'
            WINDOW w AS (PARTITION BY id ORDER BY seen_at)
        )
        SELECT id, before AS old_price, price AS new_price, currency,
               strftime(seen_at, '{DATE_FORMAT}') AS changed_on
        FROM rows
        WHERE price IS NOT NULL AND before IS NOT NULL AND price <> before
          AND currency IS NOT DISTINCT FROM before_currency
        QUALIFY row_number() OVER (PARTITION BY id ORDER BY seen_at DESC) = 1"""


def last_price_changes(root: Path, products: Sequence[Product],
                       con: duckdb.DuckDBPyConnection | None = None
                       ) -> dict[str, PriceChange]:
    """The last price change of each of `products` that has one and still holds (its new
    price is the product's price now, in its currency): one query over the history rows
    of these ids only, on a cursor of `con` when given (a catalog store's: a new DuckDB
    connection costs more than the query). Empty without a history (or when it cannot be
    read: chat then quotes none, e.g. a part removed by a compaction between the listing
    and the read, or a damaged one)."""
    import duckdb

    from ..io.history import history_store
    from ..workspace.storage import query_arrow

    ids = list(dict.fromkeys(p.id for p in products))
    if not ids:
        return {}
    try:
        files = history_store(root).files()
    except PinshopError:
        return {}
    if not files:
        return {}
    try:
        if con is None:
            table = query_arrow(changes_sql(files, ids))
        else:
            cursor = con.cursor()
            try:
                table = cursor.sql(changes_sql(files, ids)).to_arrow_table()
            finally:
                cursor.close()
    except (duckdb.IOException, duckdb.InvalidInputException) as exc:
        # Gone (a compaction since the listing) or damaged: the answer goes without history.
        log.warning("price history not read (%s); answering without it", first_line(exc))
        return {}
    found = {row["id"]: PriceChange(**row) for row in table.to_pylist()}
    now = {p.id: p for p in products}
    return {pid: change for pid, change in found.items() if _holds(change, now[pid])}


def _holds(change: PriceChange, product: Product) -> bool:
    """Whether the product still has the change's new price, in its currency."""
    price, currency = product.price, product.currency
    return (price is not None and abs(price - change.new_price) < 0.005
            and (not currency or not change.currency or currency == change.currency))
