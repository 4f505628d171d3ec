"""Should hnswlib's search breadth `ef` grow with k and n? Measured on real text embeddings
(the offline MiniLM embedder over synthetic catalog rows, as `pinshop ingest` embeds them)
with text queries that are not in the index ("green velvet sofa"), which is where the
recall a manifest measures with indexed vectors as queries (0.995 at 23k) overstates.

    python bench/bench_ef.py [--sizes 23000 92000] [--queries 400]

For each n: one HNSW graph (M=16, ef_construction=200, as `pinshop index` builds), exact
answers by a matrix product, then for each ef and k: how often the exact top-1 is found
(by score: synthetic titles repeat, so ties are compared by score, not id), recall@k (the
share of the k found at or above the exact k-th score) and the per-query time. Writes the
"Search breadth" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_ingest import write_section  # noqa: E402

EFS = (64, 100, 128, 200, 256, 400)
KS = (1, 5, 10, 40)


def product_texts(n: int) -> list[str]:

    from pinshop_cli.io.catalog import load_catalog
    from pinshop_cli.synth.catalog import write_catalog

    with tempfile.TemporaryDirectory() as tmp:
        catalog = load_catalog(write_catalog(Path(tmp) / "c.parquet", n, seed=3)).table
    return catalog.column("product_text").to_pylist()


def query_texts(count: int) -> list[str]:
    from pinshop_cli.synth.catalog import CATEGORIES, COLORS, MATERIALS

    rng = np.random.default_rng(7)
    nouns = [noun for names, _ in CATEGORIES.values() for noun in names]
    return [f"{rng.choice(COLORS)} {rng.choice(MATERIALS).lower()} {rng.choice(nouns).lower()}"
            for _ in range(count)]


def embed(texts: list[str]) -> np.ndarray:
    from pinshop_cli.models import get_embedder

    embedder = get_embedder("offline")
    parts = [embedder.embed_texts(texts[i:i + 256]) for i in range(0, len(texts), 256)]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def measure(vectors: np.ndarray, queries: np.ndarray) -> list[dict[str, float]]:
    import hnswlib

    from pinshop_cli.index.hnsw import top_k_exact

    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=16, ef_construction=200)
    index.add_items(vectors, np.arange(len(vectors)))
    _, exact = top_k_exact(vectors, queries, max(KS))
    rows = []
    for ef in EFS:
        index.set_ef(ef)
        for k in KS:
            if ef < k:
                continue
            started = time.perf_counter()
            labels, distances = index.knn_query(queries, k=k)
            per_query = (time.perf_counter() - started) / len(queries) * 1e3
            scores = 1.0 - distances
            top1 = float(np.mean(scores[:, 0] >= exact[:, 0] - 1e-5))
            recall = float(np.mean(scores >= exact[:, k - 1:k] - 1e-5))
            rows.append({"n": len(vectors), "ef": ef, "k": k, "top1": top1,
                         "recall": recall, "ms": per_query})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[23_000, 92_000])
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    options = parser.parse_args()
    started = time.perf_counter()
    texts = product_texts(max(options.sizes))
    vectors = embed(texts)
    queries = embed(query_texts(options.queries))
    embed_s = time.perf_counter() - started
    rows = [row for n in options.sizes for row in measure(vectors[:n], queries)]
    for row in rows:
        print(f"n={row['n']:>7} ef={row['ef']:>3} k={row['k']:>2} top1={row['top1']:.3f} "
              f"recall@k={row['recall']:.4f} {row['ms']:.3f} ms/query", flush=True)
    lines = ["## Search breadth: does `ef` need to grow with k and n?", "",
             f"`python bench/bench_ef.py` ({options.queries} text queries such as \"green "
             "velvet sofa\", not in the index, against the offline MiniLM embeddings of "
             "synthetic catalog rows; HNSW M=16, ef_construction=200; exact answers by a "
             "matrix product; ties compared by score; one run on this 2-core machine, "
             f"{embed_s:.0f} s of it embedding). Top-1 is the share of queries whose exact best "
             "match was found; recall@k the share of the k found that belong to the exact "
             "top k.", "",
             "| n | ef | top-1 | recall@5 | recall@10 | recall@40 | ms/query (k=10) |",
             "|---|---|---|---|---|---|---|"]
    for n in options.sizes:
        for ef in EFS:
            cell = {row["k"]: row for row in rows if row["n"] == n and row["ef"] == ef}
            def fmt(k: int, cell: dict = cell) -> str:
                return f"{cell[k]['recall']:.4f}" if k in cell else "-"
            lines.append(f"| {n:,} | {ef} | {cell[1]['top1']:.3f} | {fmt(5)} | {fmt(10)} | "
                         f"{fmt(40)} | {cell[10]['ms']:.3f} |")
    write_section(options.out, lines[0], "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
