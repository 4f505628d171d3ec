"""The catalog store and the Retriever's filters: the label masks agree with DuckDB's SQL
filters on a synthetic catalog, rows come back in the order asked."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinshop_cli.io.catalog import normalize_catalog
from pinshop_cli.retrieval.store import CatalogStore, Filters
from pinshop_cli.synth.catalog import write_catalog
from pinshop_cli.workspace import Workspace


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CatalogStore:
    root = tmp_path_factory.mktemp("synthetic")
    ws = Workspace.open(root / "ws", create=True)
    normalize_catalog(write_catalog(root / "catalog.csv", 3000, seed=1), ws.catalog,
                      ws.rejects_dir / "catalog.parquet")
    return CatalogStore(ws)


@pytest.mark.parametrize("filters", [
    Filters(category="sofa"), Filters(max_price=150), Filters(min_price=100, max_price=400),
    Filters(color="green"), Filters(category="lamp", color="black", max_price=200),
    Filters(category="no such category"),
])
def test_label_masks_select_what_the_sql_filter_selects(store, filters):
    ids = pq.read_table(store.ws.catalog, columns=["id"]).column("id")
    labels = pa.table({"label": np.arange(len(ids), dtype=np.int64) * 7, "id": ids})
    allowed = store.label_columns(labels).allowed(filters)
    by_mask = sorted(ids.to_numpy(zero_copy_only=False)[allowed // 7].tolist())
    assert by_mask == sorted(store.ids(filters).to_pylist())


def test_rows_come_back_in_the_order_asked_and_skip_unknown_ids(store):
    rows = store.rows(["P17", "nope", "P3"])
    assert [r["id"] for r in rows] == ["P17", "P3"]
    assert store.count(Filters()) == 3000
    assert "sofa" in store.distinct("category")


def test_a_filter_skewed_against_the_query_fans_out_to_category_indexes(tmp_path):
    """A price cap that only lamps and vases pass, asked about sofas: the global graph's
    nearest candidates are all sofas, so the query is answered by the lamp and vase indexes
    (plumbing of real hnswlib indexes over synthetic clustered vectors)."""
    from pinshop_cli.index.hnsw import build_indexes, top_k_exact
    from pinshop_cli.retrieval.retriever import Retriever
    from pinshop_cli.workspace.embeddings import write_part

    per, dim = 5000, 16
    categories = {"sofa": 800.0, "bed": 600.0, "lamp": 30.0, "vase": 20.0}
    rng = np.random.default_rng(3)
    n = per * len(categories)
    pq.write_table(pa.table({
        "id": [f"P{i}" for i in range(n)],
        "title": [f"{c} {i}" for c in categories for i in range(per)],
        "category": np.repeat(list(categories), per),
        "price": np.repeat(list(categories.values()), per) * rng.uniform(0.5, 1.5, n),
    }), tmp_path / "catalog.parquet")
    ws = Workspace.open(tmp_path / "ws", create=True)
    normalize_catalog(tmp_path / "catalog.parquet", ws.catalog,
                      ws.rejects_dir / "catalog.parquet")
    centres = rng.normal(size=(len(categories), dim))
    vectors = (np.repeat(centres, per, axis=0) + 0.4 * rng.normal(size=(n, dim))).astype(
        np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = pq.read_table(ws.catalog, columns=["id", "product_text_hash"])
    write_part(ws, "product_text", "synthetic-16", catalog.column("id"),
               catalog.column("product_text_hash"), vectors, key="all")
    ws.update_settings(embedder="offline", text_model_id="synthetic-16",
                       image_model_id="none", shared_space=False)
    build_indexes(ws.root, kinds=("product_text",), M=16, ef_construction=100)

    retriever = Retriever(ws)
    filters = Filters(max_price=100.0)
    queries = vectors[:20]  # sofas
    found = retriever.search(queries, 10, "product_text", filters)
    assert found.index == "product_text by category (lamp, vase)"
    prices = pq.read_table(ws.catalog, columns=["price"]).column("price").to_numpy()
    ids = catalog.column("id").to_numpy(zero_copy_only=False)
    passing = np.flatnonzero(prices <= 100.0)
    positions, _ = top_k_exact(vectors[passing], queries, 10)
    truth = ids[passing][positions]
    recall = np.mean([len({h.id for h in hits} & set(row)) / 10
                      for hits, row in zip(found.hits, truth, strict=True)])
    assert recall >= 0.9
    assert all(len(hits) == 10 for hits in found.hits)
    # The plan is prepared once per filter: a second search reuses it.
    assert retriever.partitions(retriever.index("product_text"), filters, 10) is \
        retriever.partitions(retriever.index("product_text"), filters, 10)
