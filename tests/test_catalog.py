"""Catalog normalization and rejects."""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.catalog import load_catalog, parse_price, product_text


def rows_by_id(load):  # noqa: ANN001, ANN201
    return {r["id"]: r for r in load.table.to_pylist()}


@pytest.mark.parametrize("name", ["catalog.csv", "catalog.jsonl", "catalog.parquet"])
def test_formats_normalize_the_same(write_catalog, name):
    rows = [
        {"id": "A1", "title": "Oak Chair", "category": "Chair", "price": "149.90",
         "image": "products/P001.jpg", "material": "oak"},
        {"id": "A2", "title": "Text Only Lamp", "price": "", "color": "black"},
    ]
    load = load_catalog(write_catalog(rows, name))
    assert load.rejects == []
    got = rows_by_id(load)
    assert got["A1"]["price"] == Decimal("149.90")
    assert got["A1"]["category"] == "chair"  # normalized to lower case
    assert got["A1"]["image"].endswith("products/P001.jpg")
    assert got["A1"]["image_sha256"] and len(got["A1"]["image_sha256"]) == 64
    assert got["A1"]["material"] == "oak"  # unknown columns are kept
    assert got["A2"]["price"] is None and got["A2"]["image"] is None
    assert got["A2"]["text"] == "Text Only Lamp. black."


def test_bad_rows_are_rejected_with_line_and_reason(write_catalog, bad_images, tmp_path):
    for kind in ("zero_byte", "truncated", "not_image", "bomb"):
        shutil.copy(bad_images[kind], tmp_path / "products" / bad_images[kind].name)
    rows = [
        {"id": "ok1", "title": "Good", "price": "10", "image": "products/P001.jpg"},
        {"id": "", "title": "No id", "price": "1"},
        {"id": "ok1", "title": "Duplicate", "price": "1"},
        {"id": "p3", "title": "Bad price", "price": "twelve"},
        {"id": "p4", "title": "Negative price", "price": "-3"},
        {"id": "p5", "title": "Missing image", "image": "products/nope.jpg"},
        {"id": "p6", "title": "Corrupt image", "image": "products/truncated.jpg"},
        {"id": "p7", "title": "Zero bytes", "image": "products/empty.jpg"},
        {"id": "p8", "title": "Not an image", "image": "products/notes.jpg"},
        {"id": "p9", "title": "Bomb", "image": "products/bomb.png"},
        {"id": "p10", "title": ""},
        {"id": "ok2", "title": "Also good", "price": "$1,299.50"},
    ]
    load = load_catalog(write_catalog(rows))
    assert sorted(rows_by_id(load)) == ["ok1", "ok2"]
    assert rows_by_id(load)["ok2"]["price"] == Decimal("1299.50")
    reasons = {r.line: r.reason for r in load.rejects}
    assert reasons[3] == "missing id"
    assert reasons[4].startswith("duplicate id 'ok1' (first on line 2)")
    assert reasons[5] == "unparsable price 'twelve'"
    assert reasons[6] == "invalid price '-3'"
    assert "image not found" in reasons[7]
    assert "corrupt or truncated" in reasons[8]
    assert "empty file" in reasons[9]
    assert "not an image" in reasons[10]
    assert "decompression bomb" in reasons[11]
    assert reasons[12] == "missing title"
    assert all(r.source == "catalog.csv" for r in load.rejects)


def test_invalid_jsonl_lines_are_rejected_not_fatal(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "title": "A"}\n{not json}\n[1, 2]\n{"id": "b", "title": "B"}\n')
    load = load_catalog(path)
    assert load.rows_ok == 2
    assert [(r.line, r.reason.split(":")[0]) for r in load.rejects] == [
        (2, "invalid JSON"), (3, "not a JSON object")]


def test_unsupported_or_missing_catalog_is_a_clear_error(tmp_path):
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(PinshopError, match="unsupported catalog format"):
        load_catalog(tmp_path / "c.xlsx")
    with pytest.raises(PinshopError, match="catalog not found"):
        load_catalog(tmp_path / "missing.csv")


def test_price_parsing_and_product_text():
    assert parse_price(" 12.5 ") == Decimal("12.50")
    assert parse_price("€3") == Decimal("3.00")
    assert parse_price(None) is None
    with pytest.raises(ValueError):
        parse_price("NaN")
    row = {"title": "Sofa", "category": "sofa", "color": "green", "brand": "Forma"}
    assert product_text(row) == "Sofa. sofa. green. Forma."
