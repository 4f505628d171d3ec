"""`similar ID --offers`: the same product at other merchants, from its duplicates cluster,
with price and stock, cheapest first (plumbing: synthetic text vectors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from commands.main import app
from pinshop_cli.index.hnsw import build_indexes
from pinshop_cli.io.catalog import normalize_catalog
from pinshop_cli.workspace import Workspace
from pinshop_cli.workspace.embeddings import write_part

LISTINGS = [  # id, merchant, url, price, sale_price, availability
    ("A1", "Nordhus", "https://nordhus.example/p/a", "100.00", None, "in_stock"),
    ("A2", None, "https://www.cheapshop.example/item/9", "90.00", "80.00", "out_of_stock"),
    ("A3", "Nordhus", "https://nordhus.example/p/a-blue", "100.00", None, "in_stock"),
    ("A4", "Bigbox", "https://bigbox.example/a", "120.00", None, "in_stock"),
    ("A5", "Greenshop", "https://greenshop.example/a", "95.00", None, "in_stock"),
    ("A6", "Lampworld", "https://lampworld.example/a", "50.00", None, "in_stock"),
]
# A4's colour is A1's in other words; A5's is another colour.
COLOURS = ["natural", None, "blue", "Natural oak", "black", None]
CATEGORIES = ["chair"] * 5 + ["lamp"]  # A6: another category, another product


def _workspace(root: Path, colours: list[str | None] = COLOURS) -> Path:
    rng = np.random.default_rng(5)
    singles = 30
    ids = [row[0] for row in LISTINGS] + [f"S{n}" for n in range(singles)]
    pq.write_table(pa.table({
        "id": ids,
        "title": ["Oslo chair"] * len(LISTINGS) + [f"thing {n}" for n in range(singles)],
        "merchant": [row[1] for row in LISTINGS] + ["Elsewhere"] * singles,
        "url": [row[2] for row in LISTINGS] + [None] * singles,
        "price": [row[3] for row in LISTINGS] + ["0.00"] + ["10.00"] * (singles - 1),
        "sale_price": [row[4] for row in LISTINGS] + [None] * singles,
        "currency": ["EUR"] * len(ids),
        "availability": [row[5] for row in LISTINGS] + ["in_stock"] * singles,
        "color": colours + [None] * singles,
        "category": CATEGORIES + [None] * singles,
    }), root / "catalog.parquet")
    ws = Workspace.open(root / "ws", create=True)
    normalize_catalog(root / "catalog.parquet", ws.catalog, ws.rejects_dir / "catalog.parquet")
    centre = rng.normal(size=16)
    vectors = np.vstack([centre + 0.01 * rng.normal(size=(len(LISTINGS), 16)),
                         rng.normal(size=(singles, 16))]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = pq.read_table(ws.catalog, columns=["id", "product_text_hash"])
    order = [ids.index(pid) for pid in catalog.column("id").to_pylist()]
    write_part(ws, "product_text", "synthetic-16", catalog.column("id"),
               catalog.column("product_text_hash"), vectors[order], key="all")
    ws.update_settings(embedder="offline", text_model_id="synthetic-16",
                       image_model_id="none", shared_space=False)
    build_indexes(ws.root, kinds=("product_text",), M=16, ef_construction=100)
    return ws.root


def test_a_chain_of_alike_products_is_split_at_a_higher_bar() -> None:
    """Plumbing: 150 products each near the next (0.8) chain into one cluster at 0.78;
    inside it only the pairs at 0.99 count, and a cluster of 100 is left alone."""
    from pinshop_cli.look.duplicates import MAX_CLUSTER, clusters_of, split_chains

    left, right = np.arange(149), np.arange(1, 150)
    scores = np.where(left % 3 == 0, 0.99, 0.8)
    edges, bar = split_chains(left, right, scores, 0.78)
    assert bar == 0.82 and set(edges) == set(np.flatnonzero(scores == 0.99))
    _, component = clusters_of(left[edges], right[edges])
    assert np.bincount(component).max() == 2
    # 150 exact duplicates (float32 cosine 0.99999994) stay one cluster: lost every link.
    same = np.full(149, np.float32(0.99999994))
    edges, bar = split_chains(left, right, same, 0.78)
    assert len(edges) == 149 and bar >= 1
    short = MAX_CLUSTER - 1  # edges of a 100-product chain
    edges, bar = split_chains(left[:short], right[:short], scores[:short], 0.78)
    assert bar == 0.78 and len(edges) == short


def test_duplicates_never_join_two_stated_colours(tmp_path: Path) -> None:
    """Plumbing: six listings with one text vector; a yellow and a grey one are two
    products however alike (colour variants share a text), navy and blue are one family,
    as are gray and grey."""
    from pinshop_cli.look.duplicates import find_duplicates

    root = _workspace(tmp_path, ["yellow", "grey", "navy", "Blue", "yellow", "gray"])
    result = find_duplicates(root, threshold=0.95, write=False)
    assert not any("two stated colours" in note for note in result.notes)
    found = result.table
    members: dict[int, set[str]] = {}
    for cluster, product in zip(found.column("cluster").to_pylist(),
                                found.column("id").to_pylist(), strict=True):
        members.setdefault(cluster, set()).add(product)
    assert sorted(members.values(), key=sorted) == [{"A1", "A5"}, {"A2", "A6"}, {"A3", "A4"}]
    # A listing that states no colour links a yellow and a grey one: said in a note.
    (tmp_path / "joined").mkdir()
    joined = find_duplicates(_workspace(tmp_path / "joined", ["yellow", None, "grey", None,
                                                              None, None]),
                             threshold=0.95, write=False)
    assert joined.clusters == 1 and any(
        note.startswith("1 cluster holds two stated colours") for note in joined.notes)


def test_offers_list_other_merchants_cheapest_first(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    runner = CliRunner()
    missing = runner.invoke(app, ["similar", "A1", "--offers", "-w", str(root)])
    assert missing.exit_code == 1 and "pinshop duplicates" in str(missing.exception)
    assert runner.invoke(app, ["duplicates", "--threshold", "0.95", "-w", str(root)]
                         ).exit_code == 0

    def offers(product: str) -> dict:
        shown = runner.invoke(app, ["similar", product, "--offers", "--json", "-w", str(root)])
        assert shown.exit_code == 0, shown.output
        return json.loads(shown.stdout)

    found = offers("A1")
    # A3 is at A1's own merchant: another listing there, not another offer; A5 is black,
    # A1 natural: a variant, not another offer (A2 states no colour: it may be one); A6,
    # in the cluster but a lamp, is another product.
    assert [(o["id"], o["merchant"], o["reference"]) for o in found["offers"]] == [
        ("A2", "cheapshop.example", False), ("A1", "Nordhus", True), ("A4", "Bigbox", False)]
    cheapest = found["offers"][0]
    assert (cheapest["price"], cheapest["sale_price"], cheapest["availability"]) == (
        90.0, 80.0, "out_of_stock")
    assert found["notes"] == []
    assert [o["id"] for o in offers("A2")["offers"]] == ["A2", "A5", "A1", "A3", "A4"]
    alone = offers("S3")
    assert alone["offers"] == [] and "no other merchant" in alone["notes"][0]
    table = runner.invoke(app, ["similar", "A1", "--offers", "-w", str(root)])
    assert table.exit_code == 0, table.output
    assert "80.00 EUR" in table.stdout and "this one" in table.stdout
    # No other offer: the note alone (an empty table with a blank column was drawn).
    assert runner.invoke(app, ["similar", "S3", "--offers", "-w", str(root)]).stdout == ""
    assert runner.invoke(app, ["similar", "nope", "--offers", "-w", str(root)]).exit_code == 1
    # Nothing is cheaper than free (it said "max-price must be 0 or more, not -4.9e-324").
    free = runner.invoke(app, ["similar", "S0", "--cheaper", "-w", str(root)])
    assert free.exit_code == 1 and str(free.exception) == "S0 costs 0.00: nothing is cheaper"
