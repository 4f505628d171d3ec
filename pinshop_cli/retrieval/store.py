"""The catalog as a store: ids by filters (as arrays), rows by ids (only the hits).

One DuckDB connection per store holds the catalog in DuckDB's columnar memory with an ART
index on id; nothing turns the whole catalog into Python objects, so a lookup costs about
the same at 44 rows and at a million.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import cached_property, reduce
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..workspace import Workspace
from ..workspace.integrity import require_catalog
from ..workspace.storage import sql_path

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa


def money(amount: float | None, currency: str | None, missing: str = "price on request"
          ) -> str:
    """How an amount is written everywhere: '129.00 EUR' ('129.00' without a currency),
    `missing` without an amount."""
    return missing if amount is None else f"{amount:.2f} {currency or ''}".strip()


@dataclass
class Product:
    """A catalog row as shown to people: match results, chat answers, look-alikes."""

    id: str
    title: str
    price: float | None
    category: str | None
    #: The search's cosine; None where no search ranked it (also a row a search lists
    #: without a vector of its kind, to fill its answer: retrieval/policy.py).
    score: float | None = None
    currency: str | None = None
    brand: str | None = None
    color: str | None = None
    image: str | None = None
    url: str | None = None
    availability: str | None = None
    description: str | None = None
    photo_color: str | None = None  # the colour family of its photo (detection/colors.py)
    sale_price: float | None = None  # a live sale (retrieval/updates.py)
    # Its family when search showed it for its variants (retrieval/families.py): id,
    # variants, colours, sizes, summary ("3 colours, 4 sizes").
    family: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], score: float | None = None) -> Product:
        """A row as CatalogStore.rows returns it."""
        price = float(row["price"]) if row.get("price") is not None else None
        return cls(row["id"], row["title"], price, row.get("category"),
                   None if score is None else round(score, 4),
                   row.get("currency"), row.get("brand"), row.get("color"), row.get("image"),
                   row.get("url"), row.get("availability"), row.get("description"),
                   row.get("photo_color"),
                   float(row["sale_price"]) if row.get("sale_price") is not None else None)

    @property
    def paid(self) -> float | None:
        """What the shopper pays: the sale price while it is lower, else the price."""
        if self.sale_price is not None and (self.price is None or self.sale_price < self.price):
            return self.sale_price
        return self.price

    def price_text(self) -> str:
        """'129.00 EUR', from the catalog only."""
        return money(self.price, self.currency)

    def titled(self) -> str:
        """The title; for a product shown for its family, with what else it comes in:
        'Cotton tee · 3 colours, 4 sizes'."""
        return f"{self.title} · {self.family['summary']}" if self.family else self.title

    def render(self) -> str:
        """'Title (129.00 EUR)': how an answer names it, from the catalog only."""
        return f"{self.title} ({self.price_text()})"


#: A word with a letter and a digit may be an id (P200, SKU-12); a bare number is a price or
#: a size far more often than an id.
ID_WORD = re.compile(r"(?=[\w.\-]*[A-Za-z])[\w.\-]*\d[\w.\-]*")
#: The photo's colour family, for a row whose catalog gives no colour of its own: a merchant's
#: "natural" oak chair is not "cream" because its photo reads beige.
PHOTO_COLOR = "CASE WHEN coalesce(trim(c.color), '') = '' THEN c.photo_color END"
#: What the shopper pays: the sale price while a sale is lower, else the price. Price
#: filters judge this ("under 16" finds a 20 tee on sale at 15), as `changes` does.
PAID_PRICE = ("CASE WHEN c.sale_price < c.price OR c.price IS NULL THEN c.sale_price "
              "ELSE c.price END")
#: A row (alias c) whose photo file is that of the product $ref.
SAME_FILE = "c.image_sha256 = (SELECT image_sha256 FROM catalog WHERE id = $ref)"


@dataclass(frozen=True)
class Filters:
    """Constraints on catalog rows; None means 'any'. A colour matches the colour column or
    the title, or, for a row with no colour of its own, the colour family of its photo
    ("blue" finds a navy sofa the merchant gave no colour)."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    color: str | None = None

    def __post_init__(self) -> None:
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise PinshopError(f"{name.replace('_', ' ')} must be a finite number, "
                                   f"not {value}")
            if value is not None and value < 0:
                raise PinshopError(f"{name.replace('_', ' ')} must be 0 or more, not {value:g}")

    @property
    def color_spellings(self) -> list[str]:
        """The colour word, lower-cased, in both spellings of grey ("gray" missed "grey")."""
        word = (self.color or "").lower()
        return sorted({word, word.replace("gray", "grey"), word.replace("grey", "gray")})

    @property
    def color_family(self) -> str | None:
        """The family the colour names (detection/colors.py), matched against photos."""
        from ..detection.colors import word_family

        return word_family(self.color)

    def describe(self) -> str:
        """The filters in words: "category 'chair', colour 'black', at most 60"."""
        parts = [f"category {self.category!r}" if self.category else "",
                 f"colour {self.color!r}" if self.color else "",
                 f"at least {self.min_price:g}" if self.min_price else "",
                 f"at most {self.max_price:g}" if self.max_price is not None else ""]
        return ", ".join(part for part in parts if part)

    @property
    def empty(self) -> bool:
        return not (self.category or self.min_price or self.max_price is not None
                    or self.color)

    def where(self) -> tuple[str, dict[str, Any]]:
        """A SQL condition over `catalog` (alias c) and its parameters."""
        clauses: list[str] = ["true"]
        params: dict[str, Any] = {}
        if self.category:
            clauses.append("c.category = $category")
            params["category"] = self.category.lower()
        if self.min_price:
            clauses.append(f"{PAID_PRICE} >= $min_price")
            params["min_price"] = self.min_price
        if self.max_price is not None:
            clauses.append(f"{PAID_PRICE} <= $max_price")
            params["max_price"] = self.max_price
        if self.color:
            said = " OR ".join(f"contains(lower(coalesce(c.color, '') || ' ' || c.title), "
                               f"$color_{n})" for n in range(len(self.color_spellings)))
            clauses.append(f"({said} OR {PHOTO_COLOR} = $color_family)")
            params.update({f"color_{n}": word for n, word in enumerate(self.color_spellings)})
            params["color_family"] = self.color_family
        return " AND ".join(clauses), params


@dataclass
class LabelColumns:
    """The catalog columns filters look at, aligned with an index's labels: computed once
    per loaded index (one join), then every filter is a vectorized mask over them."""

    labels: np.ndarray  # int64, the index's live labels
    category_codes: np.ndarray  # int32 code per label (-1: no category)
    categories: dict[str, int]  # category -> code
    price: np.ndarray  # float64 price paid per label (NaN: none; passes no price filter)
    color_text: pa.Array  # lower(color || ' ' || title), for colour filters
    photo_color: pa.Array  # the colour family of each label's photo (PHOTO_COLOR)

    def allowed(self, filters: Filters) -> np.ndarray:
        """Labels passing `filters`."""
        return self.labels[self.passing(filters)]

    def passing(self, filters: Filters) -> np.ndarray:
        """A boolean mask over `labels`: which pass `filters` (no Python per row)."""
        import numpy as np
        import pyarrow.compute as pc

        mask = np.ones(len(self.labels), dtype=bool)
        if filters.category:
            mask &= self.category_codes == self.categories.get(filters.category.lower(), -2)
        with np.errstate(invalid="ignore"):
            if filters.min_price:
                mask &= self.price >= filters.min_price
            if filters.max_price is not None:
                mask &= self.price <= filters.max_price
        if filters.color:  # the substring scan, only over rows the other filters kept
            rows = np.flatnonzero(mask)
            every = len(rows) == len(mask)
            text = self.color_text if every else self.color_text.take(rows)
            found = reduce(pc.or_, [pc.match_substring(text, word)
                                    for word in filters.color_spellings])
            if filters.color_family:
                photo = self.photo_color if every else self.photo_color.take(rows)
                found = pc.or_kleene(found, pc.equal(photo, filters.color_family))
                found = pc.fill_null(found, False)
            mask[rows] = np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
        return mask


#: Reads of a catalog that a fold or an ingest keeps replacing, before giving up.
LOAD_TRIES = 5


class CatalogStore:
    def __init__(self, ws: Workspace) -> None:
        import duckdb

        if not ws.catalog.exists():
            raise PinshopError(f"no catalog in {ws.root}: run `pinshop ingest CATALOG` first")
        require_catalog(ws.catalog)
        self.ws = ws
        self.con: duckdb.DuckDBPyConnection = duckdb.connect()
        self._load()
        self.con.execute("CREATE INDEX catalog_id ON catalog (id)")

    def _load(self) -> None:
        """catalog.parquet with the change log's live price and stock changes for it (a
        PATCH to a server; retrieval/updates.py; one stat without a log), loaded once into
        DuckDB's columnar memory: with the ART index on id, fetching the rows of 10 hits
        costs ~2 ms at a million products (a Parquet scan costs ~160 ms). A fold or an
        ingest that replaces the catalog (and empties the log) meanwhile is read again."""
        import duckdb

        from .changes import PRICE_TYPE
        from .updates import ChangeLog, catalog_identity

        for _ in range(LOAD_TRIES):
            base = catalog_identity(self.ws.catalog)  # which catalog the log rows must name
            self.con.execute(f"CREATE OR REPLACE TABLE catalog AS SELECT * FROM "
                             f"read_parquet({sql_path(self.ws.catalog)})")
            # Catalogs ingested before photos were named have no photo colour yet, and
            # catalogs without sales no sale price (price filters read it).
            self.con.execute("ALTER TABLE catalog ADD COLUMN IF NOT EXISTS photo_color "
                             "VARCHAR")
            self.con.execute(f"ALTER TABLE catalog ADD COLUMN IF NOT EXISTS sale_price "
                             f"{PRICE_TYPE}")
            try:
                ChangeLog(self.ws).apply(self.con, base)
            except duckdb.IOException:  # a fold emptied the log after listing it
                continue
            if catalog_identity(self.ws.catalog) == base:
                return
        raise PinshopError(f"{self.ws.catalog} kept changing while it was read (another "
                           "process is writing the workspace): try again")

    def close(self) -> None:
        self.con.close()

    @cached_property
    def photo_hashes(self) -> bool:
        """Whether the catalog records its photo files' sha256 (every ingest does)."""
        return "image_sha256" in self.con.table("catalog").columns

    def cheapest_sharing(self, product_id: str, filters: Filters) -> str | None:
        """The cheapest other listing of `product_id`'s photo file passing `filters`."""
        if not self.photo_hashes:
            return None
        condition, params = filters.where()
        found = self._arrow(
            f"SELECT id FROM catalog c WHERE {SAME_FILE} AND c.id <> $ref AND {condition} "
            f"ORDER BY {PAID_PRICE} NULLS LAST, c.id LIMIT 1", {**params, "ref": product_id})
        return str(found.column("id")[0]) if found.num_rows else None

    def sharing_photo(self, product_id: str, ids: list[str]) -> set[str]:
        """Those of `ids` (a few shown products) whose photo file is `product_id`'s."""
        if not self.photo_hashes or not ids:
            return set()
        found = self._arrow(f"SELECT id FROM catalog c WHERE {SAME_FILE} AND "
                            "list_contains($ids, c.id)", {"ref": product_id, "ids": ids})
        return set(found.column("id").to_pylist())

    def photo_sharers(self, product_id: str) -> int:
        """How many other catalog rows have `product_id`'s photo file."""
        if not self.photo_hashes:
            return 0
        return int(self._arrow(f"SELECT count(*) AS n FROM catalog c WHERE {SAME_FILE} AND "
                               "c.id <> $ref", {"ref": product_id}).column("n")[0].as_py())

    def _arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def ids(self, filters: Filters) -> pa.Array:
        condition, params = filters.where()
        return self._arrow(f"SELECT id FROM catalog c WHERE {condition}", params
                           ).column("id").combine_chunks()

    @cached_property
    def size(self) -> int:
        """Rows in the catalog."""
        return self.count(Filters())

    def count(self, filters: Filters) -> int:
        condition, params = filters.where()
        return int(self.con.execute(f"SELECT count(*) FROM catalog c WHERE {condition}",
                                    params or None).fetchall()[0][0])

    def passes(self, product_id: str, filters: Filters) -> bool:
        """Whether that product passes `filters` (one lookup on the id index)."""
        condition, params = filters.where()
        return bool(self.con.execute(
            f"SELECT count(*) FROM catalog c WHERE c.id = $pid AND {condition}",
            {**params, "pid": product_id}).fetchall()[0][0])

    def why_empty(self, filters: Filters) -> str | None:
        """For an answer the filters left empty: the filter that alone matches no product,
        said so (None when each matches some: then only together, or near the query, none)."""
        for name in ("category", "color", "min_price", "max_price"):
            value = getattr(filters, name)
            if value in (None, "") or self.count(replace(Filters(), **{name: value})):
                continue
            if name == "category":
                known = self.distinct("category")
                return (f"no product is in category {filters.category!r} (the catalog has "
                        f"{', '.join(known[:20])}{', ...' if len(known) > 20 else ''})")
            if name == "color":
                from ..detection.colors import FAMILIES

                unknown = "" if filters.color_family else (
                    ": it names no colour pinshop knows, so no photo can match it (try a "
                    f"CSS colour name or one of {', '.join(FAMILIES)})")
                return f"no product's colour, title or photo is {filters.color!r}{unknown}"
            bound = "or more" if name == "min_price" else "or less"
            return f"no product costs {value:g} {bound}"
        return None

    @cached_property
    def currencies(self) -> list[str]:
        """The catalog's currency codes, read once (no live change sets one)."""
        return [code.upper() for code in self.distinct("currency")]

    def label_columns(self, label_table: pa.Table) -> LabelColumns:
        """The filter columns of the catalog aligned with an index's labels."""
        import numpy as np
        import pyarrow.compute as pc

        self.con.register("index_labels", label_table)
        try:
            table = self._arrow(
                f"SELECT l.label, c.category, ({PAID_PRICE})::DOUBLE AS price, "
                "lower(coalesce(c.color, '') || ' ' || c.title) AS color_text, "
                f"{PHOTO_COLOR} AS photo_color "
                "FROM index_labels l JOIN catalog c ON c.id = l.id ORDER BY l.label")
        finally:
            self.con.unregister("index_labels")
        encoded = pc.dictionary_encode(table.column("category")).combine_chunks()
        codes = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int32)
        return LabelColumns(
            table.column("label").to_numpy().astype(np.int64), codes,
            {str(v): n for n, v in enumerate(encoded.dictionary.to_pylist())},
            table.column("price").to_numpy(zero_copy_only=False).astype(np.float64),
            table.column("color_text").combine_chunks(),
            table.column("photo_color").combine_chunks())

    def apply(self, product_id: str, assignments: dict[str, Any]) -> bool:
        """Set columns of one row in the served catalog (retrieval/updates.py: a live price
        or stock change); False when there is no such product. The ART index on id finds
        the row, so this costs the same at any catalog size."""
        sets = ", ".join(f"{name} = ${name}" for name in assignments)
        found = self.con.execute(f"UPDATE catalog SET {sets} WHERE id = $id",
                                 {**assignments, "id": product_id}).fetchall()
        return bool(found and found[0][0])

    def rows(self, ids: list[str]) -> list[dict[str, Any]]:
        """Catalog rows for `ids`, in that order (ids not in the catalog are left out)."""
        if not ids:
            return []
        # A literal IN list is what lets DuckDB use the ART index (a subquery scans).
        literals = ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)
        table = self._arrow(f"SELECT * FROM catalog WHERE id IN ({literals})")
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

    def ids_in(self, text: str) -> list[str]:
        """Catalog ids that `text` names as words, in its order ("tell me about P200").
        Only words with a letter and a digit are looked up (ID_WORD)."""
        words = list(dict.fromkeys(w.rstrip(".-") for w in ID_WORD.findall(text)))[:16]
        if not words:
            return []
        found = {r[0] for r in self.con.execute(
            "SELECT id FROM catalog WHERE id IN (SELECT unnest($words))", {"words": words}
        ).fetchall()}
        return [w for w in words if w in found]

    def named_in(self, text: str, min_length: int = 7) -> list[str]:
        """Ids of the products whose title occurs in `text` (longest titles first)."""
        return [r[0] for r in self.con.execute(
            "SELECT id FROM catalog WHERE length(title) >= $n AND contains($text, lower(title)) "
            "ORDER BY length(title) DESC, id LIMIT 8", {"n": min_length, "text": text.lower()}
        ).fetchall()]

    def distinct(self, column: str) -> list[str]:
        """Sorted distinct non-null values of a (lower-cased) column, e.g. categories."""
        import duckdb

        if column not in ("category", "color", "brand", "currency"):
            raise ValueError(column)
        try:
            return [r[0] for r in self.con.execute(
                f"SELECT DISTINCT lower({column}) FROM catalog WHERE {column} IS NOT NULL "
                "ORDER BY 1").fetchall()]
        except duckdb.BinderException:  # a hand-made catalog without that column
            return []
