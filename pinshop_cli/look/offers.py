"""`similar --offers`: the same product at other merchants, read from the duplicates
clusters (`pinshop duplicates`, look/duplicates.py), with current prices and stock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..retrieval.store import money

if TYPE_CHECKING:
    from ..retrieval.retriever import Retriever

#: Catalog columns naming who sells a listing, first present and non-empty wins; a listing
#: without any is known by its link's host name.
MERCHANT_COLUMNS = ("merchant", "seller_name", "store", "external_seller_id")


@dataclass
class Offer:
    """One listing of a product: who sells it, at what price, and whether it is in stock."""

    id: str
    title: str
    merchant: str | None
    price: float | None
    sale_price: float | None
    currency: str | None
    availability: str | None
    url: str | None
    reference: bool  # the listing asked about

    def price_text(self) -> str:
        return money(min((p for p in (self.price, self.sale_price) if p is not None),
                         default=None), self.currency)


@dataclass
class Offers:
    """The same product at other merchants (its duplicates cluster), cheapest first."""

    reference: str
    cluster: int | None
    offers: list[Offer]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"reference": self.reference, "cluster": self.cluster,
                "offers": [asdict(o) for o in self.offers], "notes": self.notes}


def merchant_sql(columns: set[str], alias: str = "c") -> str:
    """SQL for a listing's merchant: a merchant column, else its link's host name."""
    named = [f"nullif(trim({alias}.{name}::VARCHAR), '')" for name in MERCHANT_COLUMNS
             if name in columns]
    if "url" in columns:
        named.append(f"nullif(regexp_extract(lower({alias}.url), "
                     "'^[a-z][a-z0-9+.-]*://(www\\.)?([^/:?#]+)', 2), '')")
    return f"coalesce({', '.join(named)})" if named else "NULL::VARCHAR"


def offers(retriever: Retriever, product_id: str) -> Offers:
    """The listings in `product_id`'s duplicates cluster (duplicates.parquet, written by
    `pinshop duplicates`) at other merchants, with the reference's own, cheapest first (the
    price paid: the lower of price and sale price), then in stock first. Prices and stock
    are the catalog's current ones; a listing at the reference's own merchant, or in
    another stated colour, is left out (a variant or a re-listing, not another offer), as
    is one in another stated category (another product)."""
    import pyarrow as pa

    from ..errors import UnknownProductError
    from ..workspace.storage import sql_path
    from .duplicates import colour_families, colours_differ

    path = retriever.ws.root / "duplicates.parquet"
    if not retriever.rows([product_id]):
        raise UnknownProductError(f"no product {product_id!r} in the catalog")
    if not path.exists():
        raise PinshopError("no duplicates clusters yet: run `pinshop duplicates` first "
                           "(it finds the same product across ids and merchants)")
    con = retriever.store.con.cursor()
    try:
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM (DESCRIBE catalog)").fetchall()}

        def column(name: str, kind: str = "VARCHAR") -> str:
            return f"c.{name}::{kind}" if name in columns else f"NULL::{kind}"

        table = con.sql(f"""
            WITH clusters AS (SELECT id, cluster FROM read_parquet({sql_path(path)})),
            listings AS (
                SELECT d.cluster, c.id, c.title, {merchant_sql(columns)} AS merchant,
                       {column('price', 'DOUBLE')} AS price,
                       {column('sale_price', 'DOUBLE')} AS sale_price,
                       {column('currency')} AS currency, {column('availability')}
                           AS availability, {column('url')} AS url, c.id = $id AS reference,
                       {column('color')} AS color, c.category
                FROM clusters d JOIN catalog c USING (id)
                WHERE d.cluster = (SELECT cluster FROM clusters WHERE id = $id)
            ), own AS (SELECT merchant, category FROM listings WHERE reference)
            SELECT * EXCLUDE (category) FROM listings
            WHERE reference OR ((merchant IS NULL OR merchant IS DISTINCT FROM
                                 (SELECT merchant FROM own))
                  -- another stated category is another product
                  AND (category IS NULL OR (SELECT category FROM own) IS NULL
                       OR category = (SELECT category FROM own)))
            ORDER BY least(price, sale_price) NULLS LAST,
                     availability IS DISTINCT FROM 'in_stock', id""",
                        params={"id": product_id}).to_arrow_table()
    finally:
        con.close()
    # Another stated colour is a variant of it, not another offer (colours read as
    # duplicates reads them: navy is blue, gray is grey).
    families = colour_families(table)
    reference = table.column("reference").to_numpy(zero_copy_only=False)
    if reference.any():
        other_colour = colours_differ(families, families[reference][:1])
        table = table.filter(pa.array(reference | ~other_colour))
    rows = table.drop_columns(["color"]).to_pylist()  # one cluster's listings: shown
    notes = []
    if path.stat().st_mtime_ns < retriever.ws.catalog.stat().st_mtime_ns:
        notes.append("duplicates.parquet is older than the catalog: run `pinshop duplicates` "
                     "to bring the clusters up to date (prices and stock are current)")
    if len(rows) <= 1:
        notes.append(f"no other merchant's listing of {product_id} is known: it is in no "
                     "duplicates cluster with another merchant")
    cluster = rows[0]["cluster"] if rows else None
    return Offers(product_id, cluster,
                  [Offer(**{k: v for k, v in row.items() if k != "cluster"}) for row in rows],
                  notes)
