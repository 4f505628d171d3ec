"""What checking index files on load costs a cold query: the same commands with and without
the readers' checks (PINSHOP_VERIFY=off), alternated in one run, medians.

    python bench/bench_verify.py [--runs 9] [--size 100000]

1. `pinshop match --text "green velvet sofa"` in a new process on the sample workspace
   (ingested and indexed here first): the whole cold command, model load included.
2. A new process that loads the product_text index and answers one query, on a workspace
   of `--size` synthetic products (vectors as in bench/bench_scale.py): the load path the
   checks sit on, without the embedder, so the checks' share is larger there.
Also the checks alone, in process (sizes, full sha256 up to 4 MiB, sampled digests above).
Writes the "Checks on load" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_ingest import write_section  # noqa: E402

SAMPLE = REPO / "sample_data"
QUERY_CODE = """
import sys
import numpy as np
from pinshop_cli.retrieval.retriever import Retriever
retriever = Retriever(sys.argv[1])
vector = np.asarray(retriever.index("product_text").vectors_of(np.array([7])))
print(retriever.search(vector, 5, "product_text").hits[0][0].id)
"""


def timed(args: list[str], verify: bool) -> float:
    env = {**os.environ, "PINSHOP_OFFLINE": "1", "PINSHOP_VERIFY": "on" if verify else "off"}
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - started


def alternate(args: list[str], runs: int) -> dict[str, float]:
    timed(args, True)  # warm the page cache and any one-time export
    on, off = [], []
    for _ in range(runs):
        on.append(timed(args, True))
        off.append(timed(args, False))
    with_checks, without = statistics.median(on), statistics.median(off)
    return {"with": with_checks, "without": without,
            "overhead": (with_checks - without) / without}


def checks_alone(root: Path, name: str = "product_text", repeats: int = 20) -> float:
    from pinshop_cli.index.generations import require_whole
    from pinshop_cli.index.manifest import read_manifest
    from pinshop_cli.workspace import Workspace

    ws = Workspace.open(root)
    manifest = read_manifest(ws, name)
    assert manifest is not None
    started = time.perf_counter()
    for _ in range(repeats):
        require_whole(ws, manifest, full=False)
    return (time.perf_counter() - started) / repeats


def sample_workspace(work: Path) -> Path:
    from pinshop_cli import build_indexes, ingest

    root = work / "sample"
    ingest(root, SAMPLE / "catalog.csv", SAMPLE / "pins")
    build_indexes(root)
    return root


def synthetic_workspace(work: Path, size: int) -> Path:
    from bench_scale import normalize_in_child, synthetic_vectors, write_vectors

    from pinshop_cli import build_indexes
    from pinshop_cli.synth.catalog import write_catalog
    from pinshop_cli.workspace import Workspace

    root = work / f"synthetic-{size}"
    normalize_in_child(write_catalog(work / "catalog.csv", size), root)
    write_vectors(Workspace.open(root), synthetic_vectors(size))
    build_indexes(root, kinds=("product_text",), by_category=False, recall_sample=0)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    options = parser.parse_args()
    os.environ["PINSHOP_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory(prefix="pinshop-verify-") as tmp:
        work = Path(tmp)
        sample = sample_workspace(work)
        match = alternate([sys.executable, "-m", "pinshop_cli.commands.main", "match", "--text",
                           "green velvet sofa", "-w", str(sample), "--json"], options.runs)
        sample_checks = checks_alone(sample)
        big = synthetic_workspace(work, options.size)
        load = alternate([sys.executable, "-c", QUERY_CODE, str(big)], options.runs)
        big_checks = checks_alone(big)
        index_mb = sum(p.stat().st_size for p in (big / "indexes").glob("product_text.g*")) / 2**20
    for name, result in (("match", match), ("load", load)):
        print(f"{name}: {result['with']:.3f} s with checks, {result['without']:.3f} s without, "
              f"{100 * result['overhead']:+.1f}%")
    print(f"checks alone: {sample_checks * 1e3:.2f} ms (sample), {big_checks * 1e3:.2f} ms "
          f"({options.size:,}, {index_mb:.0f} MB of index files)")
    lines = [
        "## Checks on load: what verifying index files costs a cold query", "",
        f"`python bench/bench_verify.py` (medians of {options.runs} alternating runs of each "
        "command with the readers' checks and with `PINSHOP_VERIFY=off`, one run on this "
        "2-core machine; the page cache warm, as for a repeated cold command).", "",
        "| cold command | with checks | without | overhead | the checks alone |",
        "|---|---|---|---|---|",
        f"| `pinshop match --text \"green velvet sofa\"`, sample workspace (44 products) | "
        f"{match['with']:.2f} s | {match['without']:.2f} s | {100 * match['overhead']:+.1f}% | "
        f"{sample_checks * 1e3:.1f} ms |",
        f"| load the product_text index + one query, {options.size:,} synthetic products "
        f"({index_mb:.0f} MB of index files) | {load['with']:.2f} s | {load['without']:.2f} s "
        f"| {100 * load['overhead']:+.1f}% | {big_checks * 1e3:.1f} ms |", "",
        "The checks read sizes, hash files up to 4 MiB in full and take a sampled digest (16 "
        "blocks of 64 KiB) of bigger ones, so their cost stays at a few milliseconds "
        "whatever the catalog's size; `pinshop index` and `index --status` hash every byte "
        "(sha256 at about 1.7 GB/s here).",
    ]
    write_section(options.out, lines[0], "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
