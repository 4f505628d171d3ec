"""Time of the look features at catalog scale: 100k synthetic products (titles, categories,
prices from the generator; vectors synthetic, clustered like real catalogs; events from the
shopper generator), each against the bare library doing its core work in the same run.
Writes the "Look features: speed" section of BENCHMARKS.md.

    python bench/bench_look.py [--products 100000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import write_section  # noqa: E402  (same folder)
from bench_scale import normalize_in_child, synthetic_vectors, write_vectors  # noqa: E402

from pinshop_cli.index.hnsw import build_indexes  # noqa: E402
from pinshop_cli.io.events import ingest_events  # noqa: E402
from pinshop_cli.look.audit import audit  # noqa: E402
from pinshop_cli.look.complete import compatibility_from_scenes, complete, workspace_scenes  # noqa: E402,E501
from pinshop_cli.look.duplicates import find_duplicates  # noqa: E402
from pinshop_cli.look.reference import vector_of  # noqa: E402
from pinshop_cli.look.similar import similar  # noqa: E402
from pinshop_cli.retrieval.retriever import Retriever  # noqa: E402
from pinshop_cli.synth.catalog import write_catalog  # noqa: E402
from pinshop_cli.synth.events import SynthConfig, generate_for_workspace  # noqa: E402

HERE = Path(__file__).parent
KIND = "product_text"  # the synthetic vectors are stored as product texts


def timed(function, *args, **kwargs) -> float:  # noqa: ANN001
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def per_query_ms(function, ids: list[str]) -> float:  # noqa: ANN001
    samples = []
    for product_id in ids:
        started = time.perf_counter()
        function(product_id)
        samples.append(time.perf_counter() - started)
    return 1000 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    n = args.products
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        csv = write_catalog(Path(tmp) / "catalog.csv", n)
        normalize_in_child(csv, root)
        from pinshop_cli.workspace import Workspace

        ws = Workspace.open(root)
        vectors = synthetic_vectors(n)
        write_vectors(ws, vectors)
        build_indexes(root, kinds=(KIND,))
        generate_for_workspace(Path(tmp) / "events.parquet",
                               SynthConfig(users=20_000, events=400_000), root)
        ingest_events(Path(tmp) / "events.parquet", root)
        retriever = Retriever(root)
        rng = np.random.default_rng(0)
        ids = [f"P{i}" for i in rng.choice(n, args.queries, replace=False)]
        loaded = retriever.index(KIND)
        similar(ids[0], retriever=retriever)  # warm: the scale and label columns, once
        rows = []
        similar_ms = per_query_ms(lambda i: similar(i, retriever=retriever), ids)
        cheaper_ms = per_query_ms(lambda i: similar(i, retriever=retriever, cheaper=True), ids)
        # The bare library: the same top-6 query in the category's own hnswlib index.
        by_category = {c: retriever.index(KIND, c) for c in retriever.store.distinct("category")}
        queries = {i: (by_category[retriever.rows([i])[0]["category"]],
                       vector_of(retriever, i, KIND)[None, :]) for i in ids}
        for index, _ in queries.values():
            index.index.set_ef(64)
        raw_ms = per_query_ms(lambda i: queries[i][0].index.knn_query(queries[i][1], k=6), ids)
        rows.append(("`similar ID` (in its category)", f"{similar_ms:.1f} ms per query",
                     f"hnswlib top-6 in the category's index: {raw_ms:.2f} ms (the rest: "
                     "the reference's and the hits' catalog rows, from DuckDB)"))
        rows.append(("`similar ID --cheaper`", f"{cheaper_ms:.1f} ms per query", ""))
        scenes_s = timed(lambda: compatibility_from_scenes(workspace_scenes(ws)))
        complete(ids[0], retriever=retriever)
        complete_ms = per_query_ms(lambda i: complete(i, retriever=retriever), ids[:30])
        rows.append(("`complete ID` (co-occurrence learned per call)",
                     f"{complete_ms:.0f} ms per query",
                     f"of which co-occurrence from 400k events: {1000 * scenes_s:.0f} ms"))
        duplicates_s = timed(find_duplicates, retriever=retriever, write=False)
        started = time.perf_counter()
        for start in range(0, n, 8192):
            loaded.index.knn_query(loaded.vectors_of(np.arange(start, min(n, start + 8192))),
                                   k=11)
        graph_s = time.perf_counter() - started
        rows.append(("`duplicates`", f"{1000 * duplicates_s / (n / 1000):.0f} ms per 1k "
                     f"products ({duplicates_s:.1f} s)",
                     f"raw hnswlib neighbour graph alone: {graph_s:.1f} s "
                     f"({duplicates_s / graph_s:.2f}x)"))
        audit_s = timed(audit, retriever=retriever, write=False, kind=KIND)
        rows.append(("`audit` (every check)", f"{1000 * audit_s / (n / 1000):.0f} ms per 1k "
                     f"products ({audit_s:.1f} s)", ""))
        retriever.close()
    lines = ["## Look features: speed (`similar`, `complete`, `duplicates`, `audit`)", "",
             f"`python bench/bench_look.py` — {n:,} products (synthetic vectors stored as "
             f"product texts, {vectors.shape[1]}-d;"
             " 400k synthetic events), warm retriever, 2 cores, medians over "
             f"{args.queries} random products.", "",
             "| feature | time | bare library, same run |", "|---|---|---|",
             *[f"| {a} | {b} | {c} |" for a, b, c in rows]]
    print("\n".join(lines))
    write_section(args.out, "## Look features: speed", "\n".join(lines))


if __name__ == "__main__":
    main()
