"""Product families (`item_group_id`, Shopify's Handle): search and `match` show a family
once, as its best-scoring variant with "3 colours, 2 sizes"; products without a family are
searched as before."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinshop_cli.index.hnsw import build_indexes
from pinshop_cli.io.catalog import normalize_catalog
from pinshop_cli.retrieval import families
from pinshop_cli.retrieval.retriever import Retriever
from pinshop_cli.workspace import Workspace
from pinshop_cli.workspace.embeddings import write_part

SAMPLE_PRODUCTS = Path(__file__).resolve().parents[1] / "sample_data" / "products"
COLOURS, SIZES = ("red", "green", "blue"), ("S", "M")


def _vector_workspace(root: Path, groups: int, singles: int, big: int = 0,
                      with_groups: bool = True) -> tuple[Workspace, np.ndarray, list[str]]:
    """A catalog of `groups` families of 6 variants (3 colours x 2 sizes) whose text vectors
    sit close together, one family of `big` near-identical variants, and `singles` products
    without a family; product_text vectors written directly (plumbing: synthetic vectors)."""
    rng = np.random.default_rng(7)
    dim = 16
    ids, group, colour, size, vectors = [], [], [], [], []
    for g in range(groups):
        centre = rng.normal(size=dim)
        for c in COLOURS:
            for s in SIZES:
                ids.append(f"G{g}-{c}-{s}")
                group.append(f"fam-{g}")
                colour.append(c)
                size.append(s)
                vectors.append(centre + 0.05 * rng.normal(size=dim))
    centre = rng.normal(size=dim)
    for n in range(big):
        ids.append(f"BIG-{n}")
        group.append("fam-big")
        colour.append("black")
        size.append(str(n))
        vectors.append(centre + 0.01 * rng.normal(size=dim))
    for n in range(singles):
        ids.append(f"S{n}")
        group.append(None)
        colour.append("grey")
        size.append(None)
        vectors.append(rng.normal(size=dim))
    table = {"id": ids, "title": [f"thing {i}" for i in ids], "color": colour,
             "size": size, "price": [10.0] * len(ids)}
    if with_groups:
        table["item_group_id"] = group
    pq.write_table(pa.table(table), root / "catalog.parquet")
    ws = Workspace.open(root / "ws", create=True)
    normalize_catalog(root / "catalog.parquet", ws.catalog, ws.rejects_dir / "catalog.parquet")
    matrix = np.asarray(vectors, np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    catalog = pq.read_table(ws.catalog, columns=["id", "product_text_hash"])
    order = {pid: n for n, pid in enumerate(ids)}
    matrix = matrix[[order[pid] for pid in catalog.column("id").to_pylist()]]
    write_part(ws, "product_text", "synthetic-16", catalog.column("id"),
               catalog.column("product_text_hash"), matrix, key="all")
    ws.update_settings(embedder="offline", text_model_id="synthetic-16",
                       image_model_id="none", shared_space=False)
    build_indexes(ws.root, kinds=("product_text",), M=16, ef_construction=100)
    return ws, matrix, catalog.column("id").to_pylist()


def test_a_family_is_shown_once_as_its_best_variant(tmp_path: Path) -> None:
    ws, vectors, ids = _vector_workspace(tmp_path, groups=20, singles=40)
    retriever = Retriever(ws)
    queries = vectors[:: 7][:12]
    found = families.search(retriever, queries, 5, "product_text")
    raw = retriever.search(queries, len(ids), "product_text")
    for row, everything in zip(found.hits, raw.hits, strict=True):
        assert len(row) == 5
        keys = [pid.split("-")[0] if pid.startswith("G") else pid for pid in (h.id for h in row)]
        assert len(set(keys)) == 5  # each family once
        # Each shown hit is its family's best-scoring variant, and the shown ones are the
        # best five families.
        best: dict[str, float] = {}
        for hit in everything:
            key = hit.id.split("-")[0] if hit.id.startswith("G") else hit.id
            best.setdefault(key, hit.score)
        assert [h.score for h in row] == pytest.approx(sorted(best.values(),
                                                              reverse=True)[:5], abs=1e-4)
    shown = {h.id for row in found.hits for h in row}
    grouped = {pid for pid in shown if pid.startswith("G")}
    assert grouped and set(found.families) == grouped  # singles have no family
    family = found.families[next(iter(grouped))]
    assert (family["variants"], family["colours"], family["sizes"]) == (6, 3, 2)
    assert family["summary"] == "3 colours, 2 sizes"
    products = found.products(retriever)
    assert all((p.family is None) == (not p.id.startswith("G")) for row in products
               for p in row)


def test_a_family_filling_the_first_fetch_is_searched_wider(tmp_path: Path) -> None:
    ws, vectors, ids = _vector_workspace(tmp_path, groups=2, singles=60, big=50)
    retriever = Retriever(ws)
    query = vectors[[ids.index("BIG-0")]]
    found = families.search(retriever, query, 4, "product_text")
    assert len(found.hits[0]) == 4  # 50 variants of one family filled 4 x 4 candidates
    assert sum(h.id.startswith("BIG") for h in found.hits[0]) == 1
    assert found.families[found.hits[0][0].id]["summary"] == "50 sizes"


def test_the_widening_stops_at_max_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """A query whose first MAX_FETCH candidates are all one family's variants gets that
    family alone (fewer than k), the same as collapsing a plain search of MAX_FETCH, unless
    k + 1 times the largest family is allowed further (MAX_GROUP_FETCH)."""
    ws, vectors, ids = _vector_workspace(tmp_path, groups=2, singles=60, big=50)
    retriever = Retriever(ws)
    query = vectors[[ids.index("BIG-0")]]
    # The 50 variants of one family do not hide the rest: (4 + 1) x 50 may be fetched.
    monkeypatch.setattr(families, "MAX_FETCH", 20)
    past = families.search(retriever, query, 4, "product_text").hits[0]
    assert len(past) == 4 and sum(h.id.startswith("BIG") for h in past) == 1
    monkeypatch.setattr(families, "MAX_GROUP_FETCH", 20)
    found = families.search(retriever, query, 4, "product_text")
    plain = retriever.search(query, 20, "product_text")
    assert all(h.id.startswith("BIG") for h in plain.hits[0])  # 20 of the 50 variants
    assert [h.id for h in found.hits[0]] == [plain.hits[0][0].id]
    assert found.families[found.hits[0][0].id]["summary"] == "50 sizes"
    # k beyond the cap: the first fetch (k * OVERSAMPLE = 60) is still made, not cut to
    # the cap, and is the last: the big family and the 10 others among its 60 candidates.
    wide = families.search(retriever, query, 15, "product_text")
    first = retriever.search(query, 60, "product_text")
    expected, _ = families.collapse(families.family_index(retriever.store), first.hits, 15)
    assert [h.id for h in wide.hits[0]] == [h.id for h in expected[0]]
    assert 1 < len(wide.hits[0]) < 15


def test_a_catalog_without_families_is_searched_as_before(tmp_path: Path) -> None:
    ws, vectors, _ = _vector_workspace(tmp_path, groups=3, singles=10, with_groups=False)
    retriever = Retriever(ws)
    found = families.search(retriever, vectors[:3], 5, "product_text")
    assert found.hits == retriever.search(vectors[:3], 5, "product_text").hits
    assert found.families == {}


def clip_workspace(tmp_path: Path, tiny_clip: str, rows: list[list[str]]) -> Path:
    """A workspace of catalog `rows` (a header first), ingested with the tiny CLIP and
    indexed."""
    from pinshop_cli import IngestConfig, ingest

    catalog = tmp_path / "catalog.csv"
    with open(catalog, "w", newline="") as out:
        csv.writer(out).writerows(rows)
    root = tmp_path / "ws"
    ingest(root, catalog, config=IngestConfig(embedder=tiny_clip))
    build_indexes(root)
    return root


def test_match_text_and_photo_show_each_family_once(tmp_path: Path, tiny_clip: str) -> None:
    """End to end through the CLI (plumbing: a tiny CLIP with random weights)."""
    from typer.testing import CliRunner

    from commands.main import app

    photos = sorted(SAMPLE_PRODUCTS.glob("*.jpg"))[:8]
    rows = [["id", "title", "category", "price", "image", "item_group_id", "color", "size"]]
    for g, photo in enumerate(photos[:4]):  # four families of 3 colours x 2 sizes
        rows += [[f"F{g}-{c}-{s}", f"Sofa {g}", "sofa", "100", str(photo), f"sofa-{g}", c, s]
                 for c in COLOURS for s in SIZES]
    rows += [[f"P{n}", f"Chair {n}", "sofa", "50", str(photo), "", "", ""]
             for n, photo in enumerate(photos[4:])]
    root = clip_workspace(tmp_path, tiny_clip, rows)
    runner = CliRunner()
    for args in (["--text", "a sofa"], [str(photos[0]), "--detector", "none"]):
        printed = runner.invoke(app, ["match", *args, "-k", "8", "--json", "-w", str(root)])
        assert printed.exit_code == 0, printed.output
        data = json.loads(printed.stdout)
        shown = (data["text"]["matches"] if "text" in data
                 else data["pins"][0]["objects"][0]["matches"])
        assert len(shown) == 8  # 4 families (of 24 variants) + 4 singles
        keys = [m["family"]["id"] if m["family"] else m["id"] for m in shown]
        assert len(set(keys)) == 8
        for m in shown:
            if m["id"].startswith("F"):
                assert m["family"] == {"id": f"sofa-{m['id'][1]}", "variants": 6,
                                       "colours": 3, "sizes": 2,
                                       "summary": "3 colours, 2 sizes"}
            else:
                assert m["family"] is None
    table = runner.invoke(app, ["match", "--text", "a sofa", "-k", "8", "-w", str(root)])
    assert table.exit_code == 0, table.output
    assert table.stdout.count("colours") == 4  # "Sofa 0 · 3 colours, 2 sizes" (may wrap)


def test_chat_rows_without_a_photo_have_no_score(tmp_path: Path, tiny_clip: str) -> None:
    """In a CLIP workspace a text request searches product photos; a lamp with no photo
    still passes and is shown after the rest, as never compared (it said "0% similar").
    Plumbing: a tiny CLIP with random weights."""
    from pinshop_cli.retrieval.policy import retrieve
    from pinshop_cli.retrieval.store import Filters

    photos = sorted(SAMPLE_PRODUCTS.glob("*.jpg"))[:2]
    rows = [["id", "title", "category", "price", "image"],
            ["L1", "Lamp one", "lamp", "40", str(photos[0])],
            ["L2", "Lamp two", "lamp", "45", str(photos[1])],
            ["L3", "Lamp three", "lamp", "50", ""]]
    root = clip_workspace(tmp_path, tiny_clip, rows)
    retriever = Retriever(root)
    found = retrieve(retriever, Filters(category="lamp"), "a lamp", shown=3)
    retriever.close()
    scores = {p.id: p.score for p in found.products}
    assert scores["L3"] is None and [p.id for p in found.products][-1] == "L3"
    assert all(isinstance(scores[pid], float) for pid in ("L1", "L2"))


def test_listings_sharing_a_photo_group_with_its_family_in_a_search_by_photo() -> None:
    """In a search by photo, a listing outside any family that shares a photo file with a
    family's variant is that family's (they were two identical cards), listings sharing a
    photo otherwise are one group, and no photo (NULL) groups nothing."""
    import duckdb

    catalog = pa.table({
        "id": ["A", "B", "C", "D", "E", "G", "H"],
        "item_group_id": ["F", None, None, " ", None, None, "F2"],
        "image_sha256": ["s1", "s1", "s2", "s2", None, None, None]})
    con = duckdb.connect()
    con.register("catalog", catalog)

    def groups(photos: bool) -> dict[str, tuple[str | None, str | None]]:
        sql = families.group_keys_sql(catalog.column_names, "catalog", photos)
        return {i: (f, p) for i, f, p in con.execute(f"{sql} ORDER BY id").fetchall()}

    assert groups(True) == {"A": ("F", None), "B": ("F", None), "C": (None, "s2"),
                            "D": (None, "s2"), "E": (None, None), "G": (None, None),
                            "H": ("F2", None)}
    assert groups(False) == {"A": ("F", None), "B": (None, None), "C": (None, None),
                             "D": (None, None), "E": (None, None), "G": (None, None),
                             "H": ("F2", None)}
    assert families.group_keys_sql(["id", "title"], "catalog", True) is None


def test_one_photo_files_listings_are_found_by_its_hash_cheapest_first(tmp_path: Path) -> None:
    """What the searches by photo lean on, read off the sha256 a normalized catalog
    records: the labels repeating a photo file (searched once, detection/products.py), its
    group, and its cheapest other listing (`similar --cheaper`)."""
    from pinshop_cli.detection.products import catalog_groups
    from pinshop_cli.retrieval.store import CatalogStore, Filters

    (tmp_path / "catalog.csv").write_text(
        "id,title,price,image\n"
        f"A,Armchair,549,{SAMPLE_PRODUCTS / 'P005.jpg'}\n"
        f"B,Armchair (seller 2),100,{SAMPLE_PRODUCTS / 'P005.jpg'}\n"
        f"C,Armchair (seller 3),50,{SAMPLE_PRODUCTS / 'P005.jpg'}\n"
        f"D,Lounge chair,10,{SAMPLE_PRODUCTS / 'P006.jpg'}\n")
    ws = Workspace.open(tmp_path / "ws", create=True)
    normalize_catalog(tmp_path / "catalog.csv", ws.catalog, ws.rejects_dir / "catalog.parquet")
    groups, repeats = catalog_groups(ws, pa.array([0, 1, 2, 3]), pa.array(["A", "B", "C", "D"]),
                                     4)
    assert repeats is not None and repeats.tolist() == [1, 2]
    assert groups is not None and groups[0] == groups[1] == groups[2] != groups[3]
    store = CatalogStore(ws)
    assert store.cheapest_sharing("A", Filters()) == "C"
    assert store.cheapest_sharing("A", Filters(min_price=60)) == "B"
    assert store.cheapest_sharing("D", Filters()) is None
    assert store.photo_sharers("A") == 2 and store.photo_sharers("D") == 0
