"""What issue 26's context costs at scale: `recommend --all` over ~1.2M generated events
with the code of a given git revision (before the issue) and with this checkout (its
default: with the serendipity slot), in alternating fresh processes; then without the
slot, MMR, the trend and same-taste components, and one user
with and without a 10-event browsing session.

    python bench/bench_context.py --before 6194bd0 [--repeats 3]

Prints the medians (seconds) for the "Recommendations in context" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = r'''
import json, sys, time
if sys.argv[1]:
    sys.path.insert(0, sys.argv[1])
import pyarrow as pa
pa.set_cpu_count(2)
from pinshop_cli.recommendation.api import recommend, recommend_all
from pinshop_cli.recommendation.config import BlendWeights, RecommendConfig
what, root = sys.argv[2], sys.argv[3]
started = time.perf_counter()
if what == "all":
    recommend_all(root, RecommendConfig(weights=BlendWeights()))
elif what == "all_no_slot":
    recommend_all(root, RecommendConfig(weights=BlendWeights(), serendipity=False))
elif what == "all_mmr":
    recommend_all(root, RecommendConfig(weights=BlendWeights(), mmr_lambda=0.7))
elif what == "all_context":
    recommend_all(root, RecommendConfig(weights=BlendWeights(
        trending=0.25, seasonal=0.25, tastemates=0.25)))
else:
    import duckdb
    items = [r[0] for r in duckdb.sql(
        f"SELECT item_id FROM read_parquet('{root}/events.parquet') LIMIT 10").fetchall()]
    session = [{"item_id": i, "event": "view",  # just now: after every stored event
                "ts": time.strftime("%Y-%m-%d %H:%M:", time.gmtime()) + f"{n:02d}"}
               for n, i in enumerate(items)] if what == "one_session" else None
    recommend(root, "u000042", RecommendConfig(weights=BlendWeights()), session=session)
print(json.dumps({"seconds": time.perf_counter() - started}))
'''
RUNS = [("before the issue: recommend --all", "before", "all"),
        ("now: recommend --all", "", "all"),
        ("now: --all without the serendipity slot", "", "all_no_slot"),
        ("now: --all, MMR lambda 0.7", "", "all_mmr"),
        ("now: --all + trending, seasonal, same-taste (0.25 each)", "", "all_context"),
        ("now: one user", "", "one"), ("now: one user + a 10-event session", "", "one_session")]


def seconds(code: str, what: str, root: Path) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, code, what, str(root)],
                          capture_output=True, text=True, cwd=root.parent)
    if done.returncode:
        raise SystemExit(f"{what} ({code or 'now'}) failed: {done.stderr[-1500:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="git revision before the issue")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from pinshop_cli.index.hnsw import build_indexes
    from pinshop_cli.io.events import ingest_events
    from pinshop_cli.synth.events import write_synthetic_workspace

    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        archive = subprocess.run(["git", "archive", args.before, "pinshop_cli"],
                                 capture_output=True, check=True, cwd=HERE.parent).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(before, filter="data")
        root = Path(tmp) / "ws"
        events = write_synthetic_workspace(str(root), items=5000, users=20000,
                                           events=1_200_000)  # the 1.2M
        pq.write_table(events, Path(tmp) / "events.parquet")
        ingest_events(Path(tmp) / "events.parquet", root)
        build_indexes(root, kinds=("product_text",), by_category=False)
        times: dict[str, list[float]] = {label: [] for label, _, _ in RUNS}
        for _ in range(args.repeats):  # alternating: a noisy VM drifts within a run
            for label, code, what in RUNS:
                times[label].append(seconds(str(before) if code else "", what, root))
        print(f"{events.num_rows:,} events, 20,000 users, 5,000 items")
        for label, values in times.items():
            print(f"| {label} | {statistics.median(values):.2f} s | "
                  + ", ".join(f"{v:.2f}" for v in values) + " |")


if __name__ == "__main__":
    main()
