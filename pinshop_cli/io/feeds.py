"""Merchant feeds: the public feed field names (Google Merchant Center, Pinterest catalogs)
mapped onto pinshop's columns, and the XML feeds (RSS 2.0 or Atom, `g:` namespace) turned
into a Parquet file the catalog reader takes like any other.

The mapping is by column, in SQL (see `catalog_steps.typed`): a feed field that stands for a
pinshop column (`link` for `url`, `image_link` for `image`, `product_type` for `category`)
feeds that column and is also kept under its own name, so the full category path stays.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PinshopError, first_line

#: pinshop column -> the feed fields that stand for it, first present wins (after the
#: column itself). Field names as the Merchant Center and Pinterest specifications spell them.
ALIASES: dict[str, tuple[str, ...]] = {
    "url": ("link",),
    "image": ("image_link",),
    "category": ("product_type", "google_product_category"),
}
#: Feed values of `availability` -> the spec's own spelling ("in stock" is the older one).
AVAILABILITY = ("in_stock", "out_of_stock", "preorder", "backorder")
XML_SUFFIXES = (".xml", ".rss", ".atom")
#: Items per Parquet row group while an XML feed is converted.
XML_BATCH = 20_000


def feed_sources(columns: dict[str, str]) -> dict[str, str]:
    """pinshop column -> the field it is read from: its own column, else a feed alias."""
    sources = dict(columns)
    for name, aliases in ALIASES.items():
        if name not in sources:
            for alias in aliases:
                if alias in columns:
                    sources[name] = columns[alias]
                    break
    return sources


def xml_to_parquet(path: Path, target: Path) -> None:
    """Stream an RSS 2.0 (`channel/item`) or Atom (`feed/entry`) feed into a Parquet file,
    one row per item, one text column per field (namespaces dropped: `g:price` is `price`).
    A field given more than once (`additional_image_link`) is joined with commas; a nested
    field (`g:shipping`) is its children's texts joined with colons, as the TSV form writes
    it. Atom's `<link href=...>` is the item's `link`. Parsing is the one per-item loop on
    the catalog path: no SQL engine here reads XML."""
    import xml.etree.ElementTree as ET

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[str | None]] = {}
    writer: pq.ParquetWriter | None = None
    count = 0

    def flush() -> None:
        nonlocal writer, columns
        if not count:
            return
        table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
        if writer is None:
            writer = pq.ParquetWriter(target, table.schema)
        writer.write_table(table.select(writer.schema.names))
        columns = {k: [] for k in writer.schema.names}

    seen = 0
    try:
        for _, element in ET.iterparse(path, events=("end",)):
            if _local(element.tag) not in ("item", "entry"):
                continue
            fields: dict[str, str] = {}
            for child in element:
                name = _local(child.tag)
                if name == "link" and child.get("href"):
                    value: str | None = child.get("href")
                elif len(child):
                    value = ":".join((c.text or "").strip() for c in child)
                else:
                    value = (child.text or "").strip()
                if value:
                    fields[name] = f"{fields[name]},{value}" if name in fields else value
            for name in fields.keys() - columns.keys():
                if writer is not None and name not in writer.schema.names:
                    raise PinshopError(f"{path.name}: item {seen + 1} brings a new field "
                                       f"{name!r} after the first {XML_BATCH} items")
                columns[name] = [None] * count
            for name, values in columns.items():
                values.append(fields.get(name))
            count += 1
            seen += 1
            element.clear()
            if count == XML_BATCH:
                flush()
                count = 0
        flush()
    except ET.ParseError as exc:
        raise PinshopError(f"cannot read {path.name}: not well-formed XML "
                           f"({first_line(exc, 160)})") from None
    finally:
        if writer is not None:
            writer.close()
    if seen == 0:
        raise PinshopError(f"{path.name} has no <item> or <entry>: not an RSS 2.0 or Atom "
                           "product feed")


def _local(tag: object) -> str:
    """An element's name without its namespace."""
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]
