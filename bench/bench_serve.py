"""`pinshop serve` against the bare library and against an earlier pinshop, in the same run;
writes the "Serving" section of BENCHMARKS.md.

    python bench/bench_serve.py -w pinshop-demo --requests 200 --big W100K \
        --baseline CHECKOUT --soak 600

- warm /health, /search and /match latency (p50, p95, p99, errors) at concurrency 1, 8 and
  32, each request on a keep-alive connection of its own thread, all on loopback; with
  `--baseline` (a checkout of an earlier commit) its server answers the same load in the
  same run, level by level, one server after the other;
- the same /search and /match calls on a warm in-process Shop (`shop.match`), sequentially:
  the server's p50 at concurrency 1 over the library's is the web layer's overhead;
- where a photo match's time goes (cProfile of warm matches in process);
- /chat time to first token (a warm server, the second question) against `pinshop chat
  --once` (a new process: model load and the catalog first);
- `--big`: a 100k-product workspace (`pinshop ingest` + `pinshop index` of a synthetic
  catalog): /search and PATCH /products/ID latency at concurrency 1 and 8 (and the
  baseline's on its own copy); a save's parts in process (log append, history, fold);
- `--soak SECONDS`: mixed traffic (search, match, product, PATCH) from 4 threads for that
  long, the server's RSS sampled every 10 s.

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import write_section  # noqa: E402  (same folder)

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "sample_data" / "pins" / "7303782.jpg"
QUERIES = ["plywood chair", "green velvet sofa", "oak dining table", "cream armchair",
           "black floor lamp", "linen throw"]
TOKEN = uuid.uuid4().hex



#: What the section says of a `--baseline` server, when the run had one.
BEFORE = (' "before" is the server of an earlier commit (`--baseline`, a checkout), answering'
          ' the same load in the same run, level by level after "now".')


class Client:
    """One keep-alive connection to the server; `send` says whether a request got a 200
    (a dropped connection is an error, and the next request reconnects)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def send(self, method: str, path: str, body: bytes | str | None = None,
             headers: dict[str, str] | None = None) -> bool:
        try:
            self.con.request(method, path, body, headers or {})
            response = self.con.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            self.con.close()
            self.con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            return False

    def patch_price(self, product_id: str, price: float) -> bool:
        return self.send("PATCH", f"/products/{product_id}", json.dumps({"price": price}),
                         {"Content-Type": "application/json",
                          "Authorization": f"Bearer {TOKEN}"})

    def close(self) -> None:
        self.con.close()

def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            "filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def load(port: int, endpoint: str, requests: int, concurrency: int,
         ids: list[str] | None = None) -> dict[str, float]:
    """`requests` requests to `endpoint` from `concurrency` threads (keep-alive each);
    "PATCH" sets the price of `ids` in turn."""
    photo_body, photo_type = multipart(PHOTO.read_bytes())
    times: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        nonlocal errors
        client = Client(port)
        for n in counter:
            started = time.perf_counter()
            if endpoint == "PATCH":
                pid = (ids or ["P001"])[n % len(ids or ["P001"])]
                ok = client.patch_price(pid, 10 + n % 90)
            elif endpoint == "/match":
                ok = client.send("POST", "/match?k=5", photo_body, {"Content-Type": photo_type})
            elif endpoint == "/search":
                q = QUERIES[n % len(QUERIES)].replace(" ", "+")
                ok = client.send("GET", f"/search?q={q}&k=10")
            else:
                ok = client.send("GET", endpoint)
            with lock:
                times.append(time.perf_counter() - started)
                errors += not ok
        client.close()

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
    """A live change's save at `rows` products, in process (ms, median of a few): the save
    before the change log (catalog.parquet rewritten with the change, then the history
    snapshot: what `write_changes` still does as a fold) against the log append a PATCH
    now waits for, the history write behind it, and a fold of 32 logged changes."""
    from datetime import datetime

    import numpy as np

    from pinshop_cli.io.catalog import normalize_catalog
    from pinshop_cli.io.history import record_snapshot
    from pinshop_cli.retrieval.updates import (
        ProductChange,
        log_changes,
        record_history,
        write_changes,
    )
    from pinshop_cli.synth.catalog import write_catalog
    from pinshop_cli.workspace import Workspace

    ws = Workspace.open(workdir / "updates-ws", create=True)
    normalize_catalog(write_catalog(workdir / "catalog.csv", rows), ws.catalog,
                      ws.rejects_dir / "catalog.parquet")
    with ws.lock():  # the first ingest's history: every product
        record_snapshot(ws.root, ws.catalog, datetime(2024, 1, 1))
    picks = [f"P{n}" for n in np.random.default_rng(0).choice(rows, 20)]
    state = {"currency": "EUR", "availability": "in_stock", "sale_price": None}

    def change(n: int) -> ProductChange:
        return ProductChange(picks[n % 20], 20.0 + n, state={**state, "price": 20.0 + n})

    def timed(action, repeat: int = 5) -> float:  # noqa: ANN001
        samples = []
        for n in range(repeat):
            started = time.perf_counter()
            action(n)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000

    def history(n: int) -> None:
        with ws.lock():
            record_history(ws, [change(n)], datetime.now())

    def fold(n: int) -> None:
        log_changes(ws, [change(m) for m in range(32)])
        started = time.perf_counter()
        write_changes(ws, [])
        folds.append(time.perf_counter() - started)

    folds: list[float] = []
    result = {
        "rows": rows,
        "rewrite_ms": timed(lambda n: write_changes(ws, [change(n)]), 3),
        "log_ms": timed(lambda n: log_changes(ws, [change(n)]), 9),
        "log_32_ms": timed(lambda n: log_changes(ws, [change(m) for m in range(32)]), 5),
        "history_ms": timed(history, 5),
    }
    timed(fold, 3)
    result["fold_ms"] = statistics.median(folds) * 1000
    return result


def match_profile(workspace: Path, photos: int = 5) -> dict[str, float]:
    """Where a warm photo match's time goes: ms per match in each named step (cProfile's
    cumulative time; the profiler adds a little to each)."""
    import cProfile
    import pstats

    import pinshop_cli

    steps = {"propose": ("regions.py", "propose"), "embed crops": ("base.py", "embed_images"),
             "colours": ("colors.py", "dominant_colors"), "catalog rows": ("store.py", "rows")}
    with pinshop_cli.open(workspace) as shop:
        shop.match([PHOTO], top_k=5)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for _ in range(photos):
            shop.match([PHOTO], top_k=5)
        profile.disable()
        total = time.perf_counter() - started
    found = {"total": total / photos * 1000}
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for name, (file, function) in steps.items():
        found[name] = sum(v[3] for (path, _, func), v in stats.items()
                          if path.endswith(file) and func == function) / photos * 1000
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def soak(port: int, pid: int, seconds: float, ids: list[str]) -> dict[str, Any]:
    """Mixed traffic from 4 threads for `seconds`: searches, photo matches, product reads and
    PATCHes; the server's RSS every 10 s."""
    deadline = time.monotonic() + seconds
    samples: list[tuple[float, float]] = []
    counts = {"requests": 0, "errors": 0}
    lock = threading.Lock()
    photo_body, photo_type = multipart(PHOTO.read_bytes())

    def worker(seed: int) -> None:
        client = Client(port)
        n = seed
        while time.monotonic() < deadline:
            n += 4
            kind = n % 10
            if kind == 0:
                ok = client.send("POST", "/match?k=5", photo_body, {"Content-Type": photo_type})
            elif kind < 3:
                ok = client.patch_price(ids[n % len(ids)], 10 + n % 90)
            elif kind < 5:
                ok = client.send("GET", f"/products/{ids[n % len(ids)]}")
            else:
                q = QUERIES[n % len(QUERIES)].replace(" ", "+")
                ok = client.send("GET", f"/search?q={q}&k=10&max_price={50 + n % 500}")
            with lock:
                counts["requests"] += 1
                counts["errors"] += not ok
        client.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        samples.append((time.monotonic() - started, rss_mb(pid)))
        time.sleep(10)
    for thread in threads:
        thread.join()
    samples.append((time.monotonic() - started, rss_mb(pid)))
    first = samples[1][1] if len(samples) > 2 else samples[0][1]  # after the first 10 s
    return {**counts, "seconds": seconds, "first_mb": first, "last_mb": samples[-1][1],
            "max_mb": max(mb for _, mb in samples[1:] or samples),
            "growth": samples[-1][1] / first - 1}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(workspace: Path, model: str, code: Path | None = None
                 ) -> tuple[subprocess.Popen[bytes], int]:
    """A `pinshop serve` process on `workspace` (from checkout `code` when given), up."""
    port = free_port()
    env = {**os.environ, "PINSHOP_TOKEN": TOKEN}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    server = subprocess.Popen(
        [sys.executable, "-c", "from pinshop_cli.commands.main import run; run()", "serve",
         "-w", str(workspace), "--port", str(port), "--model", model],
        env=env, stderr=subprocess.DEVNULL)
    while True:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/health")
            return server, port
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"pinshop serve on {workspace} did not start") from None
            time.sleep(0.5)


def stop(servers: dict[str, tuple[subprocess.Popen[bytes], int]]) -> None:
    for server, _ in servers.values():
        server.terminate()
        server.wait(timeout=120)


def copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def product_ids(workspace: Path, n: int) -> list[str]:
    import duckdb

    return [row[0] for row in duckdb.sql(
        f"SELECT id FROM '{workspace / 'catalog.parquet'}' ORDER BY hash(id) LIMIT {n}"
    ).fetchall()]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| server | endpoint | concurrency | requests | p50 ms | p95 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['server']} | {r['endpoint']} | {r['concurrency']} | {r['n']} | "
              f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} |"
              for r in rows]
    return "\n".join(lines)


def measure(servers: dict[str, tuple[subprocess.Popen[bytes], int]], plan: list[tuple[str, int]],
            levels: list[int], ids: list[str]) -> list[dict[str, Any]]:
    """Each (endpoint, requests) of `plan` at each level, on each server in turn."""
    rows = []
    for level in levels:
        for endpoint, count in plan:
            for name, (_, port) in servers.items():
                rows.append({"server": name, "endpoint": endpoint, "concurrency": level,
                             **load(port, endpoint, count, level, ids)})
                print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200, help="per endpoint and level")
    parser.add_argument("--photos", type=int, default=40, help="/match requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--chat-model", default="smollm2")
    parser.add_argument("--update-rows", type=int, default=100_000)
    parser.add_argument("--big", type=Path, help="an ingested and indexed 100k workspace")
    parser.add_argument("--baseline", type=Path,
                        help="a checkout of an earlier commit, served beside this one")
    parser.add_argument("--soak", type=float, default=0, help="seconds of mixed traffic")
    parser.add_argument("--write", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pinshop-bench-serve-"))
    ids = product_ids(args.workspace, 20)
    servers = {"now": start_server(copy(args.workspace, workdir / "ws"), args.chat_model)}
    if args.baseline:
        servers["before"] = start_server(copy(args.workspace, workdir / "ws-before"),
                                         args.chat_model, args.baseline)
    soaked = None
    try:
        for _, port in servers.values():
            load(port, "/match", 2, 1)  # the photo detector is built on first use
        rows = measure(servers, [("/health", args.requests), ("/search", args.requests),
                                 ("/match", args.photos)], args.concurrency, ids)
        firsts = {}
        for name, (_, port) in servers.items():
            first_token_s(port, "a chair under 200", None)  # the chat model loads
            firsts[name] = first_token_s(port, "a green sofa under 1500", None)[0]
        port = servers["now"][1]
        if args.soak:
            soaked = soak(port, servers["now"][0].pid, args.soak, ids)
            print(soaked, file=sys.stderr)
    finally:
        stop(servers)
    big_rows: list[dict[str, Any]] = []
    if args.big:
        big_ids = product_ids(args.big, 200)
        servers = {"now": start_server(copy(args.big, workdir / "big"), args.chat_model)}
        if args.baseline:
            servers["before"] = start_server(copy(args.big, workdir / "big-before"),
                                             args.chat_model, args.baseline)
        try:
            big_rows = measure(servers, [("/health", 100), ("/search", 100), ("PATCH", 40)],
                               [1, 8], big_ids)
        finally:
            stop(servers)
    bare = library(args.workspace, args.requests, args.photos)
    profile = match_profile(args.workspace)
    once = chat_once_first_output_s(args.workspace, args.chat_model, "a green sofa under 1500")
    update = update_cost(args.update_rows, workdir)
    print(bare, profile, once, update, file=sys.stderr)
    (workdir / "results.json").write_text(json.dumps(
        {"rows": rows, "big": big_rows, "bare": bare, "profile": profile, "once": once,
         "ttft": firsts, "update": update, "soak": soaked}, indent=1))
    print(f"results in {workdir / 'results.json'}", file=sys.stderr)
    write(args, rows, big_rows, bare, profile, once, firsts, update, soaked)


def write(args: argparse.Namespace, rows: list[dict[str, Any]], big_rows: list[dict[str, Any]],
          bare: dict[str, float], profile: dict[str, float], once: float,
          firsts: dict[str, float],
          update: dict[str, float], soaked: dict[str, Any] | None) -> None:
    served1 = {r["endpoint"]: r["p50"] for r in rows
               if r["concurrency"] == args.concurrency[0] and r["server"] == "now"}
    ttft = firsts["now"]
    before_ttft = f" (before: {firsts['before']:.2f} s)" if "before" in firsts else ""
    steps = ", ".join(f"{name} {ms:.0f} ms" for name, ms in profile.items() if name != "total")
    big = (f"""A 100,000-product workspace (`pinshop ingest` of a synthetic catalog, real MiniLM
text vectors, `pinshop index`), each server on its own copy; PATCH sets one price:

{table(big_rows)}
""" if big_rows else "The 100k-product server was not measured in this run.\n")
    soak_text = (f"""RSS over a {soaked["seconds"] / 60:.0f}-minute soak of mixed traffic
(4 threads:
searches with varying price filters, photo matches, product reads, PATCHes; {soaked['requests']:,}
requests, {soaked['errors']} errors): {soaked['first_mb']:.0f} MB after the first 10 s,
{soaked['last_mb']:.0f} MB at the end, {soaked['max_mb']:.0f} MB at most
({soaked['growth'] * 100:+.1f}%; goal within +5%).
""" if soaked else "No RSS soak in this run.\n")
    section = f"""## Serving: `pinshop serve` against the bare library

`python bench/bench_serve.py -w pinshop-demo --requests {args.requests} --photos \
{args.photos}{' --big W100K' if big_rows else ''}{' --baseline CHECKOUT' if args.baseline else ''}\
{f' --soak {args.soak:.0f}' if soaked else ''}`: `pinshop serve` processes on loopback, warm,
on the demo workspace (44 products).{BEFORE if args.baseline else ""} Each level sends the
requests from that many threads, one keep-alive connection each. Wall
times on this machine's 2 cores, shared with other work while it ran.

{table(rows)}

Against the library in the same run (a warm in-process Shop, the same calls, sequential):
`/search` p50 {served1['/search']:.1f} ms vs `shop.match(text=...)` {bare['search']:.1f} ms
({served1['/search'] / bare['search']:.2f}x); `/match` p50 {served1['/match']:.1f} ms vs
`shop.match([photo])` {bare['match']:.1f} ms ({served1['/match'] / bare['match']:.2f}x).

Where a warm photo match's {profile['total']:.0f} ms go (cProfile, in process): {steps}.

`/chat` time to first token (warm server, a new session): {ttft:.2f} s{before_ttft}; `pinshop chat
--once` to the first character of its answer, a new process with {args.chat_model}: {once:.2f} s
({once / ttft:.1f}x).

{big}
A live update's save at {update['rows']:,} products, in process: the change log append a
PATCH now waits for, {update['log_ms']:.0f} ms ({update['log_32_ms']:.0f} ms for 32 changes
in one group commit), against the save before the log, catalog.parquet rewritten with the
history snapshot, {update['rewrite_ms']:.0f} ms. Behind the response: the history rows,
{update['history_ms']:.0f} ms per batch; a fold of the log into catalog.parquet,
{update['fold_ms']:.0f} ms (past 2,000 logged changes, and when the server stops).

{soak_text}"""
    write_section(args.write, "## Serving: `pinshop serve`", section)
    print(section)


if __name__ == "__main__":
    main()
