"""Catalog normalization: CSV / JSONL / Parquet in, one clean table plus rejects out."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PinshopError
from .images import DEFAULT_MAX_PIXELS, ImageRejected, check_image
from .storage import sha256_file, sha256_text

if TYPE_CHECKING:
    import pyarrow as pa

KNOWN_COLUMNS = (
    "id", "title", "description", "category", "brand", "color",
    "price", "currency", "image", "url", "availability",
)  # fmt: skip
PRICE_TYPE_ARGS = (18, 2)


@dataclass(frozen=True)
class Reject:
    source: str
    line: int
    reason: str
    id: str | None = None
    raw: str = ""


@dataclass
class CatalogLoad:
    table: pa.Table
    rejects: list[Reject] = field(default_factory=list)

    @property
    def rows_ok(self) -> int:
        return self.table.num_rows


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, raw record). Line numbers are 1-based file lines (CSV/JSONL)
    or 1-based row numbers (Parquet)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            for record in reader:
                yield reader.line_num, record
    elif suffix in {".jsonl", ".ndjson", ".json"}:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield number, {"__error__": f"invalid JSON: {exc.msg}"}
                        continue
                    is_object = isinstance(record, dict)
                    yield number, record if is_object else {"__error__": "not a JSON object"}
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, record
    else:
        raise PinshopError(f"unsupported catalog format {suffix!r}: use .csv, .jsonl or .parquet")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_price(value: Any) -> Decimal | None:
    """'1,299.00', '$12.5', 12.5 -> Decimal; '' -> None; anything else raises ValueError."""
    text = _text(value)
    if text is None:
        return None
    cleaned = text.lstrip("$€£¥").replace(",", "").strip()
    try:
        price = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"unparsable price {text!r}") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"invalid price {text!r}")
    return price.quantize(Decimal("0.01"))


def product_text(row: dict[str, Any]) -> str:
    """The text embedded for a product: '{title}. {category}. {color}. {brand}'."""
    parts = (row.get("title"), row.get("category"), row.get("color"), row.get("brand"))
    return ". ".join(str(p) for p in parts if p) + "."


def load_catalog(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> CatalogLoad:
    """Normalize a catalog file. Bad rows become Rejects with line numbers; the rest load."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise PinshopError(f"catalog not found: {path}")
    source = path.name
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    first_line: dict[str, int] = {}
    extra_columns: dict[str, None] = {}

    for line, record in _records(path):
        raw = json.dumps(record, default=str, ensure_ascii=False)[:2000]
        if "__error__" in record:
            rejects.append(Reject(source, line, record["__error__"], None, raw))
            continue
        record = {str(k).strip().lower(): v for k, v in record.items() if k is not None}
        product_id = _text(record.get("id"))

        def reject(reason: str, pid: str | None = product_id, ln: int = line, r: str = raw) -> None:
            rejects.append(Reject(source, ln, reason, pid, r))

        if product_id is None:
            reject("missing id")
            continue
        if product_id in first_line:
            reject(f"duplicate id {product_id!r} (first on line {first_line[product_id]})")
            continue
        title = _text(record.get("title"))
        if title is None:
            reject("missing title")
            continue
        try:
            price = parse_price(record.get("price"))
        except ValueError as exc:
            reject(str(exc))
            continue
        image_path: str | None = None
        image_sha: str | None = None
        if image_ref := _text(record.get("image")):
            candidate = Path(image_ref).expanduser()
            candidate = candidate if candidate.is_absolute() else path.parent / candidate
            try:
                check_image(candidate, max_pixels)
            except ImageRejected as exc:
                reject(f"image {image_ref}: {exc}")
                continue
            image_path, image_sha = str(candidate.resolve()), sha256_file(candidate)
        first_line[product_id] = line
        row: dict[str, Any] = {c: _text(record.get(c)) for c in KNOWN_COLUMNS}
        row.update(id=product_id, title=title, price=price, image=image_path)
        if row["category"]:
            row["category"] = row["category"].lower()
        row["image_sha256"] = image_sha
        row["text"] = product_text(row)
        row["text_hash"] = sha256_text(row["text"])
        row["line"] = line
        for key, value in record.items():
            if key not in row:
                extra_columns[key] = None
                row[key] = _text(value)
        rows.append(row)

    schema = pa.schema(
        [(c, pa.string()) for c in KNOWN_COLUMNS]
        + [("image_sha256", pa.string()), ("text", pa.string()), ("text_hash", pa.string()),
           ("line", pa.int64())]
        + [(c, pa.string()) for c in extra_columns]
    ).set(KNOWN_COLUMNS.index("price"), pa.field("price", pa.decimal128(*PRICE_TYPE_ARGS)))
    table = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema)
    return CatalogLoad(table, rejects)


def rejects_table(rejects: list[Reject]) -> pa.Table:
    import pyarrow as pa

    schema = pa.schema([("source", pa.string()), ("line", pa.int64()), ("id", pa.string()),
                        ("reason", pa.string()), ("raw", pa.string())])
    return pa.Table.from_pylist([r.__dict__ for r in rejects], schema)
