"""Family-collapsed search against plain search, and chat's price-history read, on a
synthetic catalog.

    python bench/bench_families.py [--products 100000] [--families 20000] [--dim 384]
                                   [--queries 200] [--workdir DIR]

A catalog of --products products, 80% of them variants of --families item_group_id
families (colour x size), their text vectors clustered by family (a family's variants lie
close together, as their texts do), in a workspace with an HNSW index (M=16,
ef_construction=100). In the same run, query by query, alternating:

1. plain `Retriever.search` against `retrieval/families.search` (what `match`, the batched
   text search, chat and `similar` run) at k = 5 (chat's fetch: SHOWN + 1), 10 and 50,
   without filters and with a max-price filter; ms per query (mean and median), the ratio,
   and how many queries came back with fewer than k families (none should);
2. the family arrays, made once per catalog store, and the collapse alone;
3. chat's price history read (assistant/history.last_price_changes): the last change of the
   4 shown products in a history of an initial snapshot and two with 5% of the prices
   changed, against the same query over every product's history.

--workdir keeps the workspace between runs (the index is built once).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pinshop_cli.assistant.history import changes_sql, last_price_changes  # noqa: E402
from pinshop_cli.index.hnsw import build_indexes  # noqa: E402
from pinshop_cli.io.catalog import normalize_catalog  # noqa: E402
from pinshop_cli.io.history import history_store  # noqa: E402
from pinshop_cli.retrieval import families  # noqa: E402
from pinshop_cli.retrieval.retriever import Retriever  # noqa: E402
from pinshop_cli.retrieval.store import Filters, Product  # noqa: E402
from pinshop_cli.workspace import Workspace  # noqa: E402
from pinshop_cli.workspace.embeddings import write_part  # noqa: E402
from pinshop_cli.workspace.storage import query_arrow, sql_path  # noqa: E402

MODEL = "synthetic"
SNAPSHOTS = [datetime(2026, 10, 1), datetime(2026, 11, 2), datetime(2026, 11, 20)]


def synthetic(n: int, n_families: int, dim: int, seed: int = 0
              ) -> tuple[pa.Table, np.ndarray, list[np.ndarray]]:
    """The catalog, its vectors (row order) and the price of each snapshot."""
    rng = np.random.default_rng(seed)
    family = rng.integers(0, n_families, n)
    grouped = rng.random(n) < 0.8
    ids = np.char.add("P", np.arange(n).astype(str))
    centres = rng.normal(size=(n_families, dim)).astype(np.float32)
    vectors = centres[family] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    vectors[~grouped] = rng.normal(size=(int((~grouped).sum()), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    prices = [rng.uniform(5, 500, n).round(2)]
    for _ in SNAPSHOTS[1:]:
        changed = rng.random(n) < 0.05
        prices.append(np.where(changed, (prices[-1] * rng.uniform(0.6, 1.3, n)).round(2),
                               prices[-1]))
    catalog = pa.table({
        "id": ids, "title": np.char.add("thing ", ids), "category": np.full(n, "shirt"),
        "color": np.array(["red", "green", "blue", "black", "white"])[rng.integers(0, 5, n)],
        "size": np.array(["XS", "S", "M", "L", "XL"])[rng.integers(0, 5, n)],
        "price": prices[-1], "currency": np.full(n, "EUR"),
        "availability": np.full(n, "in_stock"),
        "item_group_id": pa.array(np.where(grouped, np.char.add("fam-", family.astype(str)),
                                           None))})
    return catalog, vectors.astype(np.float32), prices


def make_workspace(root: Path, n: int, n_families: int, dim: int) -> tuple[Workspace, float]:
    """The workspace (made once per --workdir); returns it and the index build time."""
    catalog, vectors, prices = synthetic(n, n_families, dim)
    if (root / "ws" / "catalog.parquet").exists():
        return Workspace.open(root / "ws"), float("nan")
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(catalog, root / "catalog.parquet")
    ws = Workspace.open(root / "ws", create=True)
    normalize_catalog(root / "catalog.parquet", ws.catalog, ws.rejects_dir / "catalog.parquet")
    stored = pq.read_table(ws.catalog, columns=["id", "product_text_hash"])
    order = {pid: row for row, pid in enumerate(catalog.column("id").to_pylist())}
    at = np.fromiter((order[i] for i in stored.column("id").to_pylist()), np.int64)
    write_part(ws, "product_text", MODEL, stored.column("id"),
               stored.column("product_text_hash"), vectors[at], key="all")
    ws.update_settings(embedder="offline", text_model_id=MODEL, image_model_id="none",
                       shared_space=False)
    started = time.perf_counter()
    build_indexes(ws.root, kinds=("product_text",), M=16, ef_construction=100)
    built = time.perf_counter() - started
    # The history: every product's first row, then a row for each price change.
    history = history_store(ws.root)
    history.ensure()
    ids = catalog.column("id")
    for n_snap, (seen, price) in enumerate(zip(SNAPSHOTS, prices, strict=True)):
        keep = np.ones(n, bool) if n_snap == 0 else price != prices[n_snap - 1]
        part = query_arrow("""
            SELECT id, $seen::TIMESTAMP AS seen_at, price::DECIMAL(18, 2) AS price,
                   NULL::DECIMAL(18, 2) AS sale_price, 'EUR' AS currency,
                   'in_stock' AS availability FROM rows""", {"seen": seen},
                           {"rows": pa.table({"id": ids.filter(pa.array(keep)),
                                              "price": price[keep]})})
        history.append(part, f"{seen:%Y%m%dT%H%M%S}")
    return ws, built


def per_query(calls: dict[str, Callable[[int], Any]], queries: int) -> dict[str, list[float]]:
    """Each call's time for each query, the calls alternating query by query."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call(0)  # warm
    for q in range(queries):
        for name, call in calls.items():
            started = time.perf_counter()
            call(q)
            times[name].append(time.perf_counter() - started)
    return times


def line(label: str, times: dict[str, list[float]], base: str, other: str) -> str:
    mean = {k: statistics.fmean(v) * 1e3 for k, v in times.items()}
    median = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return (f"{label}: {base} {mean[base]:.2f} ms/query (median {median[base]:.2f}), "
            f"{other} {mean[other]:.2f} ms (median {median[other]:.2f}), "
            f"{mean[other] / mean[base]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--families", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.workdir or Path(scratch)
        ws, built = make_workspace(root, args.products, args.families, args.dim)
        print(f"{args.products:,} products, {args.families:,} families (80% of products), "
              f"dim {args.dim}; index build {built:.1f} s")
        retriever = Retriever(ws)
        try:
            run(retriever, ws, args)
        finally:
            retriever.close()


def run(retriever: Retriever, ws: Workspace, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    loaded = retriever.route("product_text", None, 1)
    picked = rng.choice(retriever.store.size, args.queries, replace=False)
    _, vectors = loaded.vectors_by_id([f"P{i}" for i in picked])
    queries = np.asarray(vectors, np.float32)
    queries += 0.05 * rng.normal(size=queries.shape).astype(np.float32)
    retriever.store.size  # noqa: B018 (loaded before timing)
    started = time.perf_counter()
    index = families.family_index(retriever.store)
    print(f"family arrays, once per catalog store: {time.perf_counter() - started:.2f} s "
          f"({len(index.names) if index else 0:,} families of 2+)")
    for k in (5, 10, 50):
        for label, filters in (("no filter", None), ("max_price 100", Filters(max_price=100))):
            short = 0

            def plain(q: int, k: int = k, filters: Filters | None = filters) -> Any:
                return retriever.search(queries[q:q + 1], k, "product_text", filters)

            def folded(q: int, k: int = k, filters: Filters | None = filters) -> Any:
                nonlocal short
                found = families.search(retriever, queries[q:q + 1], k, "product_text",
                                        filters)
                short += len(found.hits[0]) < k
                return found

            times = per_query({"plain": plain, "families": folded}, args.queries)
            print(line(f"k={k}, {label}", times, "plain", "families")
                  + f"; {short} short of k families")
    raw = retriever.search(queries[:1], 40, "product_text")
    if index is not None:
        started = time.perf_counter()
        for _ in range(args.queries):
            families.collapse(index, raw.hits, 10)
        print(f"collapse alone (40 hits to 10): "
              f"{(time.perf_counter() - started) / args.queries * 1e3:.3f} ms")
    history(ws, retriever, args.queries)


def history(ws: Workspace, retriever: Retriever, reps: int) -> None:
    """Chat's read of the shown products' last price changes against the same query over
    every product's history (what the id filter saves)."""
    files = history_store(ws.root).files()
    rows = query_arrow(f"SELECT count(*) AS n FROM read_parquet("
                       f"[{', '.join(sql_path(p) for p in files)}])").column("n")[0].as_py()
    rng = np.random.default_rng(2)
    ids = [f"P{i}" for i in rng.integers(0, retriever.store.size, 4 * reps)]
    shown = [[Product.from_row(r) for r in retriever.rows(ids[n * 4:n * 4 + 4])]
             for n in range(reps)]
    found = 0

    def some(q: int) -> Any:
        nonlocal found
        changes = last_price_changes(ws.root, shown[q], retriever.store.con)
        found += len(changes)
        return changes

    def whole(q: int) -> Any:  # the same query over every product's history
        cursor = retriever.store.con.cursor()
        try:
            return cursor.sql(changes_sql(history_store(ws.root).files(), None)).fetchall()
        finally:
            cursor.close()

    times = per_query({"4 shown ids": some, "every id": whole}, min(reps, 20))
    print(line(f"price history read ({rows:,} history rows)", times, "4 shown ids",
               "every id") + f"; {found} of the shown had a change that holds")


if __name__ == "__main__":
    main()
