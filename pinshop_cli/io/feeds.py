"""Merchant feeds: the public feed field names (Google Merchant Center, Pinterest catalogs)
mapped onto pinshop's columns, and the XML feeds (RSS 2.0 or Atom, `g:` namespace) turned
into a Parquet file the catalog reader takes like any other.

The mapping is by column, in SQL (see `catalog_steps.typed`): a feed field that stands for a
pinshop column (`link` for `url`, `image_link` for `image`, `product_type` for `category`)
feeds that column and is also kept under its own name, so the full category path stays.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PinshopError, first_line
from ..workspace.storage import sql_path

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

#: pinshop column -> the feed fields that stand for it, in order (after the column itself):
#: per row, the first that is not empty wins. Field names as the Merchant Center and
#: Pinterest specifications spell them.
ALIASES: dict[str, tuple[str, ...]] = {
    "url": ("link",),
    "image": ("image_link",),
    "category": ("product_type", "google_product_category"),
}
#: The spec's values of `availability` (Google Merchant Center's).
AVAILABILITY = ("in_stock", "out_of_stock", "preorder", "backorder")
#: Each spelling feeds use, as `availability_key` reduces it -> the spec's value. Besides
#: Merchant Center's own ("in stock", its retired "available for order"), schema.org's
#: ItemAvailability ("https://schema.org/InStock", "Discontinued"), which product pages and
#: many exporters write. A product no longer made cannot be bought: out of stock.
AVAILABILITY_SPELLINGS = {
    "instock": "in_stock", "outofstock": "out_of_stock", "preorder": "preorder",
    "backorder": "backorder", "availablefororder": "in_stock",
    "limitedavailability": "in_stock", "onlineonly": "in_stock", "instoreonly": "in_stock",
    "soldout": "out_of_stock", "discontinued": "out_of_stock", "presale": "preorder",
}  # fmt: skip
#: What `availability_key` drops: a schema.org prefix, then case, spaces, "_" and "-".
_SCHEMA_ORG = r"^\s*https?://schema\.org/"
_SEPARATORS = r"[\s_-]"


def availability_key(value: str) -> str:
    """"In Stock", "in_stock" and "https://schema.org/InStock" -> "instock"."""
    import re

    return re.sub(_SEPARATORS, "", re.sub(_SCHEMA_ORG, "", value, flags=re.I).lower())


def availability_sql(text: str) -> str:
    """SQL for the spec's value of the availability in the expression `text`, NULL when
    its spelling is not known (availability_key and AVAILABILITY_SPELLINGS, in SQL)."""
    key = (f"regexp_replace(lower(regexp_replace({text}, '{_SCHEMA_ORG}', '', 'i')), "
           f"'{_SEPARATORS}', '', 'g')")
    cases = " ".join(f"WHEN '{spelling}' THEN '{value}'"
                     for spelling, value in AVAILABILITY_SPELLINGS.items())
    return f"CASE {key} {cases} END"


#: Why an availability of no known spelling is refused, after the value.
AVAILABILITY_PROBLEM = (f" is not one of {', '.join(AVAILABILITY)} (or their schema.org "
                        "names, such as InStock or Discontinued)")
XML_SUFFIXES = (".xml", ".rss", ".atom")
#: Fields an XML item may give more than once (Merchant Center's repeated attributes).
REPEATED = frozenset({"additional_image_link", "lifestyle_image_link", "shipping", "tax",
                      "product_detail", "product_highlight", "included_destination",
                      "excluded_destination", "shopping_ads_excluded_country",
                      "promotion_id", "certification", "free_shipping_threshold"})
#: Items per Parquet row group while an XML feed is converted.
XML_BATCH = 20_000


def feed_sources(columns: dict[str, str]) -> dict[str, list[str]]:
    """pinshop column -> the fields it is read from, first non-empty wins, row by row: its
    own column, then the feed aliases present (an item with no `product_type` takes its
    `google_product_category`)."""
    sources = {name: [field] for name, field in columns.items()}
    for name, aliases in ALIASES.items():
        sources.setdefault(name, []).extend(columns[a] for a in aliases if a in columns)
    return {name: fields for name, fields in sources.items() if fields}


def xml_to_parquet(path: Path, target: Path) -> list[str]:
    """Stream an RSS 2.0 (`channel/item`) or Atom (`feed/entry`) feed into a Parquet file,
    one row per item, one text column per field (namespaces dropped: `g:price` is `price`).
    A field given more than once is read as `_fields` says; a nested
    field (`g:shipping`) is its children's texts joined with colons, as the TSV form writes
    it. Atom's `<link href=...>` is the item's `link`. Parsing is the one per-item loop on
    the catalog path: no SQL engine here reads XML. Items go out in batches, each its own
    part, and DuckDB joins the parts by column name, so a field first seen late (a sale
    price from item 50,000 on) is a column like any other. Returns notes: the fields items
    gave twice where the spec gives them once (the first value kept)."""
    import xml.etree.ElementTree as ET

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = target.parent / f"{target.stem}-parts"
    parts.mkdir(exist_ok=True)
    columns: dict[str, list[str | None]] = {}
    count = seen = 0
    repeated: Counter[str] = Counter()  # items that gave an unrepeatable field twice

    def flush() -> None:
        nonlocal columns, count
        if count:
            table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
            pq.write_table(table, parts / f"{seen:012d}.parquet")
        columns, count = {}, 0

    stack: list[ET.Element] = []
    try:
        for event, element in ET.iterparse(path, events=("start", "end")):
            if event == "start":
                stack.append(element)
                continue
            stack.pop()
            if _local(element.tag) not in ("item", "entry"):
                continue
            fields = _fields(element, repeated)
            for name in [n for n in fields if n not in columns]:
                columns[name] = [None] * count
            for name, values in columns.items():
                values.append(fields.get(name))
            count += 1
            seen += 1
            if stack:  # done with it: an item kept in its parent would hold its memory
                stack[-1].remove(element)
            if count == XML_BATCH:
                flush()
        flush()
    except ET.ParseError as exc:
        raise PinshopError(f"cannot read {path.name}: not well-formed XML "
                           f"({first_line(exc, 160)})") from None
    if seen == 0:
        raise PinshopError(f"{path.name} has no <item> or <entry>: not an RSS 2.0 or Atom "
                           "product feed")
    with duckdb.connect() as con:
        con.execute("SET preserve_insertion_order = true")
        con.execute("COPY (SELECT * FROM read_parquet($parts, union_by_name = true)) TO "
                    f"{sql_path(target)} (FORMAT parquet)",
                    {"parts": sorted(str(p) for p in parts.glob("*.parquet"))})
    return [f"{items} item{'s' if items > 1 else ''} of {path.name} gave <{name}> more than "
            "once (the spec gives it once): the first value kept"
            for name, items in repeated.most_common(3)]


def _fields(item: ET.Element, repeated: Counter[str]) -> dict[str, str]:
    """An item's fields by name, in the order the feed gives them. A field the spec lets
    repeat (REPEATED) joins its values with commas; a second `image_link` is one more
    `additional_image_link` (joined, it was fetched as one URL and reported as a 404);
    any other field keeps its first value (counted in `repeated`, once an item)."""
    fields: dict[str, str] = {}
    dropped: set[str] = set()
    for child in item:
        name = _local(child.tag)
        if name == "link" and child.get("rel", "alternate") != "alternate":
            continue  # Atom's rel="self" or "enclosure" is not the product's page
        if name == "link" and child.get("href"):
            value = child.get("href") or ""
        elif len(child):
            value = ":".join((c.text or "").strip() for c in child)
        else:
            value = (child.text or "").strip()
        if name == "image_link" and name in fields:
            name = "additional_image_link"
        if not value:
            continue
        if name in fields and name not in REPEATED:
            dropped.add(name)
            continue
        fields[name] = f"{fields[name]},{value}" if name in fields else value
    repeated.update(dropped)
    return fields


def _local(tag: object) -> str:
    """An element's name without its namespace."""
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]
