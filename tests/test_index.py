"""Index manifests, measured recall, by-category indexes and stale-index detection."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pinshop_cli import StaleIndexError, Workspace, build_indexes, index_status, ingest, match
from pinshop_cli.commands.main import app
from pinshop_cli.index.generations import ids_file
from pinshop_cli.index.hnsw import measure_recall, top_k_exact
from pinshop_cli.retrieval.retriever import Retriever


def test_manifest_records_what_the_index_was_built_from(demo_workspace):
    manifest = json.loads((demo_workspace / "indexes" / "product_image.json").read_text())
    assert manifest["model_id"] == "efficientnet-lite0"
    assert (manifest["kind"], manifest["dim"], manifest["count"]) == ("product_image", 1280, 34)
    assert manifest["space"] == "ip" and manifest["M"] == 16
    assert manifest["recall_at_10"] == 1.0  # 34 vectors: HNSW is exact at this size
    assert len(manifest["snapshot"]) == 64 and manifest["built_at"]
    assert not any(s.stale for s in index_status(demo_workspace))  # per kind and category


def test_by_category_builds_one_index_per_category(copy_workspace):
    root = copy_workspace()
    manifests = build_indexes(root, by_category=True, recall_sample=0)
    names = {m.name for m in manifests}
    assert {"product_image@chair", "product_text@sofa", "crop"} <= names
    chairs = next(m for m in manifests if m.name == "product_text@chair")
    assert chairs.count == 3 and chairs.category == "chair"
    # Switched off, the per-category indexes go (they stayed, STALE for good), their files
    # too; the crop index of the kinds not rebuilt is kept.
    notes: list[str] = []
    build_indexes(root, kinds=("product_text",), by_category=False, recall_sample=0,
                  notes=notes)
    left = {s.name for s in index_status(root)}
    assert "product_text@chair" not in left and "product_image@chair" in left
    assert any(note.startswith("removed ") and "per-category indexes no longer built"
               in note for note in notes), notes
    assert not list((root / "indexes").glob("product_text@*"))


def test_changed_embeddings_make_the_index_stale(renamed_sofa_workspace):
    root = renamed_sofa_workspace
    stale = {s.manifest.name: s.stale for s in index_status(root) if s.manifest.category is None}
    assert stale == {"product_text": True, "product_image": False, "crop": False}
    served = match(text="velvet sofa", workspace=root)  # answers, and says it is stale
    assert served.text_matches[0].title == "Emerald Velvet Sofa"  # the current row
    assert any("run `pinshop index`" in note for note in served.notes)
    with pytest.raises(StaleIndexError, match="run `pinshop index`"):
        Retriever(root, allow_stale=False).index("product_text")
    result = match(text="velvet sofa", workspace=root, rebuild=True)
    assert result.text_matches[0].title == "Emerald Velvet Sofa"
    assert not any(s.stale for s in index_status(root))


def test_recall_is_measured_against_exact_search():
    import hnswlib

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = hnswlib.Index(space="ip", dim=32)
    index.init_index(max_elements=3000, M=4, ef_construction=10)
    index.add_items(vectors)
    weak = measure_recall(index, vectors, sample=100)
    assert 0.0 < weak < 1.0  # a deliberately weak graph: recall is measured, not assumed
    truth = top_k_exact(vectors, vectors[:5], 10)[0]
    assert (truth[:, 0] == np.arange(5)).all()  # each vector is its own nearest neighbour


def test_recall_counts_a_tie_with_the_exact_kth_as_a_hit():
    """One photo under many listings: 20 distinct vectors, 50 copies each. Exact search
    picks 10 of the 50 tied copies arbitrarily; counting ids, a working index read 0.18
    (0.0 on a 100k catalog of 34 photos)."""
    import hnswlib

    rng = np.random.default_rng(2)
    distinct = rng.normal(size=(20, 32)).astype(np.float32)
    vectors = np.repeat(distinct / np.linalg.norm(distinct, axis=1, keepdims=True), 50, axis=0)
    index = hnswlib.Index(space="ip", dim=32)
    index.init_index(max_elements=len(vectors), M=16, ef_construction=200)
    labels = np.arange(len(vectors)) * 3 + 7  # labels that are not row numbers
    index.add_items(vectors, labels)
    # (hnswlib's graph itself loses a little among exact duplicates: 0.94 here)
    assert measure_recall(index, vectors, sample=100, labels=labels) > 0.9


def test_index_without_embeddings_is_a_clear_error(tmp_path, write_catalog):
    from pinshop_cli import PinshopError

    Workspace.open(tmp_path / "empty", create=True)
    with pytest.raises(PinshopError, match="run `pinshop ingest`"):
        build_indexes(tmp_path / "empty")


def sample_rows(sample_dir: Path) -> list[dict[str, str]]:
    with open(sample_dir / "catalog.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def write_beside_sample_images(rows: list[dict[str, str]], sample_dir: Path,
                               tmp_path: Path) -> Path:
    """A catalog of `rows` whose relative image paths still resolve."""
    shutil.copytree(sample_dir / "products", tmp_path / "products", dirs_exist_ok=True)
    catalog = tmp_path / "catalog.csv"
    with open(catalog, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return catalog


def test_index_updates_in_place_for_added_changed_and_removed_products(copy_workspace,
                                                                       sample_dir, tmp_path):
    root = copy_workspace()
    rows = sample_rows(sample_dir)
    removed = rows.pop()["id"]
    rows[0]["title"] = "Renamed Oak Armchair"
    rows.append({**rows[1], "id": "NEW1", "title": "Brand New Walnut Bench", "image": ""})
    ingest(root, write_beside_sample_images(rows, sample_dir, tmp_path))
    before = {m.name: m for m in build_indexes(root, rebuild=False)}
    text = before["product_text"]
    assert text.count == len(rows) and text.recall_at_10 is not None
    labels = pq.read_table(Path(root) / "indexes" / ids_file(before["product_text"]))
    assert labels.column("label").to_pylist()[-2:] == [44, 45]  # new labels, none reused
    assert removed not in labels.column("id").to_pylist()
    assert not any(s.stale for s in index_status(root))
    hit = match(text="brand new walnut bench", workspace=root).text_matches[0]
    assert hit.id == "NEW1"
    renamed = match(text="renamed oak armchair", workspace=root).text_matches[0]
    assert renamed.title == "Renamed Oak Armchair"


def test_an_update_after_the_newest_product_was_removed_adds_after_every_label_given(
        copy_workspace, sample_dir, tmp_path):
    """Labels are never reused, and a removed product's label stays in the graph (marked
    deleted): after the product holding an index's highest label is removed, the next
    update still adds after it. (Before, any change after such a removal failed every
    later `pinshop index` with "could not broadcast": the new vectors were sized by the
    live labels only.)"""
    root = copy_workspace()
    rows = sample_rows(sample_dir)
    newest = {**rows[1], "id": "NEW1", "title": "Brand New Walnut Bench", "image": ""}
    for catalog_rows in ([*rows, newest], rows):  # NEW1 added (label 44), then removed
        ingest(root, write_beside_sample_images(catalog_rows, sample_dir, tmp_path))
        build_indexes(root, kinds=("product_text",), recall_sample=0)
    rows[0]["title"] = "Renamed Oak Armchair"
    ingest(root, write_beside_sample_images(rows, sample_dir, tmp_path))
    built = {m.name: m for m in build_indexes(root, kinds=("product_text",), recall_sample=0)}
    labels = pq.read_table(Path(root) / "indexes" / ids_file(built["product_text"]))
    assert labels.column("label").to_pylist()[-1] == 45  # after NEW1's 44, not 44 again
    assert "NEW1" not in labels.column("id").to_pylist()
    renamed = match(text="renamed oak armchair", workspace=root).text_matches[0]
    assert renamed.title == "Renamed Oak Armchair"


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_sharded_search_is_the_exact_merge_of_the_shards(tmp_path):
    from pinshop_cli.engines import LocalEngine
    from pinshop_cli.index.shards import ShardedIndex, build_shards

    vectors = unit_vectors(240, 16, seed=2)
    files = build_shards(vectors, tmp_path, "t", 3, "ip", 16, 200, LocalEngine())
    sharded = ShardedIndex.load(tmp_path, files, "ip", 16, np.arange(240))
    sharded.set_ef(240)  # >= every shard's size: each shard answers exactly
    labels, distances = sharded.knn_query(vectors[:20], k=10)
    truth, scores = top_k_exact(vectors, vectors[:20], 10)
    assert (labels == truth).all()
    assert np.allclose(1 - distances, scores, atol=1e-5)
    assert sorted(np.unique(labels % 3)) == [0, 1, 2]  # answers came from every shard


def test_sharded_recall_is_within_a_hundredth_of_one_index(tmp_path):
    import hnswlib

    from pinshop_cli.engines import LocalEngine
    from pinshop_cli.index.shards import ShardedIndex, build_shards

    vectors = unit_vectors(6000, 32, seed=3)
    single = hnswlib.Index(space="ip", dim=32)
    single.init_index(max_elements=6000, M=16, ef_construction=200)
    single.add_items(vectors, np.arange(6000))
    files = build_shards(vectors, tmp_path, "t", 4, "ip", 16, 200, LocalEngine())
    sharded = ShardedIndex.load(tmp_path, files, "ip", 32, np.arange(6000))
    one, four = measure_recall(single, vectors, 300), measure_recall(sharded, vectors, 300)
    assert four >= one - 0.01, (one, four)


def test_index_shards_are_listed_updated_in_place_and_undone(copy_workspace, tmp_path,
                                                             sample_dir):
    root = copy_workspace()
    plain = match(text="green velvet sofa", workspace=root, top_k=5).text_matches
    manifests = {m.name: m for m in build_indexes(root, shards=3)}
    text = manifests["product_text"]
    generation = f"product_text.g{text.generation}"
    assert text.shards == [f"{generation}.shard{i}.hnsw" for i in range(3)]
    assert not (Path(root) / "indexes" / f"{generation}.hnsw").exists()
    assert all((Path(root) / "indexes" / f).exists() for f in text.shards)
    assert manifests["product_text@sofa"].shards == []  # category indexes stay whole
    sharded = match(text="green velvet sofa", workspace=root, top_k=5).text_matches
    assert [h.id for h in sharded] == [h.id for h in plain]

    rows = sample_rows(sample_dir)
    rows.append({**rows[1], "id": "NEW1", "title": "Brand New Walnut Bench", "image": ""})
    ingest(root, write_beside_sample_images(rows, sample_dir, tmp_path))
    updated = {m.name: m for m in build_indexes(root)}["product_text"]  # keeps 3 shards
    assert len(updated.shards) == 3 and updated.count == len(rows)
    assert not set(updated.shards) & set(text.shards)  # new files: the old stay whole
    assert sorted(p.name for p in (Path(root) / "indexes").glob("product_text.*shard*")) == \
        sorted(updated.shards)  # the old generation was swept
    assert match(text="brand new walnut bench", workspace=root).text_matches[0].id == "NEW1"

    damaged = Path(root) / "indexes" / updated.shards[1]
    damaged.write_bytes(damaged.read_bytes()[:100])
    notes: list[str] = []
    rebuilt = {m.name: m for m in build_indexes(root, notes=notes)}["product_text"]
    assert len(rebuilt.shards) == 3 and rebuilt.count == len(rows)  # 3 shards still
    assert any("damaged" in n and "product_text" in n for n in notes), notes

    whole = {m.name: m for m in build_indexes(root, shards=1)}["product_text"]
    assert whole.shards == [] and not list((Path(root) / "indexes").glob("*.shard*.hnsw"))


def test_graph_settings_out_of_range_are_refused_before_any_work(copy_workspace) -> None:
    """hnswlib crashed the process on M 0 (and failed on M 1 or a negative
    ef_construction): the library refuses them, the CLI answers with a usage error."""
    from pinshop_cli.errors import PinshopError

    root = copy_workspace()
    for bad in ({"M": 0}, {"M": 1}, {"ef_construction": 0}, {"recall_sample": -5},
                {"shards": 0}):
        with pytest.raises(PinshopError, match="must be at least"):
            build_indexes(root, rebuild=True, **bad)
    for args in (["--m", "0"], ["--ef-construction", "-1"], ["--recall-sample", "-5"]):
        result = CliRunner().invoke(app, ["index", "--rebuild", "-w", str(root), *args])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output

    notes: list[str] = []
    kept = {m.name: m for m in build_indexes(root, M=32, notes=notes)}["product_text"]
    assert kept.M == 16 and len([n for n in notes if "M 32 applies to new builds" in n
                                 and "--rebuild" in n]) == 1, notes


def test_an_index_run_with_nothing_to_build_says_so(copy_workspace) -> None:
    """It printed the table of the last build, with its build seconds, as if it had just
    built every index."""
    root = copy_workspace()
    current = CliRunner().invoke(app, ["index", "-w", str(root)])
    assert current.exit_code == 0 and "every index was up to date" in current.stderr
    rebuilt = CliRunner().invoke(app, ["index", "--rebuild", "-w", str(root)])
    assert rebuilt.exit_code == 0 and "up to date" not in rebuilt.stderr
