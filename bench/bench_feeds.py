"""Feed ingest at catalog scale, and photo fetching on loopback.

    python bench/bench_feeds.py [--rows 100000] [--photos 5000] [--fetch 2000]

1. A generated Merchant Center TSV of --rows items (price "49.99 USD", availability,
   category paths, item groups; --photos distinct photo URLs on a loopback server, shared
   by the items) read into a workspace catalog with its history snapshot and photo fetch,
   against DuckDB's own read_csv of the same file (the bare library doing the reading).
   Each in a fresh process, peak memory = max RSS of that process.
2. A second snapshot of the same feed with 1% of the prices changed: the time, the history
   rows written, and the photo bodies downloaded again (must be 0).
3. Photo fetch throughput: --fetch distinct photos at concurrency 16, in photos/s, against
   bare GETs of the same URLs with the library the fetcher uses (one httpx.Client shared
   by the same 16 threads, same server, same run; no store, no checks).
4. Resume after kill -9: a fetch of --fetch new URLs killed half-way, then run again: how
   many photos were downloaded twice.

The server runs in its own process (ThreadingHTTPServer), so its cost is not the
fetcher's, and counts every body it sends.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADER = ("id\ttitle\tdescription\tlink\timage_link\tprice\tsale_price\tavailability\t"
          "product_type\titem_group_id\tcolor\tsize\tgtin\n")
STOCK = ("in stock", "out_of_stock", "preorder", "backorder")
TYPES = ("Home & Garden > Furniture > Sofas", "Home & Garden > Furniture > Chairs",
         "Home & Garden > Decor > Vases", "Home & Garden > Lighting > Lamps")


def serve(port_file: str) -> None:
    """A loopback photo server: /p/<n>.jpg is one of 64 small JPEGs (ETag per URL);
    /stats returns the bodies sent."""
    from PIL import Image

    bodies = []
    for n in range(64):
        out = io.BytesIO()
        Image.new("RGB", (320, 240), (n * 4, 120, 200 - n)).save(out, "JPEG", quality=85)
        bodies.append(out.getvalue())
    sent = {"bodies": 0, "requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as photo CDNs do

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/stats":
                body = json.dumps(sent).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            etag = f'"{self.path}"'
            with lock:
                sent["requests"] += 1
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with lock:
                sent["bodies"] += 1
            body = bodies[hash(self.path) % len(bodies)]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.handle_error = lambda *args: None  # a client killed mid-request (the resume run)
    Path(port_file).write_text(str(httpd.server_address[1]))
    httpd.serve_forever()


def stats(base: str) -> dict:
    import httpx

    return httpx.get(f"{base}/stats", timeout=10).json()


def make_feed(path: Path, rows: int, photos: int, base: str, seed: int, changed: float) -> None:
    rng = random.Random(seed)
    with open(path, "w") as out:
        out.write(HEADER)
        for n in range(rows):
            price = 10 + (n * 7919) % 990 + 0.99
            if changed and rng.random() < changed:
                price += 5
            out.write(f"SKU-{n}\tProduct {n} linen\tA product for the bench\t"
                      f"https://shop.example/p/{n}\t"
                      f"{f'{base}/p/{n % photos}.jpg' if photos else ''}\t"
                      f"{price:.2f} USD\t\t{STOCK[n % 4]}\t{TYPES[n % 4]}\tG-{n // 3}\t"
                      f"green\tL\t{n:013d}\n")


def make_rss(path: Path, rows: int) -> None:
    """The text-only feed as RSS 2.0 with the g: namespace."""
    with open(path, "w") as out:
        out.write('<?xml version="1.0"?>\n<rss xmlns:g="http://base.google.com/ns/1.0" '
                  'version="2.0"><channel><title>bench</title>\n')
        for n in range(rows):
            out.write(f"<item><g:id>SKU-{n}</g:id><title>Product {n} linen</title>"
                      f"<link>https://shop.example/p/{n}</link><description>A product for "
                      f"the bench</description><g:price>{10 + (n * 7919) % 990 + 0.99:.2f} "
                      f"USD</g:price><g:availability>{STOCK[n % 4]}</g:availability>"
                      f"<g:product_type>{escape(TYPES[n % 4])}</g:product_type>"
                      f"<g:item_group_id>G-{n // 3}</g:item_group_id><g:color>green</g:color>"
                      f"<g:size>L</g:size><g:gtin>{n:013d}</g:gtin></item>\n")
        out.write("</channel></rss>\n")


def child(kind: str, feed: str, workspace: str) -> None:
    """One measured run in this (fresh) process; prints JSON."""
    started = time.perf_counter()
    if kind == "duckdb":
        import duckdb

        rows = duckdb.sql(f"SELECT count(*) FROM read_csv('{feed}', delim='\t', "
                          "header=true, all_varchar=true)").fetchall()[0][0]
        extra: dict = {"rows": rows}
    else:
        from datetime import datetime, timezone

        from pinshop_cli.io.catalog import normalize_catalog
        from pinshop_cli.io.history import record_snapshot
        from pinshop_cli.io.photo_fetch import PhotoStore

        root = Path(workspace)
        summary = normalize_catalog(feed, root / "catalog.parquet",
                                    root / "rejects" / "catalog.parquet",
                                    photos=PhotoStore(root / "photos"))
        history = record_snapshot(root, root / "catalog.parquet",
                                  datetime.now(timezone.utc).replace(tzinfo=None))
        extra = {"rows": summary.rows_ok, "rejected": summary.rows_rejected,
                 "photo_failures": summary.photo_rejects.num_rows, "history_rows": history}
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, **extra}))


def run_child(kind: str, feed: Path, workspace: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(feed), str(workspace)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bare_fetch(urls: list[str], workers: int) -> None:
    """GET each URL with one httpx.Client shared by `workers` threads (as many kept-alive
    connections), bodies kept in memory: no store, no checks."""
    import httpx

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(limits=limits, timeout=10) as client, ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda url: client.get(url).raise_for_status(), urls))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--photos", type=int, default=5_000)
    parser.add_argument("--fetch", type=int, default=2_000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="pinshop-bench-feeds-"))
    port_file = scratch / "port"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port_file.read_text()}"
        report(args, scratch, base)
    finally:
        server.terminate()
        server.wait()


def report(args: argparse.Namespace, scratch: Path, base: str) -> None:
    from pinshop_cli.io.photo_fetch import FetchPolicy, PhotoStore

    feed, ws = scratch / "feed.tsv", scratch / "ws"
    make_feed(feed, args.rows, 0, base, 0, 0.0)
    bare = run_child("duckdb", feed, ws)
    text = run_child("pinshop", feed, scratch / "ws-text")
    print(f"text-only feed: {args.rows:,} rows, {feed.stat().st_size / 1e6:.1f} MB")
    print(f"  duckdb read_csv       {bare['seconds']:6.2f} s  peak {bare['peak_mb']:6.0f} MB")
    print(f"  pinshop ingest        {text['seconds']:6.2f} s  peak {text['peak_mb']:6.0f} MB"
          f"  ({text['seconds'] / bare['seconds']:.1f}x duckdb; {text['rows']:,} rows,"
          f" {text['history_rows']:,} history rows)")
    rss = scratch / "feed.xml"
    make_rss(rss, args.rows)
    xml = run_child("pinshop", rss, scratch / "ws-xml")
    print(f"  the same as RSS 2.0   {xml['seconds']:6.2f} s  peak {xml['peak_mb']:6.0f} MB"
          f"  ({rss.stat().st_size / 1e6:.1f} MB; {xml['rows']:,} rows)")
    make_feed(feed, args.rows, args.photos, base, 0, 0.0)
    size_mb = feed.stat().st_size / 1e6
    bare = run_child("duckdb", feed, ws)
    first = run_child("pinshop", feed, ws)
    sent = stats(base)["bodies"]
    make_feed(feed, args.rows, args.photos, base, 1, 0.01)
    second = run_child("pinshop", feed, ws)
    again = stats(base)["bodies"] - sent
    print(f"feed with photos: {args.rows:,} rows, {size_mb:.1f} MB, {args.photos:,} photo URLs")
    print(f"  duckdb read_csv       {bare['seconds']:6.2f} s  peak {bare['peak_mb']:6.0f} MB")
    print(f"  pinshop first ingest  {first['seconds']:6.2f} s  peak {first['peak_mb']:6.0f} MB"
          f"  ({first['seconds'] / bare['seconds']:.1f}x duckdb; {first['rows']:,} rows, "
          f"{first['photo_failures']} photo failures, {first['history_rows']:,} history rows,"
          f" {sent:,} photos downloaded)")
    print(f"  second snapshot       {second['seconds']:6.2f} s  peak {second['peak_mb']:6.0f} MB"
          f"  ({second['history_rows']:,} history rows, {again} photos downloaded again)")

    urls = [f"{base}/f/{n}.jpg" for n in range(args.fetch)]
    policy = FetchPolicy(workers=16, per_host=16)
    PhotoStore(scratch / "fetch", policy).fetch([])  # imports (pyarrow, duckdb) done once
    import httpx  # noqa: F401 (imported before either side is timed)
    started = time.perf_counter()
    bare_fetch(urls, 16)
    bare_s = time.perf_counter() - started
    started = time.perf_counter()
    PhotoStore(scratch / "fetch", policy).fetch(urls)
    ours_s = time.perf_counter() - started
    print(f"fetch {args.fetch:,} photos at concurrency 16: pinshop {args.fetch / ours_s:.0f}/s,"
          f" bare httpx {args.fetch / bare_s:.0f}/s ({bare_s / ours_s:.2f}x)")

    urls = [f"{base}/k/{n}.jpg" for n in range(args.fetch)]
    before = stats(base)["bodies"]
    script = ("import sys\nfrom pinshop_cli.io.photo_fetch import FetchPolicy, PhotoStore\n"
              "PhotoStore(sys.argv[1], FetchPolicy(workers=16, per_host=16)).fetch(sys.argv[2:])")
    victim = subprocess.Popen([sys.executable, "-c", script, str(scratch / "kill"), *urls],
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    while stats(base)["bodies"] - before < args.fetch // 2:
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = stats(base)["bodies"] - before
    started = time.perf_counter()
    PhotoStore(scratch / "kill", policy).fetch(urls)
    resume_s = time.perf_counter() - started
    total = stats(base)["bodies"] - before
    print(f"kill -9 after {killed_at:,} of {args.fetch:,} downloads; the rerun took "
          f"{resume_s:.2f} s and downloaded {total - killed_at:,}: "
          f"{total - args.fetch} photos downloaded twice")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
