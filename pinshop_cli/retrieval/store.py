"""The catalog as a store: ids by filters (as arrays), rows by ids (only the hits).

One DuckDB connection per store reads catalog.parquet in place; nothing turns the whole
catalog into Python objects, so a call costs the same at 44 rows and at a million.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..workspace import Workspace
from ..workspace.storage import sql_path

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa


@dataclass(frozen=True)
class Filters:
    """Constraints on catalog rows; None means 'any'. A colour matches the colour column or
    the title."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    color: str | None = None

    def __post_init__(self) -> None:
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise PinshopError(f"{name.replace('_', '-')} must be a number, not {value}")

    @property
    def empty(self) -> bool:
        return not (self.category or self.min_price or self.max_price is not None
                    or self.color)

    def where(self) -> tuple[str, dict[str, Any]]:
        """A SQL condition over `catalog` (alias c) and its parameters."""
        clauses, params = ["true"], {}
        if self.category:
            clauses.append("c.category = $category")
            params["category"] = self.category.lower()
        if self.min_price:
            clauses.append("c.price >= $min_price")
            params["min_price"] = self.min_price
        if self.max_price is not None:
            clauses.append("c.price <= $max_price")
            params["max_price"] = self.max_price
        if self.color:
            clauses.append("contains(lower(coalesce(c.color, '') || ' ' || c.title), $color)")
            params["color"] = self.color.lower()
        return " AND ".join(clauses), params


class CatalogStore:
    def __init__(self, ws: Workspace) -> None:
        import duckdb

        if not ws.catalog.exists():
            raise PinshopError(f"no catalog in {ws.root}: run `pinshop ingest CATALOG` first")
        self.ws = ws
        self.con: duckdb.DuckDBPyConnection = duckdb.connect()
        self.con.execute(f"CREATE VIEW catalog AS SELECT * FROM read_parquet("
                         f"{sql_path(ws.catalog)})")

    def close(self) -> None:
        self.con.close()

    def _arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def ids(self, filters: Filters) -> pa.Array:
        condition, params = filters.where()
        return self._arrow(f"SELECT id FROM catalog c WHERE {condition}", params
                           ).column("id").combine_chunks()

    def count(self, filters: Filters) -> int:
        condition, params = filters.where()
        return int(self.con.execute(f"SELECT count(*) FROM catalog c WHERE {condition}",
                                    params or None).fetchall()[0][0])

    def labels(self, label_table: pa.Table, filters: Filters) -> np.ndarray:
        """The labels (of an index whose `label_table` maps label -> id) of rows passing
        `filters`, as an int64 array: one join, no per-row Python."""
        import numpy as np

        condition, params = filters.where()
        self.con.register("index_labels", label_table)
        try:
            table = self._arrow(f"SELECT l.label FROM index_labels l JOIN catalog c "
                                f"ON c.id = l.id WHERE {condition}", params)
        finally:
            self.con.unregister("index_labels")
        return table.column("label").to_numpy().astype(np.int64)

    def rows(self, ids: list[str]) -> list[dict[str, Any]]:
        """Catalog rows for `ids`, in that order (ids not in the catalog are left out)."""
        if not ids:
            return []
        table = self._arrow("SELECT * FROM catalog WHERE id IN (SELECT unnest($ids))",
                            {"ids": list(ids)})
        by_id = {row["id"]: row for row in table.to_pylist()}
        return [by_id[i] for i in ids if i in by_id]

    def without_vectors(self, label_table: pa.Table, filters: Filters, limit: int
                        ) -> list[str]:
        """Ids passing `filters` that the index does not hold (e.g. text-only rows when
        searching product images), up to `limit`, in id order."""
        condition, params = filters.where()
        self.con.register("index_labels", label_table)
        try:
            table = self._arrow(f"SELECT c.id FROM catalog c ANTI JOIN index_labels l "
                                f"ON c.id = l.id WHERE {condition} ORDER BY c.id "
                                f"LIMIT {int(limit)}", params)
        finally:
            self.con.unregister("index_labels")
        return table.column("id").to_pylist()

    def titles_in(self, text: str, min_length: int = 7) -> list[str]:
        """Catalog titles (longer than a word or two) that occur in `text`: one scan in
        DuckDB, so a guard can check a sentence against a million titles."""
        return [r[0] for r in self.con.execute(
            "SELECT DISTINCT title FROM catalog WHERE length(title) >= $n "
            "AND contains($text, lower(title))", {"n": min_length, "text": text.lower()}
        ).fetchall()]

    def distinct(self, column: str) -> list[str]:
        """Sorted distinct non-null values of a (lower-cased) column, e.g. categories."""
        import duckdb

        if column not in ("category", "color", "brand"):
            raise ValueError(column)
        try:
            return [r[0] for r in self.con.execute(
                f"SELECT DISTINCT lower({column}) FROM catalog WHERE {column} IS NOT NULL "
                "ORDER BY 1").fetchall()]
        except duckdb.BinderException:  # a hand-made catalog without that column
            return []
