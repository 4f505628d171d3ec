"""Merchant feeds (Merchant Center / Pinterest TSV, CSV, RSS 2.0 and Atom with the g:
namespace) and photo URLs fetched from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from pinshop_cli.io.catalog import load_catalog, normalize_catalog
from pinshop_cli.io.photo_fetch import FetchPolicy, PhotoStore

SAMPLE_PRODUCTS = Path(__file__).resolve().parents[1] / "sample_data" / "products"


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 37 % 256, 90, 200)).save(out, "JPEG")
    return out.getvalue()


class PhotoServer(BaseHTTPRequestHandler):
    """Serves good photos with ETags, and every way a photo URL goes wrong."""

    seen: Counter = Counter()  # path -> requests
    peers: set = set()  # client ports: one per connection
    bodies: Counter = Counter()  # path -> 200 responses with a body
    delay = 0.0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        path = self.path
        type(self).seen[path] += 1
        type(self).peers.add(self.client_address[1])
        if path.startswith("/ok/"):
            time.sleep(type(self).delay)
            etag = f'"{path}"'
            if self.headers.get("If-None-Match") == etag:
                return self._send(304, b"")
            type(self).bodies[path] += 1
            return self._send(200, _jpeg(len(path)), "image/jpeg", {"ETag": etag})
        if path.startswith("/products/"):  # the sample catalog's real product photos
            if self.headers.get("If-Modified-Since"):
                return self._send(304, b"")
            type(self).bodies[path] += 1
            photo = SAMPLE_PRODUCTS / Path(path).name
            return self._send(200, photo.read_bytes(), "image/jpeg",
                              {"Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT"})
        if path == "/missing.jpg":
            return self._send(404, b"gone", "text/plain")
        if path == "/broken.jpg":
            return self._send(500, b"oops", "text/plain")
        if path == "/slow.jpg":  # past POLICY's read timeout, each of the two tries
            time.sleep(4.5)
            return self._send(200, _jpeg(1), "image/jpeg")
        if path == "/drip.jpg":  # a byte at a time: every read is quick, the whole is not
            body = _jpeg(4)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body[:30]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
            return None
        if path == "/untyped.jpg":  # a storage bucket's way: a photo as untyped bytes
            return self._send(200, _jpeg(5), "application/octet-stream")
        if path == "/untyped.txt":
            return self._send(200, b"not a photo at all", None)
        if path == "/page.jpg":
            return self._send(200, b"<html>hi</html>", "text/html; charset=utf-8")
        if path == "/loop.jpg":
            return self._send(302, b"", None, {"Location": "/loop.jpg"})
        if path == "/moved.jpg":
            return self._send(301, b"", None, {"Location": "/ok/target.jpg"})
        if path == "/huge.jpg":
            return self._send(200, _jpeg(2) + b"\0" * 200_000, "image/jpeg")
        if path == "/truncated.jpg":
            return self._send(200, _jpeg(3)[:300], "image/jpeg")
        if path == "/empty.jpg":
            return self._send(200, b"", "image/jpeg")
        self._send(404, b"", "text/plain")

    def _send(self, status: int, body: bytes, kind: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


@pytest.fixture()
def server():
    PhotoServer.seen, PhotoServer.bodies, PhotoServer.delay = Counter(), Counter(), 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PhotoServer)
    httpd.daemon_threads = True
    httpd.handle_error = lambda *args: None  # a client that hung up on a stall or a cap
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A read timeout well above a loaded machine's answer time: at 0.3 s, a 404 answered late
# under load was retried as a timeout, and the one-request count failed.
POLICY = FetchPolicy(workers=8, per_host=4, connect_timeout=2.0, read_timeout=2.0, retries=1,
                     backoff=0.05, max_redirects=3, max_bytes=100_000, download_timeout=1.0)

TSV_HEADER = ("id\ttitle\tdescription\tlink\timage_link\tprice\tsale_price\tavailability\t"
              "product_type\titem_group_id\tcolor\tsize\tgtin\tcondition\tcustom_label_0\n")


def _tsv_row(n: int, image: str, price: str = "49.99 USD", stock: str = "in stock",
             sale: str = "39.99 USD") -> str:
    return (f"SKU-{n}\tLinen sofa {n}\tA soft sofa\thttps://shop.example/p/{n}\t{image}\t"
            f"{price}\t{sale}\t{stock}\tHome & Garden > Furniture > Sofas\tG-{n // 2}\t"
            f"green\tL\t0001234{n:05d}\tnew\tsummer\n")


def test_merchant_center_tsv_maps_the_public_feed_fields(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"  # Merchant Center TSV feeds often carry .txt names
    feed.write_text(TSV_HEADER + _tsv_row(1, "", stock="in stock")
                    + _tsv_row(2, "", "EUR 12,50", "out_of_stock", sale="EUR 9,99")
                    + _tsv_row(3, "", "twelve dollars")
                    + _tsv_row(4, "", "10.00 USD", "preorder", sale="")
                    + _tsv_row(5, "", "12 abc"))  # not a currency code: refused, not read
    loaded = load_catalog(feed)
    rows = {r["id"]: r for r in loaded.table.to_pylist()}
    assert sorted(rows) == ["SKU-1", "SKU-2", "SKU-4"]
    one = rows["SKU-1"]
    assert (one["url"], one["price"], one["currency"], one["sale_price"]) == (
        "https://shop.example/p/1", Decimal("49.99"), "USD", Decimal("39.99"))
    assert one["category"] == "sofas"
    assert one["product_type"] == "Home & Garden > Furniture > Sofas"  # the full path kept
    assert one["availability"] == "in_stock"
    assert (one["item_group_id"], one["size"], one["gtin"], one["condition"],
            one["custom_label_0"]) == ("G-0", "L", "000123400001", "new", "summer")
    assert (rows["SKU-2"]["price"], rows["SKU-2"]["currency"]) == (Decimal("12.50"), "EUR")
    assert rows["SKU-2"]["availability"] == "out_of_stock"
    assert rows["SKU-4"]["availability"] == "preorder"
    assert [(r["id"], r["reason"]) for r in loaded.rejects.to_pylist()] == [
        ("SKU-3", "unparsable price 'twelve dollars'"), ("SKU-5", "unparsable price '12 abc'")]


def test_a_row_without_product_type_takes_its_google_product_category(tmp_path: Path
                                                                       ) -> None:
    """Feeds fill product_type on some items only: the fallback is per row, not per file."""
    feed = tmp_path / "feed.tsv"
    feed.write_text("id\ttitle\tprice\tproduct_type\tgoogle_product_category\n"
                    "T1\tLamp\t10.00 USD\t\tHome & Garden > Lighting > Lamps\n"
                    "T2\tSofa\t20.00 USD\tLiving > Sofas\tFurniture > Sofas\n"
                    "T3\tRug\t30.00 USD\t\t\n")
    rows = {r["id"]: r["category"] for r in load_catalog(feed).table.to_pylist()}
    assert rows == {"T1": "lamps", "T2": "sofas", "T3": None}


def test_a_category_path_keeps_its_last_named_segment(tmp_path: Path) -> None:
    """A trailing ">" (or markup with ">" in it) left the category empty, without a note."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text('id,title,category\nA,a,Home > Benches >\nB,b,"chair\'><b>x</b>"\n'
                       "C,c,>\n")
    rows = {r["id"]: r["category"] for r in load_catalog(catalog).table.to_pylist()}
    assert rows == {"A": "benches", "B": "x</b", "C": None}


def test_euro_and_pound_signs_name_their_currency(tmp_path: Path) -> None:
    """€ and £ name one currency each; $ and ¥ do not (USD or CAD, JPY or CNY), so a feed
    moving between "€12,50" and "12.50 EUR" keeps comparing like with like."""
    feed = tmp_path / "feed.csv"
    feed.write_text('id,title,price\nA,a,"€12,50"\nB,b,£20.00\nC,c,$1299.00\nD,d,20 €\n')
    rows = {r["id"]: (r["price"], r["currency"]) for r in load_catalog(feed).table.to_pylist()}
    assert rows == {"A": (Decimal("12.50"), "EUR"), "B": (Decimal("20.00"), "GBP"),
                    "C": (Decimal("1299.00"), None), "D": (Decimal("20.00"), "EUR")}


RSS = """<?xml version="1.0"?>
<rss xmlns:g="http://base.google.com/ns/1.0" version="2.0"><channel>
<title>Shop</title><link>https://shop.example</link><description>feed</description>
{items}</channel></rss>"""
RSS_ITEM = """<item><g:id>A{n}</g:id><title>Oak table {n}</title>
<link>https://shop.example/t/{n}</link><description>Solid &amp; oiled</description>
<g:image_link>https://img.example/{n}.jpg</g:image_link>
<g:additional_image_link>https://img.example/{n}b.jpg</g:additional_image_link>
<g:additional_image_link>https://img.example/{n}c.jpg</g:additional_image_link>
<g:price>129.00 USD</g:price><g:availability>backorder</g:availability>
<g:sale_price>99.00 USD</g:sale_price>
<g:sale_price_effective_date>{sale_dates}</g:sale_price_effective_date>
<g:google_product_category>Furniture &gt; Tables</g:google_product_category>
<g:shipping><g:country>US</g:country><g:price>5.00 USD</g:price></g:shipping></item>"""
ATOM = """<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">
<title>Shop</title>{items}</feed>"""
ATOM_ENTRY = """<entry><g:id>A{n}</g:id><title>Oak table {n}</title>
<link rel="self" href="https://shop.example/feed/{n}"/>
<link href="https://shop.example/t/{n}"/><summary>Solid &amp; oiled</summary>
<g:image_link>https://img.example/{n}.jpg</g:image_link>
<g:price>129.00 USD</g:price><g:availability>backorder</g:availability>
<g:google_product_category>Furniture &gt; Tables</g:google_product_category></entry>"""


def test_a_repeated_image_link_is_one_more_photo_not_one_joined_url(tmp_path: Path) -> None:
    """Two <g:image_link> were joined into "b.jpg,a.jpg", fetched as one URL and reported
    as HTTP 404. The spec's image_link is one photo; more are additional_image_link."""
    feed = tmp_path / "feed.xml"
    feed.write_text(RSS.format(items=(
        "<item><g:id>X4</g:id><title>Lamp</title><title>Lamp, again</title>"
        "<g:price>10.00 EUR</g:price>"
        "<g:image_link>https://img.example/b.jpg</g:image_link>"
        "<g:additional_image_link>https://img.example/c.jpg</g:additional_image_link>"
        "<g:image_link>https://img.example/a.jpg</g:image_link>"
        "<g:promotion_id>SPRING</g:promotion_id><g:promotion_id>SALE</g:promotion_id>"
        "<g:tax><g:country>US</g:country><g:rate>5</g:rate></g:tax>"
        "<g:tax><g:country>CA</g:country><g:rate>7</g:rate></g:tax></item>")))
    loaded = load_catalog(feed)
    row = loaded.table.to_pylist()[0]
    assert row["image_link"] == "https://img.example/b.jpg"
    assert row["additional_image_link"] == "https://img.example/c.jpg,https://img.example/a.jpg"
    assert row["title"] == "Lamp"  # a field the spec does not repeat keeps its first value
    assert "1 item of feed.xml gave <title> more than once (the spec gives it once): the " \
           "first value kept" in loaded.notes  # and says so (it was dropped unsaid)
    # Fields the spec repeats (a tax per region, several promotions) are no such note.
    assert not [n for n in loaded.notes if "<tax>" in n or "<promotion_id>" in n]


def test_rss_and_atom_feeds_read_like_the_tsv(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rss, atom = tmp_path / "feed.xml", tmp_path / "feed.atom"
    dates = ["2020-01-01T00:00-08:00/2020-01-31T23:59-08:00",  # over: no sale
             "2020-01-01T00:00Z/2999-12-31T23:59Z", "not a date"]
    rss.write_text(RSS.format(items="".join(RSS_ITEM.format(n=n, sale_dates=dates[n])
                                            for n in range(3))))
    atom.write_text(ATOM.format(items="".join(ATOM_ENTRY.format(n=n) for n in range(3))))
    for feed in (rss, atom):
        loaded = load_catalog(feed)
        rows = loaded.table.to_pylist()
        assert [r["id"] for r in rows] == ["A0", "A1", "A2"]
        first = rows[0]
        assert (first["title"], first["url"], first["price"], first["currency"]) == (
            "Oak table 0", "https://shop.example/t/0", Decimal("129.00"), "USD")
        assert (first["category"], first["availability"]) == ("tables", "backorder")
        assert first["image_link"] == "https://img.example/0.jpg"
        assert first["image"] is None  # not fetched without a workspace: left out, kept
        assert loaded.rejects.num_rows == 0
    rows = load_catalog(rss).table.to_pylist()
    assert [r["sale_price"] for r in rows] == [None, Decimal("99.00"), Decimal("99.00")]
    assert rows[0]["additional_image_link"] == ("https://img.example/0b.jpg,"
                                                "https://img.example/0c.jpg")
    assert rows[0]["shipping"] == "US:5.00 USD"
    # A field first seen after the first batch of items is a column like any other.
    late = tmp_path / "late.xml"
    late.write_text(RSS.format(items="".join(RSS_ITEM.format(n=n, sale_dates=dates[1])
                                             for n in range(2))
                    + "<item><g:id>A9</g:id><title>Late</title><g:mpn>M-9</g:mpn></item>"))
    monkeypatch.setattr("pinshop_cli.io.feeds.XML_BATCH", 2)
    rows = load_catalog(late).table.to_pylist()
    assert [(r["id"], r["mpn"], r["price"]) for r in rows] == [
        ("A0", None, Decimal("129.00")), ("A1", None, Decimal("129.00")), ("A9", "M-9", None)]
    bad = tmp_path / "bad.xml"
    bad.write_text("<rss><channel><item><g:id>1</item>")
    with pytest.raises(Exception, match="not well-formed XML"):
        load_catalog(bad)


def test_photo_urls_fetched_failures_kept_and_unchanged_never_downloaded_twice(
        tmp_path: Path, server: str) -> None:
    refused = f"http://127.0.0.1:{_closed_port()}/a.jpg"
    cases = {
        "ok1": (f"{server}/ok/1.jpg", None),
        "ok2": (f"{server}/ok/2.jpg", None),
        "moved": (f"{server}/moved.jpg", None),
        "missing": (f"{server}/missing.jpg", "HTTP 404"),
        "broken": (f"{server}/broken.jpg", "HTTP 500"),
        "slow": (f"{server}/slow.jpg", "timed out after 2 s"),
        "drip": (f"{server}/drip.jpg", "download took over 1 s"),
        "untyped": (f"{server}/untyped.jpg", None),
        "untyped_text": (f"{server}/untyped.txt", "not an image (unrecognized format)"),
        "page": (f"{server}/page.jpg", "not an image: text/html"),
        "loop": (f"{server}/loop.jpg", "too many redirects"),
        "huge": (f"{server}/huge.jpg", "larger than 0.0953674 MB"),
        "truncated": (f"{server}/truncated.jpg", "unreadable image: Truncated"),
        "empty": (f"{server}/empty.jpg", "empty body"),
        "refused": (refused, "connection refused"),
        # Never sent: the client refuses the URL (one malformed URL crashed the ingest).
        "malformed": ("http://[::1/x.jpg", "not an http(s) URL"),
        "ftp": ("ftp://127.0.0.1/x.jpg", "not an http(s) URL"),
    }
    feed = tmp_path / "feed.tsv"
    feed.write_text(TSV_HEADER + "".join(
        _tsv_row(n, url).replace(f"SKU-{n}\t", f"{name}\t", 1)
        for n, (name, (url, _)) in enumerate(cases.items())))
    store = PhotoStore(tmp_path / "ws" / "photos", POLICY)
    summary = normalize_catalog(feed, tmp_path / "ws" / "catalog.parquet",
                                tmp_path / "ws" / "rejects.parquet", photos=store)
    assert (summary.rows_ok, summary.rows_rejected) == (len(cases), 0)  # every product kept
    import pyarrow.parquet as pq

    rows = {r["id"]: r for r in pq.read_table(tmp_path / "ws" / "catalog.parquet").to_pylist()}
    failures = {r["id"]: r["reason"] for r in summary.photo_rejects.to_pylist()}
    for name, (_, reason) in cases.items():
        if reason is None:
            assert Path(rows[name]["image"]).is_file() and rows[name]["image_sha256"]
            assert Path(rows[name]["image"]).name == rows[name]["image_sha256"]
        else:
            assert rows[name]["image"] is None, name  # text-only until the next ingest
            assert failures[name].startswith(reason), (name, failures[name])
    assert PhotoServer.seen["/broken.jpg"] == 2  # one retry on 5xx
    assert PhotoServer.seen["/missing.jpg"] == 1  # none on 404
    assert PhotoServer.seen["/drip.jpg"] == 1  # none on a drip: it would drip again
    assert PhotoServer.seen["/loop.jpg"] == 4  # the first try and 3 redirects

    before = PhotoServer.bodies.copy()
    again = normalize_catalog(feed, tmp_path / "ws" / "catalog.parquet",
                              tmp_path / "ws" / "rejects.parquet", photos=store)
    assert PhotoServer.bodies == before  # unchanged photos: 304s, no body downloaded again
    assert PhotoServer.seen["/missing.jpg"] == 2  # a failed photo is retried next time
    assert again.photo_rejects.num_rows == summary.photo_rejects.num_rows
    assert not list(store.parts_dir.glob("*.parquet"))  # compacted into urls.parquet


def test_a_damaged_photo_state_is_left_out_and_written_anew(tmp_path: Path, server: str
                                                             ) -> None:
    """photos/urls.parquet truncated, or another table copied over it: the ingest goes on
    (it raised ArrowInvalid, or a schema mismatch), says so, and asks for the photos again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    feed = tmp_path / "feed.tsv"
    feed.write_text(TSV_HEADER + _tsv_row(1, f"{server}/ok/1.jpg"))
    store = PhotoStore(tmp_path / "ws" / "photos", POLICY)
    target = (tmp_path / "ws" / "catalog.parquet", tmp_path / "ws" / "rejects.parquet")
    normalize_catalog(feed, *target, photos=store)
    for damage in (lambda p: p.write_bytes(p.read_bytes()[:50]),
                   lambda p: pq.write_table(pa.table({"x": [1]}), p)):
        damage(store.state_path)
        store = PhotoStore(tmp_path / "ws" / "photos", POLICY)
        summary = normalize_catalog(feed, *target, photos=store)
        assert summary.rows_ok == 1 and summary.photo_rejects.num_rows == 0
        assert any("urls.parquet was damaged" in note for note in summary.notes)
        assert PhotoStore(store.root, POLICY).known().num_rows == 1  # written anew


def test_a_file_url_is_a_local_photo(tmp_path: Path) -> None:
    photo = next(SAMPLE_PRODUCTS.glob("*.jpg"))
    feed = tmp_path / "feed.tsv"
    feed.write_text(TSV_HEADER + _tsv_row(1, photo.as_uri()) + _tsv_row(2, "file:///nope.jpg"))
    summary = normalize_catalog(feed, tmp_path / "catalog.parquet", tmp_path / "rejects.parquet")
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "catalog.parquet").to_pylist()
    assert [(r["id"], r["image"]) for r in rows] == [("SKU-1", str(photo))]
    assert summary.rows_rejected == 1  # a local photo that is not there, as a plain path


def test_a_killed_fetch_resumes_without_downloading_again(tmp_path: Path, server: str) -> None:
    PhotoServer.delay = 0.05
    urls = [f"{server}/ok/{n}.jpg" for n in range(24)]
    script = (
        "import sys\n"
        "from pinshop_cli.io.photo_fetch import FetchPolicy, PhotoStore\n"
        "PhotoStore(sys.argv[1], FetchPolicy(workers=1, per_host=1, part_rows=2))"
        ".fetch(sys.argv[2:])\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "photos"), *urls])
    deadline = time.monotonic() + 20
    while sum(PhotoServer.bodies.values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    first = sum(PhotoServer.bodies.values())
    assert 10 <= first < len(urls)
    PhotoServer.delay = 0.0
    result = PhotoStore(tmp_path / "photos", POLICY).fetch(urls)
    assert result.column("problem").null_count == len(urls)
    # Only the photos past the last saved part (at most part_rows + the one in flight)
    # are downloaded twice; every other URL was a 304 or a first download.
    assert sum(PhotoServer.bodies.values()) <= len(urls) + 3
    assert max(PhotoServer.bodies.values()) <= 2


def test_price_history_keeps_first_rows_and_changes_only(tmp_path: Path) -> None:
    from datetime import datetime

    from pinshop_cli.io.history import changes, record_snapshot
    from pinshop_cli.sql import run_sql
    from pinshop_cli.workspace.layout import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True)
    feed = tmp_path / "feed.tsv"

    def snapshot(day: int, rows: list[tuple[int, str, str]]) -> int:
        feed.write_text(TSV_HEADER + "".join(_tsv_row(n, "", price, stock, sale="")
                                             for n, price, stock in rows))
        normalize_catalog(feed, ws.catalog, ws.rejects_dir / "catalog.parquet")
        return record_snapshot(ws.root, ws.catalog, datetime(2026, 11, day))

    assert snapshot(1, [(1, "129.00 USD", "in_stock"), (2, "20.00 USD", "in_stock"),
                        (3, "5.00 USD", "out_of_stock")]) == 3
    assert snapshot(2, [(1, "129.00 USD", "in_stock"), (2, "20.00 USD", "in_stock"),
                        (3, "5.00 USD", "out_of_stock")]) == 0  # nothing changed
    with pytest.raises(Exception, match="not a date"):
        changes(ws.root, "yesterday")
    assert snapshot(3, [(1, "29.00 USD", "in_stock"), (2, "20.00 USD", "out_of_stock"),
                        (3, "5.00 USD", "in stock"), (4, "1.00 USD", "in_stock")]) == 4
    found = {(c.id, c.kind) for c in changes(ws.root)}
    # Drops first (they came after "back in stock", alphabetically).
    assert [(c.id, c.kind) for c in changes(ws.root)] == [
        ("SKU-1", "price drop"), ("SKU-2", "sold out"), ("SKU-3", "back in stock")]
    assert {(c.id, c.kind) for c in changes(ws.root, "2026-11-02")} == found
    assert {c.title for c in changes(ws.root)} == {"Linen sofa 1", "Linen sofa 2",
                                                   "Linen sofa 3"}
    assert changes(ws.root, "2026-11-04") == []
    # Since before the history starts: each product from its first row (SKU-4, first seen on
    # the 3rd, has not changed since); before, nothing showed without an earlier row.
    assert {(c.id, c.kind) for c in changes(ws.root, "2026-10-01")} == found
    history = run_sql("SELECT id, count(*) FROM price_history GROUP BY id ORDER BY id", ws.root)
    assert history.rows == [("SKU-1", 2), ("SKU-2", 2), ("SKU-3", 2), ("SKU-4", 1)]
    # A snapshot that only adds a product: the last one that changed is shown (it said
    # "no price or stock changes").
    assert snapshot(4, [(1, "29.00 USD", "in_stock"), (2, "20.00 USD", "out_of_stock"),
                        (3, "5.00 USD", "in stock"), (4, "1.00 USD", "in_stock"),
                        (5, "2.00 USD", "in_stock")]) == 1
    latest = changes(ws.root)
    assert {(c.id, c.kind) for c in latest} == found
    assert latest.notes == ["the latest snapshot (2026-11-04 00:00) changed no price or "
                            "stock: showing the last one that did"]

    import json

    from typer.testing import CliRunner

    from commands.main import app

    printed = CliRunner().invoke(app, ["changes", "--json", "--since", "2026-11-02",
                                       "-w", str(ws.root)])
    assert printed.exit_code == 0, printed.output
    assert {(c["id"], c["kind"]) for c in json.loads(printed.stdout)} == found
    # The table fits 80 columns: only titles wrap; a change reads "was → now".
    shown = CliRunner().invoke(app, ["changes", "--since", "2026-11-02", "-w", str(ws.root)],
                               env={"COLUMNS": "80"})
    assert shown.exit_code == 0 and "…" not in shown.stdout, shown.stdout
    assert "2026-11-03" in shown.stdout and "129.00 → 29.00" in shown.stdout
    assert max(map(len, shown.stdout.splitlines())) <= 80


def test_a_product_whose_row_is_rejected_one_week_is_not_removed(tmp_path: Path) -> None:
    """Its price was 'N/A' for a week: the history said "removed", then "back in the feed"."""
    from datetime import datetime

    from pinshop_cli.io.history import changes, record_snapshot
    from pinshop_cli.sql import run_sql
    from pinshop_cli.workspace.layout import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True)
    feed = tmp_path / "feed.tsv"
    for day, second in ((1, "49.99 USD"), (2, "N/A"), (3, "49.99 USD")):
        feed.write_text(TSV_HEADER + _tsv_row(1, "") + _tsv_row(2, "", second))
        normalize_catalog(feed, ws.catalog, ws.rejects_dir / "catalog.parquet")
        record_snapshot(ws.root, ws.catalog, datetime(2026, 11, day))
        assert list(changes(ws.root, "2026-10-01")) == []
    assert run_sql("SELECT count(*) FROM price_history WHERE id = 'SKU-2'",
                   ws.root).rows == [(1,)]


def test_a_preorder_that_runs_out_is_sold_out(tmp_path: Path) -> None:
    from datetime import datetime

    from pinshop_cli.io.history import changes, record_snapshot
    from pinshop_cli.workspace.layout import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True)
    feed = tmp_path / "feed.tsv"
    for day, stock in ((1, "preorder"), (2, "out_of_stock")):
        feed.write_text(TSV_HEADER + _tsv_row(1, "", stock=stock) + _tsv_row(2, "", stock=stock
                        .replace("preorder", "backorder")))
        normalize_catalog(feed, ws.catalog, ws.rejects_dir / "catalog.parquet")
        record_snapshot(ws.root, ws.catalog, datetime(2026, 11, day))
    assert [(c.id, c.kind) for c in changes(ws.root)] == [("SKU-1", "sold out"),
                                                          ("SKU-2", "sold out")]


def test_a_product_leaving_the_feed_gets_a_removed_row_and_changes_are_limited(
        tmp_path: Path) -> None:
    from datetime import datetime

    from typer.testing import CliRunner

    from commands.main import app
    from pinshop_cli.io.history import REMOVED, changes, record_snapshot
    from pinshop_cli.sql import run_sql
    from pinshop_cli.workspace.layout import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True)
    feed = tmp_path / "feed.tsv"

    def snapshot(day: int, rows: list[tuple[int, str]]) -> int:
        feed.write_text(TSV_HEADER + "".join(_tsv_row(n, "", price) for n, price in rows))
        normalize_catalog(feed, ws.catalog, ws.rejects_dir / "catalog.parquet")
        return record_snapshot(ws.root, ws.catalog, datetime(2026, 11, day))

    assert snapshot(1, [(n, "129.00 USD") for n in range(1, 6)]) == 5
    assert snapshot(2, [(1, "129.00 USD"), (2, "129.00 USD")]) == 3  # 3, 4, 5 left
    assert [(c.id, c.title, c.kind, c.old_price, c.new_availability)
            for c in changes(ws.root)] == [  # named though no longer in the catalog
        (f"SKU-{n}", f"Linen sofa {n}", "removed", 39.99, REMOVED) for n in (3, 4, 5)]
    assert snapshot(3, [(1, "129.00 USD"), (2, "129.00 USD")]) == 0  # removed once only
    # A batch of some rows (a live change) is not the whole catalog: it removes nothing.
    import pyarrow.parquet as pq

    part = tmp_path / "one.parquet"
    pq.write_table(pq.read_table(ws.catalog).slice(0, 1), part)
    assert record_snapshot(ws.root, part, datetime(2026, 11, 4)) == 0
    assert snapshot(5, [(1, "99.00 USD"), (2, "129.00 USD"), (3, "129.00 USD")]) == 2
    assert {(c.id, c.kind) for c in changes(ws.root)} == {("SKU-3", "back in the feed")}
    history = run_sql("SELECT id, strftime(seen_at, '%d'), availability FROM price_history "
                      "WHERE id = 'SKU-3' ORDER BY seen_at", ws.root).rows
    assert history == [("SKU-3", "01", "in_stock"), ("SKU-3", "02", REMOVED),
                       ("SKU-3", "05", "in_stock")]

    since = changes(ws.root, "2026-11-02", limit=1)
    assert since.total == 2 and [c.id for c in since] == ["SKU-4"]  # SKU-3 is as it was
    runner = CliRunner()
    shown = runner.invoke(app, ["changes", "--since", "2026-11-02", "--limit", "1", "--json",
                                "-w", str(ws.root)])
    assert shown.exit_code == 0, shown.output
    assert [c["id"] for c in json.loads(shown.stdout)] == ["SKU-4"]
    assert "showing 1 of 2 changes" in shown.stderr
    assert runner.invoke(app, ["changes", "--limit", "0", "-w", str(ws.root)]).exit_code == 2


def test_a_damaged_history_is_said_and_repaired_and_prices_never_cross_currencies(
        tmp_path: Path) -> None:
    """A damaged part's rows are left out of `changes`, which says so; a garbled manifest
    is an error naming `pinshop index`, which (as ingest does) lists the parts again. A
    price in another currency is no 'before' for the new one."""
    from datetime import datetime

    import pyarrow.parquet as pq

    from pinshop_cli.errors import DamagedFileError
    from pinshop_cli.io.history import changes, history_store, record_snapshot
    from pinshop_cli.workspace.embeddings import repair_stores
    from pinshop_cli.workspace.layout import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True)
    feed = tmp_path / "feed.csv"

    def snapshot(day: int, rows: list[tuple[int, str]]) -> None:
        feed.write_text("id,title,price,currency,availability\n" + "".join(
            f"SKU-{n},Sofa {n},{price}\n" for n, price in rows))
        normalize_catalog(feed, ws.catalog, ws.rejects_dir / "catalog.parquet")
        record_snapshot(ws.root, ws.catalog, datetime(2026, 11, day))

    snapshot(1, [(1, "100,USD,in_stock"), (2, "100,USD,out_of_stock")])
    snapshot(2, [(1, "90,USD,in_stock"), (2, "100,USD,out_of_stock")])
    snapshot(3, [(1, "90,USD,in_stock"), (2, "80,EUR,in_stock")])
    assert [(c.id, c.kind, c.old_price, c.new_price, c.currency) for c in changes(ws.root)
            ] == [("SKU-2", "back in stock", None, 80.0, "EUR")]
    store = history_store(ws.root)
    day2 = next(p for p in store.files() if pq.read_table(p).num_rows == 1
                and pq.read_table(p).column("price")[0].as_py() == 90)
    day2.write_bytes(day2.read_bytes()[:100])
    found = changes(ws.root, "2026-11-01")
    assert any(f"{day2} is damaged" in note and "cannot be made again" in note
               for note in found.notes), found.notes
    assert any("its rows cannot be made again (the file is kept aside" in note
               for note in repair_stores(ws))
    assert len(list(store.directory.glob("*.damaged-*"))) == 1  # never deleted
    assert not changes(ws.root, "2026-11-01").notes
    store.manifest_path.write_text("{garbage")
    with pytest.raises(DamagedFileError, match="run `pinshop index`"):
        changes(ws.root)
    assert any("listed again" in note for note in repair_stores(ws))
    assert [c.kind for c in changes(ws.root, "2026-11-01")] == ["back in stock"]


def test_history_parts_written_before_titles_were_kept_still_read(tmp_path: Path) -> None:
    from datetime import datetime

    import pyarrow.parquet as pq

    from pinshop_cli.io.history import changes, history_store, record_snapshot
    from pinshop_cli.sql import run_sql
    from pinshop_cli.workspace.layout import Workspace

    first, ws = (Workspace.open(tmp_path / name, create=True) for name in ("first", "ws"))
    feed = tmp_path / "feed.tsv"
    feed.write_text(TSV_HEADER + "".join(_tsv_row(n, "") for n in (1, 2)))
    normalize_catalog(feed, first.catalog, first.rejects_dir / "catalog.parquet")
    record_snapshot(first.root, first.catalog, datetime(2026, 11, 1))
    (written,) = history_store(first.root).files()  # as an earlier pinshop wrote it
    untitled = history_store(ws.root)
    untitled.ensure()
    untitled.append(pq.read_table(written).drop_columns(["title"]), "20261101")
    feed.write_text(TSV_HEADER + _tsv_row(1, "", "19.99 USD", "out of stock", sale=""))
    normalize_catalog(feed, ws.catalog, ws.rejects_dir / "catalog.parquet")
    assert record_snapshot(ws.root, ws.catalog, datetime(2026, 11, 2)) == 2
    assert {(c.id, c.kind, c.title) for c in changes(ws.root)} == {
        ("SKU-1", "price drop", "Linen sofa 1"), ("SKU-1", "sold out", "Linen sofa 1"),
        ("SKU-2", "removed", None)}  # the earlier pinshop kept no title of SKU-2
    rows = run_sql("SELECT id, title FROM price_history ORDER BY seen_at, id", ws.root).rows
    assert rows == [("SKU-1", None), ("SKU-2", None), ("SKU-1", "Linen sofa 1"),
                    ("SKU-2", None)]


SHOPIFY_ROWS = [["Handle",
                 "Title",
                 "Body (HTML)",
                 "Vendor",
                 "Product Category",
                 "Type",
                 "Tags",
                 "Published",
                 "Option1 Name",
                 "Option1 Value",
                 "Option2 Name",
                 "Option2 Value",
                 "Variant SKU",
                 "Variant Inventory Qty",
                 "Variant Inventory Policy",
                 "Variant Price",
                 "Variant Compare At Price",
                 "Image Src",
                 "Image Position",
                 "Variant Image",
                 "Status"],
                ["linen-sofa",
                 "Linen Sofa",
                 "<p>Soft <b>linen</b></p>",
                 "Nordhem",
                 "Home & Garden > Furniture > Sofas",
                 "Sofa",
                 "linen, sofa",
                 "TRUE",
                 "Color",
                 "Green",
                 "Size",
                 "2-seat",
                 "SOFA-G2",
                 "4",
                 "deny",
                 "899.00",
                 "999.00",
                 "https://cdn.example/sofa.jpg",
                 "1",
                 "",
                 "active"],
                ["linen-sofa",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "Green",
                 "",
                 "3-seat",
                 "SOFA-G3",
                 "0",
                 "deny",
                 "1099.00",
                 "",
                 "https://cdn.example/sofa-side.jpg",
                 "2",
                 "",
                 ""],
                ["linen-sofa",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "Blue",
                 "",
                 "3-seat",
                 "SOFA-B3",
                 "0",
                 "continue",
                 "1099.00",
                 "",
                 "",
                 "",
                 "https://cdn.example/sofa-blue.jpg",
                 ""],
                ["linen-sofa",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "https://cdn.example/sofa-back.jpg",
                 "3",
                 "",
                 ""],
                ["oak-stool",
                 "Oak Stool",
                 "Solid oak",
                 "Nordhem",
                 "",
                 "Stool",
                 "",
                 "TRUE",
                 "Title",
                 "Default Title",
                 "",
                 "",
                 "",
                 "7",
                 "deny",
                 "not-a-price",
                 "",
                 "https://cdn.example/stool.jpg",
                 "1",
                 "",
                 "active"],
                ["",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "",
                 "ORPHAN",
                 "1",
                 "deny",
                 "5.00",
                 "",
                 "",
                 "",
                 "",
                 ""]]


def test_shopify_export_is_one_product_per_variant_grouped_by_handle(tmp_path: Path) -> None:
    export = tmp_path / "products_export.csv"
    with open(export, "w", newline="") as out:
        csv.writer(out).writerows(SHOPIFY_ROWS)
    loaded = load_catalog(export)
    rows = {r["id"]: r for r in loaded.table.to_pylist()}
    assert sorted(rows) == ["SOFA-B3", "SOFA-G2", "SOFA-G3"]
    blue = rows["SOFA-B3"]
    assert (blue["title"], blue["brand"], blue["item_group_id"]) == (
        "Linen Sofa", "Nordhem", "linen-sofa")
    assert (blue["color"], blue["size"], blue["price"]) == ("Blue", "3-seat", Decimal("1099.00"))
    assert blue["availability"] == "backorder"  # none left, but sold on
    assert rows["SOFA-G2"]["availability"] == "in_stock"
    assert rows["SOFA-G3"]["availability"] == "out_of_stock"
    assert blue["description"] == "Soft linen"
    assert (blue["category"], blue["product_type"]) == ("sofas", "Sofa")
    assert blue["additional_image_link"] == "https://cdn.example/sofa-back.jpg"
    assert blue["variant compare at price"] is None
    assert rows["SOFA-G2"]["variant compare at price"] == "999.00"
    reasons = {r["id"]: r["reason"] for r in loaded.rejects.to_pylist()}
    assert reasons == {"oak-stool-1": "unparsable price 'not-a-price'",
                       "ORPHAN": "missing Handle"}


def test_ingest_embeds_fetched_photos_and_records_failed_ones(tmp_path: Path, server: str,
                                                              tiny_clip: str) -> None:
    from pinshop_cli import IngestConfig, ingest
    from pinshop_cli.sql import run_sql

    feed = tmp_path / "feed.tsv"
    feed.write_text(TSV_HEADER + _tsv_row(1, f"{server}/products/P001.jpg")
                    + _tsv_row(2, f"{server}/products/P002.jpg")
                    + _tsv_row(3, f"{server}/missing.jpg"))
    root = tmp_path / "ws"
    config = IngestConfig(embedder=tiny_clip)  # plumbing: a small CLIP, random weights
    summary = ingest(root, feed, config=config)
    assert (summary.rows_ok, summary.embedded["product_image"]) == (3, 2)
    assert summary.embedded["product_text"] == 3
    assert run_sql("SELECT id, reason FROM rejects_product_images", root).rows == [
        ("SKU-3", "HTTP 404")]
    assert run_sql("SELECT count(*) FROM price_history", root).rows == [(3,)]
    downloads = sum(PhotoServer.bodies.values())
    again = ingest(root, feed, config=config)
    assert not again.model_work_done
    assert sum(PhotoServer.bodies.values()) == downloads  # If-Modified-Since: 304s
    assert PhotoServer.seen["/missing.jpg"] == 2  # the failed photo is tried again


class KeepAlive(PhotoServer):
    protocol_version = "HTTP/1.1"


class KeepAliveThenClose(KeepAlive):
    """HTTP/1.1 without `Connection: close`, yet it hangs up after each answer, as a server
    does when an idle kept-alive connection times out."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        super().do_GET()
        self.close_connection = True


@pytest.mark.parametrize(("handler", "connections"), [(KeepAlive, 1), (KeepAliveThenClose, 6)])
def test_connections_are_kept_alive_and_a_closed_one_is_retried_afresh(
        tmp_path: Path, handler: type, connections: int) -> None:
    PhotoServer.seen, PhotoServer.bodies, PhotoServer.peers = Counter(), Counter(), set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        urls = [f"{base}/ok/{n}.jpg" for n in range(6)]
        one_thread = FetchPolicy(workers=1, per_host=1)  # every URL after the first reuses
        result = PhotoStore(tmp_path / "photos", one_thread).fetch(urls)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.column("problem").null_count == len(urls)
    assert sum(PhotoServer.bodies.values()) == len(urls)
    assert len(PhotoServer.peers) == connections
