"""Sharded HNSW against one index over the same vectors, in the same run.

Vectors: 100k synthetic 384-d unit vectors in 2,000 clusters (the shape of MiniLM text
embeddings of a catalog; synthetic because embedding 100k real texts takes ~15 minutes
here). For one index (hnswlib, all cores) and 2 and 4 shards (built in processes, the
cores shared between them): build seconds, recall@10 against exact search on 500 queries,
and single-query latency p50 of the fan-out-and-merge search.

Run: python bench/bench_shards.py [--n 100000]   (writes the "Sharded indexes" section)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import hnswlib
import numpy as np
from bench_ingest import write_section

from pinshop_cli.engines import LocalEngine
from pinshop_cli.index.hnsw import measure_recall
from pinshop_cli.index.shards import ShardedIndex, build_shards

HERE = Path(__file__).parent


def clustered(n: int, dim: int = 384, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    # Noise well above the clusters' spread: neighbours are not trivially the cluster, so
    # recall has room to differ.
    vectors = centres[rng.integers(0, clusters, n)] + 1.5 * rng.normal(
        size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def p50_ms(index: object, queries: np.ndarray) -> float:
    index.set_ef(64)  # type: ignore[attr-defined]
    times = []
    for query in queries:
        started = time.perf_counter()
        index.knn_query(query[None, :], k=10)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    vectors = clustered(args.n)
    queries = vectors[np.random.default_rng(1).choice(args.n, 300, replace=False)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        single = hnswlib.Index(space="ip", dim=vectors.shape[1])
        single.init_index(max_elements=args.n, M=16, ef_construction=200)
        single.add_items(vectors, np.arange(args.n))
        build = time.perf_counter() - started
        rows.append(("one index", build, measure_recall(single, vectors, 500),
                     p50_ms(single, queries)))
        for shards in (2, 4):
            started = time.perf_counter()
            files = build_shards(vectors, Path(tmp), f"s{shards}", shards, "ip", 16, 200,
                                 LocalEngine())
            build = time.perf_counter() - started
            index = ShardedIndex.load(Path(tmp), files, "ip", vectors.shape[1],
                                      np.arange(args.n))
            rows.append((f"{shards} shards", build, measure_recall(index, vectors, 500),
                         p50_ms(index, queries)))
    base = rows[0]
    table = ["| index | build s | recall@10 | recall vs one index | query p50 ms |",
             "|---|---|---|---|---|"] + [
        f"| {name} | {build:.1f} | {recall:.4f} | {recall - base[2]:+.4f} | {p50:.2f} |"
        for name, build, recall, p50 in rows]
    section = (
        "## Sharded indexes: `index --shards N`\n\n"
        f"`python bench/bench_shards.py` — {args.n:,} synthetic 384-d vectors (clustered), "
        "M 16, ef_construction 200, ef 64, this 2-core machine; shards built in processes. "
        "Goal: recall@10 within 0.01 of one index.\n\n" + "\n".join(table) + "\n\n"
        f"Smaller graphs are cheaper to build (an insert searches a smaller graph): "
        f"{rows[-1][0]} built {base[1] / rows[-1][1]:.1f}x faster than one index on the same "
        "cores, and a cluster builds the shards at once (`--engine ray`). Every query asks "
        f"every shard, so a query costs more: p50 {base[3]:.2f} ms with one index, "
        f"{rows[-1][3]:.2f} ms with {rows[-1][0]}.\n\n")
    write_section(args.out, "## Sharded indexes", section)
    print(section)


if __name__ == "__main__":
    main()
