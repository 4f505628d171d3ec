"""Price and stock history: every catalog ingest is a snapshot, and what changed in it is
appended under `history/` (Parquet parts listed by a manifest and compacted like the
embeddings, see workspace/parts.py).

A product's first snapshot writes its row; a later one writes a row only when its price,
sale price, currency or availability differs from its last row. So `price_history(id,
seen_at, price, sale_price, currency, availability)` holds each product's first row and one
row per snapshot that changed something, and its size grows with the changes, not with the
number of ingests. All of it is one DuckDB query over the catalog and the history parts.
Each row also keeps the product's `title` then, so a product that has left the catalog is
still named (parts written before titles were kept read it as NULL).

A product that leaves the feed gets one row more: its last price, sale price, currency and
title with availability `removed` (REMOVED), so the history says when it went; if it comes
back, its next row follows as any change does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError, parse_date
from ..workspace.integrity import parquet_problem, require_catalog
from ..workspace.layout import Workspace
from ..workspace.parts import PartStore
from ..workspace.storage import query_arrow, sql_path

if TYPE_CHECKING:
    import pyarrow as pa

TRACKED = ("price", "sale_price", "currency", "availability")
IN_STOCK = "in_stock"
#: The availability of a product's history row once it has left the feed.
REMOVED = "removed"


def history_store(root: Path) -> PartStore:
    return Workspace(Path(root)).history_store()


def history_rows_sql(files: list[Path]) -> str:
    """A subquery of every history row in `files`, with the same columns whichever parts
    are there (a part written before titles were kept reads its titles as NULL)."""
    import pyarrow.parquet as pq

    if not files:
        return ("(SELECT NULL::VARCHAR AS id, NULL::TIMESTAMP AS seen_at, "
                "NULL::DECIMAL(18, 2) AS price, NULL::DECIMAL(18, 2) AS sale_price, "
                "NULL::VARCHAR AS currency, NULL::VARCHAR AS availability, "
                "NULL::VARCHAR AS title WHERE false)")
    titled = any("title" in pq.read_schema(path).names for path in files)
    paths = ", ".join(sql_path(p) for p in files)
    return (f"(SELECT id, seen_at, price, sale_price, currency, availability, "
            f"{'title' if titled else 'NULL::VARCHAR AS title'} "
            f"FROM read_parquet([{paths}], union_by_name = true))")


def _latest_sql(files: list[Path], before: str = "true") -> str:
    """Each id's last history row (among those meeting `before`)."""
    return (f"SELECT * FROM {history_rows_sql(files)} WHERE {before} "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY seen_at DESC) = 1")


def record_snapshot(root: Path, catalog: Path, seen_at: datetime,
                    whole: bool | None = None) -> int:
    """Append the catalog's changed rows (against each id's last history row) as one part,
    stamped `seen_at` (naive UTC); return how many. When `catalog` is the whole catalog
    (`whole`; by default, when it is the workspace's catalog.parquet, as after an ingest or
    a fold of live updates), each product in the history but no longer in it gets a
    REMOVED row, unless the last ingest rejected its row (the feed still lists it, badly:
    its last state stands, not "removed" this week and "back in the feed" the next); a file
    of only some rows (a batch of live changes) removes nothing."""
    store = history_store(root)
    if whole is None:
        whole = Path(catalog).resolve() == (Path(root) / "catalog.parquet").resolve()
    columns = query_arrow(f"DESCRIBE SELECT * FROM read_parquet({sql_path(catalog)})"
                          ).column("column_name").to_pylist()
    sale = "c.sale_price" if "sale_price" in columns else "NULL::DECIMAL(18, 2)"
    title = "c.title" if "title" in columns else "NULL::VARCHAR"
    # A batch of live changes compares only its own ids' last rows (not every product's).
    latest = _latest_sql(store.files(), "true" if whole else
                         f"id IN (SELECT id FROM read_parquet({sql_path(catalog)}))")
    removed = f"""
        UNION ALL
        SELECT l.id, $seen_at::TIMESTAMP, l.price, l.sale_price, l.currency, '{REMOVED}',
               l.title
        FROM ({latest}) l ANTI JOIN read_parquet({sql_path(catalog)}) c ON c.id = l.id
        WHERE l.availability IS DISTINCT FROM '{REMOVED}'{_not_rejected(root)}""" \
        if whole else ""
    changed = query_arrow(f"""
        SELECT c.id, $seen_at::TIMESTAMP AS seen_at, c.price::DECIMAL(18, 2) AS price,
               {sale}::DECIMAL(18, 2) AS sale_price, c.currency, c.availability,
               {title}::VARCHAR AS title
        FROM read_parquet({sql_path(catalog)}) c
        LEFT JOIN ({latest}) l ON l.id = c.id
        WHERE l.id IS NULL OR c.price IS DISTINCT FROM l.price
           OR {sale} IS DISTINCT FROM l.sale_price  -- (older rows may hold 'usd')
           OR upper(c.currency) IS DISTINCT FROM upper(l.currency)
           OR c.availability IS DISTINCT FROM l.availability{removed}""",
                          {"seen_at": seen_at})
    store.ensure()
    if changed.num_rows:
        store.append(changed, f"{seen_at:%Y%m%dT%H%M%S%f}")
    return changed.num_rows


def _not_rejected(root: Path) -> str:
    """SQL: `AND` the history row's id was not rejected by the last catalog ingest."""
    rejects = Workspace(Path(root)).rejects_dir / "catalog.parquet"
    if not rejects.exists() or parquet_problem(rejects) is not None:
        return ""
    return (f" AND l.id NOT IN (SELECT id FROM read_parquet({sql_path(rejects)}) "
            "WHERE id IS NOT NULL)")


@dataclass(frozen=True)
class Change:
    """One product's change between two snapshots."""

    id: str
    title: str | None  # the catalog's now, else the history's last (None: never kept)
    kind: str  # price drop | price rise | back in stock | sold out | removed | back in the feed
    seen_at: str
    old_price: float | None
    new_price: float | None
    currency: str | None
    old_availability: str | None
    new_availability: str | None


class Changes(list[Change]):
    """The changes shown (at most the `limit` asked for), `total`, how many there are, and
    `notes` (history parts left out as damaged: the answer may miss what they held)."""

    total: int = 0
    notes: list[str]


def changes(root: Path, since: str | None = None, limit: int | None = None) -> Changes:
    """Price drops and rises (of the price paid: the lower of price and sale price),
    products back in stock, sold out, removed from the feed and back in it: since `since`
    (a date: each product's last row before it, else its first row from then on, against
    its last row), else in the last snapshot (its rows against each product's row
    before). At most `limit` of them (all: None), by kind, the largest drops first;
    `total` says how many there are."""
    if limit is not None and limit < 1:
        raise PinshopError(f"--limit must be at least 1, not {limit}")
    notes: list[str] = []
    files = history_store(root).files(notes)
    if not files:
        raise PinshopError("no price history yet: it starts with the next `pinshop ingest` "
                           "of a catalog")
    paths = history_rows_sql(files)
    catalog = Path(root) / "catalog.parquet"
    if catalog.exists():  # titles come from it: damaged, one line naming the fix
        require_catalog(catalog)
    if since is not None:
        new = _latest_sql(files)
        # A product first seen since then (or all, when the history starts later) is
        # compared from its first row: its changes within the period still show.
        old = (f"SELECT * FROM ({_latest_sql(files, 'seen_at < $since')}) UNION ALL "
               f"SELECT * FROM (SELECT * FROM {paths} WHERE seen_at >= $since AND id NOT IN "
               f"(SELECT id FROM {paths} WHERE seen_at < $since) QUALIFY row_number() OVER "
               "(PARTITION BY id ORDER BY seen_at) = 1)")
        table = _changes(paths, catalog, new, old, limit, {"since": parse_date(since,
                                                                                "--since")})
    else:  # the last snapshot with a change: its rows against the row before each
        new = f"SELECT * FROM {paths} WHERE seen_at = $at"
        old = (f"SELECT * FROM {paths} WHERE seen_at < $at "
               "QUALIFY row_number() OVER (PARTITION BY id ORDER BY seen_at DESC) = 1")
        snapshots = query_arrow(f"SELECT DISTINCT seen_at FROM {paths} ORDER BY 1 DESC "
                                f"LIMIT {SNAPSHOTS_LOOKED_AT}").column("seen_at").to_pylist()
        for at in snapshots or [None]:  # most often the first (one that added products only
            table = _changes(paths, catalog, new, old, limit, {"at": at})  # has none)
            if table.num_rows:
                if at != snapshots[0]:
                    notes.append(f"the latest snapshot ({snapshots[0]:%Y-%m-%d %H:%M}) "
                                 "changed no price or stock: showing the last one that did")
                break
        else:
            if len(snapshots) == SNAPSHOTS_LOOKED_AT:
                notes.append(f"none of the last {SNAPSHOTS_LOOKED_AT} snapshots changed a "
                             "price or stock: pass --since DATE to look further back")
    rows = table.drop_columns(["total"]).to_pylist()  # at most `limit`: what is shown
    found = Changes(Change(**row) for row in rows)
    found.total = table.column("total")[0].as_py() if table.num_rows else 0
    found.notes = notes
    return found


#: Without --since, how many of the latest snapshots are searched for one with changes.
SNAPSHOTS_LOOKED_AT = 10
#: The order `changes` lists kinds in.
KIND_ORDER = ("price drop", "price rise", "sold out", "back in stock", "removed",
              "back in the feed")


def _changes(paths: str, catalog: Path, new: str, old: str, limit: int | None,
             params: dict[str, Any]) -> pa.Table:
    """The changes between each product's row in `new` and its row in `old` (SQL over the
    history rows `paths`), at most `limit`: by kind (KIND_ORDER), then the largest share
    of the old price first (amounts in different currencies do not compare)."""
    titles = (f"SELECT id, title FROM read_parquet({sql_path(catalog)})" if catalog.exists()
              else "SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS title WHERE false")
    order = ", ".join(f"'{kind}'" for kind in KIND_ORDER)
    return query_arrow(f"""
        WITH pairs AS (
            SELECT n.id, n.seen_at, least(o.price, o.sale_price)::DOUBLE AS old_price,
                   least(n.price, n.sale_price)::DOUBLE AS new_price, n.currency,
                   o.availability AS old_availability, n.availability AS new_availability,
                   -- (codes were stored as written before: usd and USD are one)
                   upper(o.currency) IS NOT DISTINCT FROM upper(n.currency) AS same_currency,
                   coalesce(n.title, o.title) AS title
            FROM ({new}) n JOIN ({old}) o USING (id)
        ), kinds AS (
            SELECT *, unnest([
                CASE WHEN same_currency AND new_price < old_price THEN 'price drop' END,
                CASE WHEN same_currency AND new_price > old_price THEN 'price rise' END,
                CASE WHEN new_availability = '{IN_STOCK}'
                      AND old_availability IS DISTINCT FROM '{IN_STOCK}'
                      AND old_availability IS DISTINCT FROM '{REMOVED}' THEN 'back in stock'
                END,
                CASE WHEN old_availability = '{REMOVED}'
                      AND new_availability IS DISTINCT FROM '{REMOVED}' THEN 'back in the feed'
                END,
                CASE WHEN old_availability IN ('{IN_STOCK}', 'preorder', 'backorder')
                      AND new_availability = 'out_of_stock' THEN 'sold out' END,
                CASE WHEN new_availability = '{REMOVED}'
                      AND old_availability IS DISTINCT FROM '{REMOVED}' THEN 'removed'
                END]) AS kind
            FROM pairs
        )
        SELECT k.id, coalesce(c.title, k.title) AS title, kind,
               strftime(seen_at, '%Y-%m-%d %H:%M:%S') AS seen_at,
               -- a price in another currency is no "before" for this one
               CASE WHEN same_currency THEN old_price END AS old_price, new_price,
               k.currency, old_availability, new_availability,
               count(*) OVER () AS total
        FROM kinds k LEFT JOIN ({titles}) c ON c.id = k.id
        WHERE kind IS NOT NULL
        ORDER BY list_position([{order}], kind),
                 abs(new_price - old_price) / nullif(old_price, 0) DESC NULLS LAST, k.id
        {"" if limit is None else f"LIMIT {int(limit)}"}""", params)
