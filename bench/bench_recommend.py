"""`recommend --all` (DuckDB SQL) vs a straightforward pandas implementation of the same
scoring, on generated events, each in its own process for a clean peak-memory reading.

    python bench/bench_recommend.py --events 1200000 12000000

Writes its section of BENCHMARKS.md. Also checks that both produce the same top-1 for
(almost) every user, so the comparison is like for like.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PANDAS_TIMEOUT_S = 1800
PANDAS_MEMORY_BYTES = 16 << 30  # fail with MemoryError rather than swap the machine


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (PANDAS_MEMORY_BYTES, PANDAS_MEMORY_BYTES))


def child(kind: str, root: str) -> None:
    """Run one implementation in this (fresh) process and print its timing as JSON."""
    sys.path.insert(0, str(HERE))
    from pinshop_cli.recommendation.api import recommend_all
    from pinshop_cli.recommendation.config import BlendWeights, RecommendConfig
    from pinshop_cli.workspace.layout import Workspace

    ws = Workspace.open(root)
    started = time.perf_counter()
    if kind == "duckdb":
        rows = recommend_all(root, RecommendConfig(weights=BlendWeights()))
        top1 = str(ws.recommendations)
    else:
        from pandas_recommend import recommend_all_pandas

        from pinshop_cli.recommendation.taste import product_index

        result = recommend_all_pandas(str(ws.events), str(ws.catalog), product_index(ws),
                                      RecommendConfig(weights=BlendWeights()))
        rows = len(result)
        top1 = str(ws.root / "pandas-top.parquet")
        result.to_parquet(top1)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "rows": rows, "top": top1}))


def run_child(kind: str, root: Path) -> dict | None:
    try:
        done = subprocess.run([sys.executable, __file__, "--child", kind, str(root)],
                              capture_output=True, text=True, timeout=PANDAS_TIMEOUT_S,
                              preexec_fn=_limit_memory if kind == "pandas" else None)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict | None]) -> dict | None:
    """The run of median time; a failure or timeout if any run had one."""
    for run in runs:
        if run is None or "failed" in run:
            return run
    return sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]  # type: ignore[index]


def top1_agreement(duck: str, pandas_path: str) -> float:
    import duckdb

    row = duckdb.connect().execute(f"""
        SELECT avg((d.item_id = p.item_id)::DOUBLE)
        FROM (SELECT user_id, item_id FROM read_parquet('{duck}') WHERE rank = 1) d
        JOIN (SELECT user_id, item_id FROM read_parquet('{pandas_path}') WHERE rank = 1) p
        USING (user_id)""").fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="+", default=[1_200_000, 12_000_000])
    parser.add_argument("--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each implementation where both run (median reported)")
    parser.add_argument("--pandas-up-to", type=int, default=2_000_000,
                        help="skip pandas above this many events (at 10M it runs out of "
                             "memory at a 16 GB cap after many minutes)")
    args = parser.parse_args()

    import pyarrow.parquet as pq
    from bench_ingest import write_section  # noqa: E402  (same folder)

    from pinshop_cli.index.hnsw import build_indexes
    from pinshop_cli.io.events import ingest_events
    from pinshop_cli.synth.events import write_synthetic_workspace

    lines = ["| events | users | items | DuckDB s | DuckDB peak MB | pandas s | pandas peak MB "
             "| speed-up | top-1 agreement |", "|---|---|---|---|---|---|---|---|---|"]
    for n in args.events:
        users, items = max(1000, n // 50), max(2000, n // 200)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "ws"
            started = time.perf_counter()
            events = write_synthetic_workspace(str(root), items=items, users=users, events=n)
            pq.write_table(events, Path(tmp) / "events.parquet")
            ingest_events(Path(tmp) / "events.parquet", root)
            build_indexes(root, kinds=("product_text",), by_category=False)  # taste step
            print(f"{events.num_rows:,} events generated and ingested in "
                  f"{time.perf_counter() - started:.0f}s", file=sys.stderr)
            if n <= args.pandas_up_to:  # alternating runs, the median of each (noisy VMs)
                runs = [(run_child("duckdb", root), run_child("pandas", root))
                        for _ in range(args.repeats)]
                duck = median_run([d for d, _ in runs])
                pandas = median_run([p for _, p in runs])
            else:
                duck, pandas = run_child("duckdb", root), {"failed": "not run (--pandas-up-to)"}
            print(n, duck, pandas, file=sys.stderr)
            if pandas is None or "failed" in pandas:
                why = ("timed out" if pandas is None else "out of memory (16 GB cap)"
                       if "MemoryError" in pandas["failed"] else pandas["failed"][:60])
                lines.append(f"| {events.num_rows:,} | {users:,} | {items:,} | "
                             f"{duck['seconds']:.1f} | {duck['peak_mb']:.0f} | {why} | | | |")
                continue
            agreement = top1_agreement(duck["top"], pandas["top"])
            lines.append(
                f"| {events.num_rows:,} | {users:,} | {items:,} | {duck['seconds']:.1f} | "
                f"{duck['peak_mb']:.0f} | {pandas['seconds']:.1f} | {pandas['peak_mb']:.0f} | "
                f"**{pandas['seconds'] / duck['seconds']:.1f}x** | {agreement:.1%} |")
    section = ("## Recommendations: `recommend --all`, DuckDB vs pandas\n\n"
               "`python bench/bench_recommend.py` — generated shoppers (pinshop_cli.synth.events), "
               "same scoring in both (bench/pandas_recommend.py), each in a fresh process; "
               f"where both run, {args.repeats} alternating runs each and the median; "
               "peak = max RSS; DuckDB memory_limit 4GB (spills beyond). Goal: >= 5x faster "
               "with bounded memory.\n\n" + "\n".join(lines) + "\n")
    write_section(args.out, "## Recommendations: `recommend --all`, DuckDB vs pandas",
                  section + "\n")
    print(section)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        sys.path.insert(0, str(HERE))
        main()
