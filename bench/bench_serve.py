"""`pinshop serve` against the bare library, in the same run; writes the "Serving" section of
BENCHMARKS.md.

    python bench/bench_serve.py -w pinshop-demo --requests 200 --update-rows 100000

- warm /health, /search and /match latency (p50, p95, p99, errors) at concurrency 1, 8 and
  32, each request on a keep-alive connection of its own thread, all on loopback;
- the same /search and /match calls on a warm in-process Shop (`shop.match`), sequentially:
  the server's p50 at concurrency 1 over the library's is the web layer's overhead;
- /chat time to first token (a warm server, the second question) against `pinshop chat
  --once` (a new process: model load and the catalog first);
- a live update's cost on a synthetic catalog of `--update-rows` products: the served row
  (DuckDB UPDATE), the index's price column (find the label, one write) and the group-
  committed catalog.parquet rewrite, for 1 and 32 changes at once.

Every number is wall time on this machine (2 cores shared with other work: the spread is
wide), medians unless named.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import write_section  # noqa: E402  (same folder)

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "sample_data" / "pins" / "7303782.jpg"
QUERIES = ["plywood chair", "green velvet sofa", "oak dining table", "cream armchair",
           "black floor lamp", "linen throw"]
TOKEN = uuid.uuid4().hex


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            "filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def load(port: int, endpoint: str, requests: int, concurrency: int) -> dict[str, float]:
    """`requests` requests to `endpoint` from `concurrency` threads (keep-alive each)."""
    photo_body, photo_type = multipart(PHOTO.read_bytes())
    times: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        nonlocal errors
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for n in counter:
            started = time.perf_counter()
            try:
                if endpoint == "/match":
                    con.request("POST", "/match?k=5", photo_body, {"Content-Type": photo_type})
                elif endpoint == "/search":
                    q = QUERIES[n % len(QUERIES)].replace(" ", "+")
                    con.request("GET", f"/search?q={q}&k=10")
                else:
                    con.request("GET", endpoint)
                response = con.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                con.close()
                con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                times.append(time.perf_counter() - started)
                errors += not ok
        con.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"p50": percentile(times, 0.5), "p95": percentile(times, 0.95),
            "p99": percentile(times, 0.99), "errors": errors, "n": len(times)}


def library(workspace: Path, requests: int, photos: int) -> dict[str, float]:
    """The same calls on a warm in-process Shop, sequentially: p50 ms."""
    import pinshop_cli

    with pinshop_cli.open(workspace) as shop:
        shop.match([PHOTO], top_k=5)
        shop.match([], text=QUERIES[0], top_k=10)
        search = []
        for n in range(requests):
            started = time.perf_counter()
            shop.match([], text=QUERIES[n % len(QUERIES)], top_k=10)
            search.append(time.perf_counter() - started)
        match = []
        for _ in range(photos):
            started = time.perf_counter()
            shop.match([PHOTO], top_k=5)
            match.append(time.perf_counter() - started)
    return {"search": percentile(search, 0.5), "match": percentile(match, 0.5)}


def first_token_s(port: int, question: str, session: str | None) -> tuple[float, str]:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    con.request("POST", "/chat", json.dumps({"message": question, "session": session}),
                {"Content-Type": "application/json"})
    response = con.getresponse()
    first = None
    for line in response:
        if first is None and line.startswith(b"event: token"):
            first = time.perf_counter() - started
        if line.startswith(b"data: ") and session is None:
            session = json.loads(line[6:]).get("session", session)
    con.close()
    return (first if first is not None else time.perf_counter() - started), str(session)


def chat_once_first_output_s(workspace: Path, model: str, question: str) -> float:
    """`pinshop chat --once` in a new process: seconds to the first printed character of
    its answer on stdout (a blank line comes first)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", "from pinshop_cli.commands.main import "
                                "run; run()", "chat", "-w", str(workspace), "--model", model,
                                "--once", question], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    while (byte := process.stdout.read(1)) and byte.isspace():
        pass
    first = time.perf_counter() - started
    process.communicate()
    return first


def update_cost(rows: int, workdir: Path) -> dict[str, float]:
    """A live change at `rows` products: the served row, the index label's price, and the
    catalog.parquet rewrite for 1 and for 32 changes (ms, median of a few)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from pinshop_cli.io.catalog import normalize_catalog
    from pinshop_cli.retrieval.store import CatalogStore, Filters
    from pinshop_cli.retrieval.updates import ProductChange, write_changes
    from pinshop_cli.synth.catalog import write_catalog
    from pinshop_cli.workspace import Workspace

    ws = Workspace.open(workdir / "ws", create=True)
    normalize_catalog(write_catalog(workdir / "catalog.csv", rows), ws.catalog,
                      ws.rejects_dir / "catalog.parquet")
    store = CatalogStore(ws)
    ids = store.ids(Filters())
    labels = pa.table({"label": pa.array(np.arange(len(ids)), pa.int64()), "id": ids})
    price = np.zeros(len(ids))
    picks = [ids[n].as_py() for n in np.random.default_rng(0).choice(len(ids), 20)]

    def timed(action, repeat: int = 5) -> float:  # noqa: ANN001
        samples = []
        for n in range(repeat):
            started = time.perf_counter()
            action(n)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000

    def patch_index(n: int) -> None:
        at = pc.index(labels.column("id"), picks[n]).as_py()
        label = labels.column("label")[at].as_py()
        price[int(np.searchsorted(labels.column("label").to_numpy(), label))] = 10.0

    result = {
        "rows": rows,
        "row_ms": timed(lambda n: store.apply(picks[n], {"price": 10.0 + n})),
        "index_ms": timed(patch_index),
        "write_1_ms": timed(lambda n: write_changes(ws, [ProductChange(picks[n], 20.0 + n)]),
                            3),
        "write_32_ms": timed(lambda n: write_changes(
            ws, [ProductChange(picks[m % 20], 30.0 + m) for m in range(32)]), 3),
    }
    store.close()
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200, help="per endpoint and level")
    parser.add_argument("--photos", type=int, default=40, help="/match requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--chat-model", default="smollm2")
    parser.add_argument("--update-rows", type=int, default=100_000)
    parser.add_argument("--write", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pinshop-bench-serve-"))
    workspace = workdir / "ws"
    shutil.copytree(args.workspace, workspace, ignore=shutil.ignore_patterns(".lock"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from pinshop_cli.commands.main import run; run()", "serve",
         "-w", str(workspace), "--port", str(port), "--model", args.chat_model],
        env={**os.environ, "PINSHOP_TOKEN": TOKEN}, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.5)
        load(port, "/match", 2, 1)  # the photo detector is built on first use
        rows = []
        for level in args.concurrency:
            for endpoint, count in (("/health", args.requests), ("/search", args.requests),
                                    ("/match", args.photos)):
                rows.append({"endpoint": endpoint, "concurrency": level,
                             **load(port, endpoint, count, level)})
                print(rows[-1], file=sys.stderr)
        first_token_s(port, "a chair under 200", None)  # the chat model loads
        ttft, _ = first_token_s(port, "a green sofa under 1500", None)
    finally:
        server.terminate()
        server.wait(timeout=60)
    bare = library(args.workspace, args.requests, args.photos)
    once = chat_once_first_output_s(args.workspace, args.chat_model, "a green sofa under 1500")
    update = update_cost(args.update_rows, workdir)
    print(bare, once, update, file=sys.stderr)

    table = ["| endpoint | concurrency | requests | p50 ms | p95 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['endpoint']} | {r['concurrency']} | {r['n']} | {r['p50']:.1f} | "
              f"{r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} |" for r in rows]
    served1 = {r["endpoint"]: r["p50"] for r in rows if r["concurrency"] == args.concurrency[0]}
    section = f"""## Serving: `pinshop serve` against the bare library

`python bench/bench_serve.py -w pinshop-demo --requests {args.requests} --photos \
{args.photos}`: a `pinshop serve` process on loopback, warm; the demo workspace (44
products). Each level sends the requests from that many threads, one keep-alive
connection each. Wall times on this machine's 2 cores, shared with other work.

{chr(10).join(table)}

Against the library in the same run (a warm in-process Shop, the same calls, sequential):
`/search` p50 {served1['/search']:.1f} ms vs `shop.match(text=...)` {bare['search']:.1f} ms
({served1['/search'] / bare['search']:.2f}x); `/match` p50 {served1['/match']:.1f} ms vs
`shop.match([photo])` {bare['match']:.1f} ms ({served1['/match'] / bare['match']:.2f}x).
One model call runs at a time (serve/guard.py), so at concurrency 8 and 32 a request's
latency is mostly its wait in the queue; searches queued together are answered in one call
(serve/batching.py).

`/chat` time to first token (warm server, a new session): {ttft:.2f} s; `pinshop chat
--once` to the first character of its answer, a new process with {args.chat_model}: {once:.2f} s
({once / ttft:.1f}x).

A live update at {update['rows']:,} products (synthetic catalog): the served row (DuckDB
UPDATE by the id index) {update['row_ms']:.2f} ms; the index's price column (find the
label, one write) {update['index_ms']:.2f} ms; catalog.parquet rewritten under the lock
{update['write_1_ms']:.0f} ms for one change and {update['write_32_ms']:.0f} ms for 32 in one
group commit. The rewrite is the cost of a PATCH at this size; concurrent PATCHes share it.

Not measured yet: the 100k-product server (a text query needs a real embedder's index;
synthetic vectors have no text model) and the 10-minute RSS soak.
"""
    write_section(args.write, "## Serving: `pinshop serve`", section)
    print(section)


if __name__ == "__main__":
    main()
