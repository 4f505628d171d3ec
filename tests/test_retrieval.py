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
