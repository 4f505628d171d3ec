"""Shopify product CSV exports: one row per variant, grouped by `Handle`.

The first row of a handle carries the product (Title, Body (HTML), Vendor, Type, ...); the
rows after it carry only their variant's fields, and rows with only `Image Src` add photos.
`regroup` rewrites the table `records` (see records.py) in one SQL statement into one
record per variant with the product's fields filled in and pinshop's column names:

    Handle -> item_group_id        Variant SKU (else Handle-N) -> id
    Title -> title                 Body (HTML), tags stripped -> description
    Vendor -> brand                Product Category (else Type) -> category (path kept)
    Variant Price -> price         Variant Image (else the first Image Src) -> image
    OptionN Name/Value -> color, size, material (and option1..3 as written)
    Variant Inventory Qty / Policy -> availability (in_stock, backorder, out_of_stock)

Image-only rows become the product's `additional_image_link`. Every other column is kept
under its own (lower-cased) name, as for any catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

#: Columns that mark a Shopify product export.
MARKERS = ("handle", "variant price")
#: Option names (lower-cased) that fill a pinshop column.
OPTION_COLUMNS = {"color": ("color", "colour"), "size": ("size",), "material": ("material",)}
PRODUCT_FIELDS = ("title", "body (html)", "vendor", "type", "product category", "tags",
                  "option1 name", "option2 name", "option3 name")


def is_shopify(names: list[str]) -> bool:
    keys = {name.strip().lower() for name in names}
    return all(marker in keys for marker in MARKERS)


def regroup(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[str]:
    """Replace `records` by one record per variant; return the new column names."""
    keys = [name.strip().lower() for name in names]

    def field(key: str) -> str:
        return f"nullif(trim(c{keys.index(key)}), '')" if key in keys else "NULL::VARCHAR"

    whole = "OVER (PARTITION BY handle ORDER BY line ROWS BETWEEN UNBOUNDED PRECEDING " \
            "AND UNBOUNDED FOLLOWING)"
    product = ", ".join(f"first_value({field(k)} IGNORE NULLS) {whole} AS \"p_{k}\""
                        for k in PRODUCT_FIELDS)
    is_variant = (f"({field('variant price')} IS NOT NULL OR {field('variant sku')} IS NOT NULL"
                  f" OR {field('option1 value')} IS NOT NULL)")

    def option(column: str) -> str:
        spellings = ", ".join(f"'{s}'" for s in OPTION_COLUMNS[column])
        cases = " ".join(f"WHEN lower(\"p_option{n} name\") IN ({spellings}) "
                         f"THEN {field(f'option{n} value')}" for n in (1, 2, 3))
        return f"CASE {cases} END"

    qty, policy = field("variant inventory qty"), field("variant inventory policy")
    mapped = {
        "id": f"coalesce({field('variant sku')}, handle || '-' || variant_number)",
        "item_group_id": "handle",
        "title": '"p_title"',
        "description": ("trim(regexp_replace(regexp_replace(\"p_body (html)\", "
                        "'<[^>]*>', ' ', 'g'), '\\s+', ' ', 'g'))"),
        "brand": '"p_vendor"',
        "category": "coalesce(\"p_product category\", \"p_type\")",
        "product_type": '"p_type"',
        "price": field("variant price"),
        "image": f"coalesce({field('variant image')}, first_image)",
        "additional_image_link": "images",
        "availability": f"""CASE WHEN try_cast({qty} AS DOUBLE) > 0 THEN 'in_stock'
                                 WHEN lower({policy}) = 'continue' THEN 'backorder'
                                 WHEN try_cast({qty} AS DOUBLE) <= 0 THEN 'out_of_stock'
                            END""",
        **{column: option(column) for column in OPTION_COLUMNS},
        **{f"option{n}": f"\"p_option{n} name\" || ': ' || {field(f'option{n} value')}"
           for n in (1, 2, 3)},
    }
    taken = set(mapped) | {"handle", "variant sku", "variant image", *PRODUCT_FIELDS}
    kept = [(n, name) for n, (name, key) in enumerate(zip(names, keys, strict=True))
            if key not in taken and key not in mapped]
    out_names = [*mapped, *(name for _, name in kept)]
    selects = ", ".join([*(f"{sql} AS c{n}" for n, sql in enumerate(mapped.values())),
                         *(f"c{src} AS c{len(mapped) + i}" for i, (src, _) in enumerate(kept))])
    con.execute(f"""
        CREATE TEMP TABLE shopify AS
        WITH grouped AS (
            SELECT *, {field('handle')} AS handle, {is_variant} AS is_variant, {product},
                   first_value({field('image src')} IGNORE NULLS) {whole} AS first_image,
                   string_agg({field('image src')}, ',' ORDER BY line) FILTER
                       (WHERE NOT {is_variant}) {whole} AS images
            FROM records
        )
        SELECT line, CASE WHEN problem IS NOT NULL THEN problem
                          WHEN handle IS NULL THEN 'missing Handle' END AS problem, raw,
               {selects}
        FROM (SELECT *, row_number() OVER (PARTITION BY handle, is_variant ORDER BY line)
                            AS variant_number FROM grouped)
        WHERE is_variant OR problem IS NOT NULL OR handle IS NULL""")
    con.execute("DROP TABLE records")
    con.execute("ALTER TABLE shopify RENAME TO records")
    return out_names
