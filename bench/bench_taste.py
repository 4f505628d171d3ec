"""Taste-profile scoring: DuckDB array functions (exact) vs an hnswlib index (approximate),
top 50 products per user, same vectors, same run. Run: python bench/bench_taste.py"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb
import hnswlib
import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
K = 50


def unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def duckdb_top(profiles: np.ndarray, items: np.ndarray) -> tuple[float, np.ndarray]:
    dim = profiles.shape[1]
    con = duckdb.connect()
    con.register("p", pa.table({"u": np.arange(len(profiles)), "v": pa.FixedSizeListArray
                                .from_arrays(pa.array(profiles.ravel()), dim)}))
    con.register("i", pa.table({"j": np.arange(len(items)), "v": pa.FixedSizeListArray
                                .from_arrays(pa.array(items.ravel()), dim)}))
    started = time.perf_counter()
    rows = con.sql(f"""
        SELECT u, j FROM (
            SELECT p.u, i.j, array_inner_product(p.v::FLOAT[{dim}], i.v::FLOAT[{dim}]) AS s
            FROM p CROSS JOIN i)
        QUALIFY row_number() OVER (PARTITION BY u ORDER BY s DESC) <= {K}
        ORDER BY u""").fetchnumpy()
    return time.perf_counter() - started, rows["j"].reshape(len(profiles), K)


def hnsw_top(profiles: np.ndarray, items: np.ndarray) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=items.shape[1])
    index.init_index(max_elements=len(items), M=16, ef_construction=100)
    index.add_items(items)
    index.set_ef(2 * K)
    labels, _ = index.knn_query(profiles, k=K)
    return time.perf_counter() - started, labels


def main() -> None:
    sys.path.insert(0, str(HERE))
    from bench_ingest import write_section

    rng = np.random.default_rng(0)
    lines = ["| users | products | dim | DuckDB array_inner_product s | hnswlib s (build + "
             "query) | speed-up | hnswlib recall@50 |", "|---|---|---|---|---|---|---|"]
    for users, n_items, dim in ((2_000, 2_000, 1280), (2_000, 5_000, 64), (20_000, 5_000, 64)):
        profiles, items = unit(users, dim, rng), unit(n_items, dim, rng)
        exact_s, exact = duckdb_top(profiles, items)
        approx_s, approx = hnsw_top(profiles, items)
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(exact, approx, strict=True)])
        lines.append(f"| {users:,} | {n_items:,} | {dim} | {exact_s:.2f} | {approx_s:.2f} | "
                     f"{exact_s / approx_s:.0f}x | {recall:.3f} |")
        print(lines[-1], file=sys.stderr)
    section = ("## Taste profiles: DuckDB array functions vs hnswlib\n\n"
               "`python bench/bench_taste.py` — top 50 products per user profile, exact in "
               "DuckDB (cross join + array_inner_product + window) vs an HNSW index built and "
               "queried in the same run (random unit vectors).\n\n" + "\n".join(lines) + "\n")
    write_section(HERE.parent / "BENCHMARKS.md",
                  "## Taste profiles: DuckDB array functions vs hnswlib", section)
    print(section)


if __name__ == "__main__":
    main()
