"""Catalog normalization and rejects."""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.io.catalog import load_catalog, normalize_catalog, report_delivered
from pinshop_cli.io.catalog_steps import output_names


def rows_by_id(load):  # noqa: ANN001, ANN201
    return {r["id"]: r for r in load.table.to_pylist()}


def reasons_by_line(load):  # noqa: ANN001, ANN201
    return {r["line"]: r["reason"] for r in load.rejects.to_pylist()}


@pytest.mark.parametrize("name", ["catalog.csv", "catalog.jsonl", "catalog.parquet"])
def test_formats_normalize_the_same(write_catalog, name):
    rows = [
        {"id": "A1", "title": "Oak Chair", "category": "Chair", "price": "149.90",
         "image": "products/P001.jpg", "material": "oak"},
        {"id": "A2", "title": "Text Only Lamp", "price": "", "color": "black"},
    ]
    load = load_catalog(write_catalog(rows, name))
    assert load.rejects.num_rows == 0
    got = rows_by_id(load)
    assert got["A1"]["price"] == Decimal("149.90")
    assert got["A1"]["category"] == "chair"  # normalized to lower case
    assert got["A1"]["image"].endswith("products/P001.jpg")
    assert got["A1"]["image_sha256"] and len(got["A1"]["image_sha256"]) == 64
    assert got["A1"]["material"] == "oak"  # unknown columns are kept
    assert got["A2"]["price"] is None and got["A2"]["image"] is None
    assert got["A2"]["product_text"] == "Text Only Lamp. black."


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
    reasons = reasons_by_line(load)
    assert reasons[3] == "missing id"
    assert reasons[4].startswith("duplicate id 'ok1' (first on line 2)")
    assert reasons[5] == "unparsable price 'twelve'"
    assert reasons[6] == "invalid price '-3' (negative)"
    assert "image not found" in reasons[7]
    assert "corrupt or truncated" in reasons[8]
    assert "empty file" in reasons[9]
    assert "not an image" in reasons[10]
    assert "decompression bomb" in reasons[11]
    assert reasons[12] == "missing title"
    assert set(load.rejects.column("source").to_pylist()) == {"catalog.csv"}


def test_invalid_jsonl_lines_are_rejected_not_fatal(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "title": "A"}\n{not json}\n[1, 2]\n{"id": "b", "title": "B"}\n')
    load = load_catalog(path)
    assert load.rows_ok == 2
    assert sorted(reasons_by_line(load).items()) == [(2, "invalid JSON"),
                                                     (3, "not a JSON object")]


def test_unsupported_or_missing_catalog_is_a_clear_error(tmp_path):
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(PinshopError, match="unsupported catalog format"):
        load_catalog(tmp_path / "c.xlsx")
    with pytest.raises(PinshopError, match="catalog not found"):
        load_catalog(tmp_path / "missing.csv")


def test_product_text_is_title_category_colour_brand(tmp_path, write_catalog):
    """The text embedded for a product, as the normalize SQL writes it (a missing part is
    left out, not left empty)."""
    catalog = write_catalog([{"id": "a", "title": "Sofa", "category": "sofa", "color": "green",
                              "brand": "Forma"}, {"id": "b", "title": "Lamp"}])
    loaded = load_catalog(catalog).table
    texts = dict(zip(loaded.column("id").to_pylist(), loaded.column("product_text").to_pylist(),
                     strict=True))
    assert texts == {"a": "Sofa. sofa. green. Forma.", "b": "Lamp."}


@pytest.mark.parametrize(("price", "expected"), [
    ("12.5", Decimal("12.50")), ("$1,299.50", Decimal("1299.50")), ("€12,50", Decimal("12.50")),
    ("1.234,56 EUR", Decimal("1234.56")), ("1,234", Decimal("1234.00")), ("1e3", Decimal("1000")),
    ("0", Decimal("0")),
    # French groups with spaces, plain or no-break, also before the currency; three
    # decimals stay decimals (a numeric Parquet column, a dinar price).
    ("1 299,00 EUR", Decimal("1299.00")), ("1\u202f299,00\u202f€", Decimal("1299.00")),
    ("12,50\u00a0€", Decimal("12.50")), ("USD $1,299", Decimal("1299.00")),
    ("1.250", Decimal("1.25")), ("2.500 KWD", Decimal("2.50")), ("0.999 EUR", Decimal("1.00")),
    ("1.299.000 EUR", Decimal("1299000.00")),
])
def test_price_formats(tmp_path, price, expected):
    path = tmp_path / "c.csv"
    path.write_text(f'id,title,price\nA,Chair,"{price}"\n')
    assert rows_by_id(load_catalog(path))["A"]["price"] == expected


@pytest.mark.parametrize(("price", "reason"), [
    ("1e309", "price out of range"), ("1e30", "price out of range"),
    ("99999999999999999", "price out of range"), ("1,2,3", "unparsable price"),
    ("NaN", "unparsable price"), ("twelve", "unparsable price"), ("-1", "invalid price"),
    # 1,299 or 1.299? A two-decimal currency cannot say (it was stored as 1.30).
    ("1.299 EUR", "ambiguous price '1.299 EUR': a point between thousands or before "
                  "decimals? write 1299 or 1.30 (EUR has two decimals)"),
    ("€1.299", "ambiguous price"),
    ("$1.299", "ambiguous price '$1.299'"),  # a dollar's tenth of a cent, or 1,299 pesos?
])
def test_bad_prices_are_rejects_not_crashes(tmp_path, price, reason):
    path = tmp_path / "c.csv"
    path.write_text(f'id,title,price\nA,Chair,"{price}"\nB,Lamp,3\n')
    load = load_catalog(path)
    assert list(rows_by_id(load)) == ["B"]
    assert reasons_by_line(load)[2].startswith(reason)


def test_a_price_names_its_currency_beside_a_symbol_and_a_sale_keeps_to_it(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("id\ttitle\tprice\tsale_price\nA\tChair\t$1,299.00 USD\t\n"
                    "B\tLamp\t50.00 USD\t40.00 EUR\nC\tRug\t50.00 USD\t40.00 USD\n"
                    "D\tVase\t50.00\t40.00 GBP\n")
    load = load_catalog(path)
    rows = rows_by_id(load)
    assert (rows["A"]["price"], rows["A"]["currency"]) == (Decimal("1299.00"), "USD")
    assert rows["C"]["sale_price"] == Decimal("40.00")
    # A bare price takes the sale's currency (it had none, and the sale's went unchecked).
    assert (rows["D"]["currency"], rows["D"]["sale_price"]) == ("GBP", Decimal("40.00"))
    # A sale in another currency was stored as the price's ("40 USD").
    assert reasons_by_line(load) == {3: "sale_price '40.00 EUR' is in EUR, the price in USD"}


def test_a_currency_is_an_iso_4217_code(tmp_path):
    """XYZ, BTC, 123, EUROS and "00 €" were all stored as currencies."""
    path = tmp_path / "c.csv"
    path.write_text("id,title,price,currency\nA,a,10,XYZ\nB,b,10,btc\nC,c,10,123\n"
                    "D,d,10,EUROS\nE,e,10,00 €\nF,f,12.00 ZZZ,\nG,g,10,chf\nH,h,10 XOF,\n")
    load = load_catalog(path)
    assert {r: why for r, why in reasons_by_line(load).items()} == {
        line: f"currency '{code}' is not an ISO 4217 code (such as EUR or USD)"
        for line, code in ((2, "XYZ"), (3, "BTC"), (4, "123"), (5, "EUROS"), (6, "00 €"),
                           (7, "ZZZ"))}
    rows = rows_by_id(load)
    assert (rows["G"]["currency"], rows["H"]["currency"]) == ("CHF", "XOF")
    # A symbol or a common name for a code is that code; a priceless row's placeholder is
    # no reason to refuse the product (the review's finds).
    path.write_text("id,title,price,currency\nA,a,10,€\nB,b,10,rmb\nC,c,,n/a\n")
    load = load_catalog(path)
    assert reasons_by_line(load) == {}
    assert [rows_by_id(load)[i]["currency"] for i in "AB"] == ["EUR", "CNY"]


def test_currency_codes_are_upper_case_and_a_price_keeps_to_its_own(tmp_path):
    """`usd` was stored as written, so 10 USD -> 8 usd was a currency change and no drop;
    "12,50 EUR" beside currency USD was stored as 12.50 USD; a negative sale was
    "unparsable"; a sale ending on a date alone ended as that day began."""
    from datetime import date, timedelta

    today = date.today()
    path = tmp_path / "c.csv"
    path.write_text(
        "id,title,price,currency,sale_price,sale_price_effective_date\n"
        "A,Chair,10,usd,,\nB,Lamp,12 eur,,,\nC,Rug,\"12,50 EUR\",USD,,\n"
        "D,Vase,10,USD,-5,\n"
        f"E,Bowl,10,EUR,8,{today - timedelta(days=6)}/{today}\n"
        f"F,Cup,10,EUR,8,{today - timedelta(days=6)}/{today - timedelta(days=1)}\n")
    load = load_catalog(path)
    rows = rows_by_id(load)
    assert (rows["A"]["currency"], rows["B"]["currency"]) == ("USD", "EUR")
    assert reasons_by_line(load) == {
        4: "price '12,50 EUR' is in EUR, the currency column says USD",
        5: "invalid sale_price '-5' (negative)"}
    assert (rows["E"]["sale_price"], rows["F"]["sale_price"]) == (Decimal("8.00"), None)


def test_availability_spellings_and_sales_that_cannot_hold(tmp_path):
    """`discontinued` was kept as written and recommended as in stock (PATCH refused it);
    a sale whose dates end before they start was dropped without a word; "$12.50" with a
    "£10" sale was stored with no currency and a sale in pounds."""
    path = tmp_path / "c.csv"
    path.write_text(
        "id,title,price,currency,availability,sale_price,sale_price_effective_date\n"
        "A,Chair,10,USD,Discontinued,,\n"
        "B,Lamp,10,USD,https://schema.org/InStock,,\n"
        "C,Rug,10,USD,sold-out,,\n"
        "D,Vase,10,USD,Pre-Order,,\n"
        "E,Bowl,10,USD,maybe,,\n"
        "F,Cup,10,USD,in stock,8,2026-12-07/2026-12-01\n"
        "G,Mug,$12.50,,,£10,\n"
        "H,Jug,10,EUR,,$8,\n"
        "I,Pot,10,USD,,8,not a date\n")
    load = load_catalog(path)
    rows = rows_by_id(load)
    assert {i: rows[i]["availability"] for i in "ABCD"} == {
        "A": "out_of_stock", "B": "in_stock", "C": "out_of_stock", "D": "preorder"}
    assert reasons_by_line(load) == {
        6: "availability 'maybe' is not one of in_stock, out_of_stock, preorder, backorder "
           "(or their schema.org names, such as InStock or Discontinued)",
        7: "sale_price_effective_date '2026-12-07/2026-12-01' ends before it starts",
        8: "price '$12.50' is not in GBP",
        9: "sale_price '$8' is not in EUR"}
    assert rows["I"]["sale_price"] == Decimal("8.00")  # dates that do not parse: as given
    # A live change (PATCH /products/ID) reads the same spellings and says the same.
    from pinshop_cli.retrieval.changes import ProductChange

    assert ProductChange.parse("A", {"availability": "Discontinued"}).availability == \
        "out_of_stock"
    with pytest.raises(PinshopError) as refused:
        ProductChange.parse("A", {"availability": "maybe"})
    assert str(refused.value) == reasons_by_line(load)[6]
    with pytest.raises(PinshopError, match=r"^availability cannot be null \(a product keeps"):
        ProductChange.parse("A", {"availability": None})


def test_a_sale_above_the_price_is_a_reject(tmp_path):
    """A sale price above the price was stored, and every reader took the lower of the two
    as the price paid without a word to the merchant; a sale equal to the price stands."""
    path = tmp_path / "c.csv"
    path.write_text("id,title,price,sale_price,sale_price_effective_date\n"
                    "A,Chair,49.99 USD,59.99 USD,\nB,Lamp,20,20,\nC,Rug,20,15,\n"
                    "D,Vase,20,25,2020-01-01/2020-01-31\n"  # over: the sale is not stored
                    "E,Sofa,1399 EUR,1.299 EUR,\n")  # read as 1.30, a 99.9% sale
    load = load_catalog(path)
    assert reasons_by_line(load) == {
        2: "sale_price '59.99 USD' is above the price '49.99 USD'",
        6: "ambiguous sale_price '1.299 EUR': a point between thousands or before decimals? "
           "write 1299 or 1.30 (EUR has two decimals)"}
    assert {i: r["sale_price"] for i, r in rows_by_id(load).items()} == {
        "B": Decimal("20.00"), "C": Decimal("15.00"), "D": None}
    # A live change (PATCH /products/ID) is held to the same rule, against the row it changes.
    from pinshop_cli.retrieval.changes import ProductChange

    on_sale = {"price": Decimal("20.00"), "sale_price": Decimal("15.00")}
    ProductChange.parse("C", {"price": 15}).check_sale(on_sale)
    ProductChange.parse("C", {"price": 10, "sale_price": None}).check_sale(on_sale)
    for values in ({"price": 14.99}, {"sale_price": 21}, {"price": 10, "sale_price": 12}):
        with pytest.raises(PinshopError, match=r"^sale_price .* is above the price "):
            ProductChange.parse("C", values).check_sale(on_sale)
    # A stock change alone is not refused for prices stored before this rule.
    ProductChange.parse("C", {"availability": "out_of_stock"}).check_sale(
        {"price": Decimal("10.00"), "sale_price": Decimal("12.00")})


def test_a_feed_cut_short_and_a_product_rejected_this_time_are_said(tmp_path):
    """A download cut short removed half a catalog with only "1 rejected" to say so; a
    product whose row was rejected this time counted as delisted."""
    target, rejects = tmp_path / "catalog.parquet", tmp_path / "rejects.parquet"
    feed = tmp_path / "feed.csv"
    rows = [f"P{n},Lamp {n},{n + 1}" for n in range(400)]
    feed.write_text("id,title,price\n" + "\n".join(rows) + "\n")
    assert normalize_catalog(feed, target, rejects).notes == []
    feed.write_text("id,title,price\n" + "\n".join(rows[:200]) + "\nP300,Lamp 300,N/A\nP30")
    notes = normalize_catalog(feed, target, rejects).notes
    assert "1 of the 200 products removed have a rejected row in this file " \
           "(rejects_catalog): they are out until it is fixed" in notes
    assert "200 products (50% of the catalog) left the feed: if the file was cut short, " \
           "ingest it again whole" in notes


def test_latin1_and_mixed_encodings(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,title\nP1,Caf\xe9\n")
    load = load_catalog(latin)
    assert rows_by_id(load)["P1"]["title"] == "Café" and "Windows-1252" in load.notes[0]
    # Excel's 8-bit export writes the euro sign as 0x80: read as Latin-1 it was a control
    # character, the price unparsable and the product rejected.
    euro = tmp_path / "euro.csv"
    euro.write_bytes('id,title,price\nP1,Caf\u00e9 chair,"\u20ac12,50"\n'.encode("cp1252"))
    row = rows_by_id(load_catalog(euro))["P1"]
    assert (row["price"], row["currency"]) == (Decimal("12.50"), "EUR")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b'{"id": "A", "title": "Caf\xc3\xa9"}\n{"id": "B", "title": "Caf\xe9"}\n')
    load = load_catalog(mixed)
    assert rows_by_id(load)["A"]["title"] == "Café"
    assert reasons_by_line(load) == {2: "not valid UTF-8"}


def test_csv_structure_errors_keep_exact_line_numbers(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('id,title,price\nP1,"Two\nlines",1\nP2,Bad,"x"y\nP3,Extra,1,2\n\n'
                    'P4,Short\nP5,Fine,2\nP6,"Unclosed,3\nP7,Swallowed,4\n')
    load = load_catalog(path)
    assert {r["id"]: r["source_line"] for r in load.table.to_pylist()} == {"P1": 2, "P5": 8}
    reasons = reasons_by_line(load)
    assert reasons[4].startswith("malformed quoting") and reasons[5] == "too many fields"
    assert reasons[7] == "too few fields" and reasons[9].startswith("malformed quoting")
    assert 10 not in reasons  # P7 sits inside the unclosed quote: part of line 9's reject


def test_long_fields_bom_and_column_collisions(tmp_path):
    path = tmp_path / "c.csv"
    big = "x" * 200_000
    path.write_bytes(("\ufeffID,id ,Title,Color,color,text,line\n"
                      f"A,a2,Chair,Red,red,{big},7\n").encode())
    row = load_catalog(path).table.to_pylist()[0]
    assert row["id"] == "a2" and row["ID_2"] == "A"  # nothing collapses, nothing is lost
    assert row["color"] == "red" and row["Color_2"] == "Red"
    assert row["text"] == big and row["line"] == "7"  # user columns named like ours survive
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"id": "J1", "title": "BOM first line"}\n')
    assert list(rows_by_id(load_catalog(jsonl))) == ["J1"]


def test_output_names_never_drop_a_column():
    assert output_names(["ID", "id ", "Title", "x", "X"]) == ["ID_2", "id", "title", "x", "X_2"]
    assert output_names(["id", "source_line"]) == ["id", "source_line_2"]
    # a NUL would cut both names to "a" inside Arrow; without it they stay distinct
    assert output_names(["a\x002", "a\x002", "id"]) == ["a2", "a2_2", "id"]


def test_long_image_path_is_a_reject(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(f"id,title,image\nA,Chair,{'d/' * 200}x.jpg\nB,Lamp,\n")
    load = load_catalog(path)
    assert list(rows_by_id(load)) == ["B"] and "image" in reasons_by_line(load)[2]


def test_corrupt_parquet_and_unusable_catalogs_are_one_line_errors(tmp_path):
    bad = tmp_path / "c.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(PinshopError, match="not a readable Parquet file"):
        load_catalog(bad)
    for name, text in [("empty.csv", ""), ("noid.csv", "title\nx\n")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(PinshopError):
            load_catalog(tmp_path / name)


def test_a_catalog_with_no_usable_rows_keeps_the_existing_one(tmp_path):
    good, header_only = tmp_path / "good.csv", tmp_path / "header.csv"
    good.write_text("id,title\nA,Chair\n")
    header_only.write_text("id,title\n")
    target, rejects = tmp_path / "catalog.parquet", tmp_path / "rejects.parquet"
    with pytest.raises(PinshopError, match=r"header.csv has no usable rows \(no data rows\); "
                       "no catalog was written"):
        normalize_catalog(header_only, target, rejects)  # no catalog yet
    normalize_catalog(good, target, rejects)
    with pytest.raises(PinshopError, match="existing catalog was kept"):
        normalize_catalog(header_only, target, rejects)
    import pyarrow.parquet as pq

    assert pq.read_table(target).column("id").to_pylist() == ["A"]


def test_the_summary_counts_added_removed_and_changed_rows(tmp_path, write_catalog):
    target, rejects = tmp_path / "ws" / "catalog.parquet", tmp_path / "ws" / "rejects.parquet"
    first = [{"id": i, "title": f"Item {i}", "price": "10"} for i in "ABC"]
    summary = normalize_catalog(write_catalog(first), target, rejects)
    assert (summary.rows_added, summary.rows_removed, summary.rows_changed) == (3, 0, 0)
    second = [first[0], {**first[1], "price": "12"}, {"id": "D", "title": "Item D"}]
    summary = normalize_catalog(write_catalog(second), target, rejects)
    assert (summary.rows_added, summary.rows_removed, summary.rows_changed) == (1, 1, 1)
    shrunk = normalize_catalog(write_catalog(second[:1]), target, rejects)
    assert (shrunk.rows_added, shrunk.rows_removed, shrunk.rows_changed) == (0, 2, 0)
    # Until ingest says it reported them, they are this catalog's changes (a run killed
    # after writing it); then the same file again changes nothing.
    again = normalize_catalog(write_catalog(second[:1]), target, rejects)
    assert (again.rows_added, again.rows_removed, again.rows_changed) == (0, 2, 0)
    report_delivered(target)
    same = normalize_catalog(write_catalog(second[:1]), target, rejects)
    assert (same.rows_added, same.rows_removed, same.rows_changed) == (0, 0, 0)


def test_a_refused_csv_record_keeps_its_id(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("title,id,description\n"
                    f"Huge,P2,{'x' * (9 << 20)}\n"
                    'Broken,"P""3","bad"quote\n'
                    "Fine,P4,ok\n")
    load = load_catalog(path)
    rejects = {r["line"]: (r["id"], r["reason"]) for r in load.rejects.to_pylist()}
    assert rejects[2] == ("P2", "line longer than 8 MB")
    assert rejects[3][0] == 'P"3' and "quoting" in rejects[3][1]
    assert [r["id"] for r in load.table.to_pylist()] == ["P4"]


def test_utf16_catalog_with_emoji_blank_line_and_multiline_cell(tmp_path):
    """UTF-16 with a BOM (Excel's "Unicode text") is read as events are: through a UTF-8
    copy, so characters beyond the BMP load, and line numbers are physical lines."""
    path = tmp_path / "catalog.csv"
    path.write_bytes(("id,title,price\r\n"
                      "P1,Chair 😀,3\r\n"          # 2
                      "\r\n"                       # 3 blank
                      "P2,Short\r\n"               # 4 too few fields
                      'P3,"Two\r\nlines",4\r\n'    # 5-6 one record
                      "P4,Lamp,5\r\n").encode("utf-16"))  # 7
    load = load_catalog(path)
    assert [(r["id"], r["title"], r["source_line"]) for r in load.table.to_pylist()] == [
        ("P1", "Chair 😀", 2), ("P3", "Two\nlines", 5), ("P4", "Lamp", 7)]
    assert reasons_by_line(load) == {4: "too few fields"}
