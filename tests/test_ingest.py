"""The ingest pipeline with the real offline pair: outputs, rejects, idempotence, resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import pinshop_cli
from pinshop_cli import (
    IngestConfig,
    ModelMismatchError,
    PinshopError,
    Workspace,
    WorkspaceLockedError,
    ingest,
)
from pinshop_cli.commands.main import app
from pinshop_cli.sql import run_sql
from pinshop_cli.workspace.embeddings import load_embeddings
from pinshop_cli.workspace.parts import PartStore


def test_demo_workspace_follows_the_data_contracts(demo_workspace):
    ws = Workspace.open(demo_workspace)
    catalog = pq.read_table(ws.catalog)
    assert catalog.num_rows == 44
    assert str(catalog.schema.field("price").type) == "decimal128(18, 2)"
    pins = pq.read_table(ws.pins).to_pylist()
    assert len(pins) == 6 and {p["status"] for p in pins} == {"ok"}
    detections = pq.read_table(ws.detections).to_pylist()
    # No detector weights here: each pin's catalog-guided regions, several per pin.
    assert {d["pin_id"] for d in detections} == {p["pin_id"] for p in pins}
    assert len(detections) > 2 * len(pins)
    assert all(d["source"] == "regions" and not d["fallback"] and d["category"]
               for d in detections)
    embeddings = pq.read_table(ws.embeddings_dir / "product_image")
    assert set(embeddings.column_names) >= {"id", "kind", "model_id", "vector"}
    images = load_embeddings(ws, "product_image", "efficientnet-lite0")
    texts = load_embeddings(ws, "product_text", "all-MiniLM-L6-v2")
    assert images.vectors.shape == (34, 1280) and texts.vectors.shape == (44, 384)
    norms = (images.vectors ** 2).sum(axis=1)
    assert abs(norms - 1).max() < 1e-4  # L2-normalized
    assert ws.settings()["embedder"] == "offline"
    assert str(embeddings.schema.field("vector").type).startswith("fixed_size_list<")


def test_reingest_unchanged_input_does_no_model_work(copy_workspace, sample_dir):
    root = copy_workspace()
    before = sorted(p.name for p in Path(root, "embeddings").rglob("*.parquet"))
    summary = ingest(root, sample_dir / "catalog.csv", sample_dir / "pins")
    assert not summary.model_work_done
    assert summary.already_done == {"product_image": 34, "product_text": 44, "crop": 6}
    assert sorted(p.name for p in Path(root, "embeddings").rglob("*.parquet")) == before


def test_photo_colours_named_under_older_rules_are_named_again(copy_workspace, sample_dir,
                                                               monkeypatch):
    """A colour-naming change reached only new photos: a photo embedded before kept the
    name the old rules gave it. Now ingest names it again, without embedding it again."""
    from pinshop_cli.detection import colors

    root = copy_workspace()
    monkeypatch.setattr(colors, "RULES", colors.RULES + 1)  # as if the rules had changed
    embeddings = sorted(p.name for p in Path(root, "embeddings").rglob("*.parquet"))
    summary = ingest(root, sample_dir / "catalog.csv")
    assert not summary.model_work_done and summary.already_done["product_image"] == 34
    assert any(n.startswith("34 product photo colours named again") for n in summary.notes)
    assert sorted(p.name for p in Path(root, "embeddings").rglob("*.parquet")) == embeddings
    parts = PartStore(Workspace.open(root).color_parts_dir)
    rows = pa.concat_tables(pq.read_table(f) for f in parts.files()
                            if "color_rules" in pq.read_schema(f).names).to_pylist()
    assert len({r["h"] for r in rows if r["color_rules"] == colors.RULES}) == 34  # each photo
    named = run_sql("SELECT count(*) FROM catalog WHERE photo_color IS NOT NULL", root).rows
    assert named[0][0] == 34
    before = parts.files()
    ingest(root, sample_dir / "catalog.csv")  # all named under these rules: nothing to do
    assert parts.files() == before
    # A pins-only ingest that renames colours rewrites catalog.parquet: a live price change
    # logged against it (by a server still running) is folded in first, not lost with the
    # catalog it named.
    server = pinshop_cli.open(root)
    server.update_product("P001", price=1.5)
    monkeypatch.setattr(colors, "RULES", colors.RULES + 1)
    monkeypatch.setattr(colors, "family", lambda lab, white_above=70.0: "purple")  # new names
    ingest(root, pins=sample_dir / "pins")
    with pinshop_cli.open(root) as shop:
        product = shop.product("P001")
        assert float(product.price) == 1.5 and product.photo_color == "purple"
    server.close()


def test_colour_parts_from_before_the_rules_version_read_as_version_1(tmp_path) -> None:
    """Plumbing: an older release's colour parts have no color_rules column at all (the
    first ingest after the upgrade failed: 'Referenced column "color_rules" not found')."""
    from pinshop_cli.ingestion.shared_photos import colour_rows
    from pinshop_cli.workspace.storage import query_arrow

    old = tmp_path / "old.parquet"
    pq.write_table(pa.table({"id": ["P1"], "h": ["ab"], "color": ["grey"],
                             "color_name": ["gray"]}), old)
    assert query_arrow(f"SELECT rules FROM {colour_rows([old])}").column("rules").to_pylist() \
        == [1]


def test_changed_row_is_the_only_model_work(copy_workspace, sample_dir, tmp_path):
    root = copy_workspace()
    shutil.copytree(sample_dir / "products", tmp_path / "products")
    text = (sample_dir / "catalog.csv").read_text()
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(text.replace("Oslo Bent Plywood Dining Chair,", "Oslo Chair v2,", 1))
    summary = ingest(root, catalog)
    assert summary.embedded == {"product_image": 0, "product_text": 1}
    titles = run_sql("SELECT title FROM catalog WHERE id = 'P001'", root).rows
    assert titles == [("Oslo Chair v2",)]


def test_bad_rows_and_files_are_recorded_and_the_rest_ingested(tmp_path, write_catalog,
                                                               bad_images, sample_dir,
                                                               fake_embedder):
    """Plumbing (the fake embedder): what is rejected, and why."""
    catalog = write_catalog([
        {"id": "a", "title": "Chair", "image": "products/P001.jpg", "price": "10"},
        {"id": "b", "title": "Price?", "price": "ten"},
        {"id": "a", "title": "Dup"},
    ])
    pins = tmp_path / "pins"
    pins.mkdir()
    shutil.copy(sample_dir / "pins" / "7303782.jpg", pins)
    for name in ("zero_byte", "truncated", "text_file"):
        shutil.copy(bad_images[name], pins)
    summary = ingest(tmp_path / "ws", catalog, pins, IngestConfig(embedder=fake_embedder))
    assert (summary.rows_ok, summary.rows_rejected) == (1, 2)
    assert (summary.pins_ok, summary.pins_rejected) == (1, 3)
    rejected = dict(run_sql("SELECT path, reason FROM rejects_pins", tmp_path / "ws").rows)
    assert any("corrupt or truncated" in r for r in rejected.values())  # caught at decode
    lines = run_sql("SELECT line, reason FROM rejects_catalog ORDER BY line", tmp_path / "ws")
    assert lines.rows == [(3, "unparsable price 'ten'"),
                          (4, "duplicate id 'a' (first on line 2)")]


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path, write_catalog):
    ws = Workspace.open(tmp_path / "ws", create=True)
    catalog = write_catalog([{"id": "a", "title": "A"}])
    with ws.lock(), pytest.raises(WorkspaceLockedError, match="being written by pinshop pid"):
        ingest(ws.root, catalog)


def test_mixing_embedders_in_one_workspace_is_refused(copy_workspace, sample_dir, tiny_clip):
    with pytest.raises(ModelMismatchError, match="mixing models is refused"):
        ingest(copy_workspace(), sample_dir / "catalog.csv",
               config=IngestConfig(embedder=tiny_clip))


def test_nothing_to_ingest_is_a_clear_error(tmp_path):
    with pytest.raises(PinshopError, match="nothing to ingest"):
        ingest(tmp_path / "ws")


def test_a_mistyped_pins_folder_is_an_error_before_any_model_work(tmp_path, sample_dir):
    progress = []

    class Recorded:
        def start(self, stage: str, total: int) -> None:
            progress.append(stage)

        def note(self, message: str) -> None:
            pass

        def advance(self, count: int = 1) -> None:
            pass

    with pytest.raises(PinshopError, match="pins not found"):
        ingest(tmp_path / "ws", sample_dir / "catalog.csv", tmp_path / "no-such-folder",
               progress=Recorded())
    assert progress == [] and not (tmp_path / "ws").exists()  # nothing embedded, nothing left


def _ids(root: Path, kind: str) -> list[str]:
    return [r[0] for r in run_sql(f"SELECT id FROM embeddings WHERE kind = '{kind}'", root).rows]


def test_plumbing_products_sharing_a_photo_are_embedded_once(tmp_path, write_catalog,
                                                            fake_embedder):
    """Plumbing (the fake embedder): 12 products over 3 photos cost 3 forwards, the others
    get the photo's vector and colour; a later product with one of those photos costs none
    (a 100k feed with 20 photos embedded 19,880 of them again)."""
    from pinshop_cli.workspace import Workspace
    from pinshop_cli.workspace.embeddings import load_embeddings

    photos = ["products/P001.jpg", "products/P002.jpg", "products/P003.jpg"]
    rows = [{"id": f"S{n:02d}", "title": f"Thing {n}", "image": photos[n % 3]}
            for n in range(12)]
    config = IngestConfig(embedder=fake_embedder)
    summary = ingest(tmp_path / "ws", write_catalog(rows), config=config)
    assert summary.embedded["product_image"] == 12
    assert "9 product photos shared with another product: the vector copied, not embedded " \
           "again" in summary.notes
    ws = Workspace.open(tmp_path / "ws")
    model = ws.settings()["image_model_id"]
    found = load_embeddings(ws, "product_image", model)
    vectors = dict(zip(found.ids, found.vectors, strict=True))
    assert np.array_equal(vectors["S00"], vectors["S03"]) and not np.array_equal(
        vectors["S00"], vectors["S01"])
    colours = pq.read_table(ws.catalog, columns=["id", "photo_color"]).to_pylist()
    assert all(row["photo_color"] for row in colours)
    later = ingest(tmp_path / "ws", write_catalog(
        [*rows, {"id": "S99", "title": "Late", "image": photos[0]}]), config=config)
    assert later.embedded["product_image"] == 1 and any(
        note.startswith("1 product photo shared") for note in later.notes)
    again = load_embeddings(ws, "product_image", model)
    assert np.array_equal(dict(zip(again.ids, again.vectors, strict=True))["S99"],
                          vectors["S00"])
    # Re-shot: the same products share a new photo. Their copies are a part of their own
    # (one named by ids alone was overwritten, and left out as damaged).
    from pinshop_cli.workspace.embeddings import store

    four = [{"id": f"V{n}", "title": f"Variant {n}", "image": photos[0]} for n in range(4)]
    ingest(tmp_path / "ws2", write_catalog(four), config=config)
    ingest(tmp_path / "ws2", write_catalog([{**row, "image": "products/P004.jpg"}
                                            for row in four]), config=config)
    notes: list[str] = []
    ws2 = Workspace.open(tmp_path / "ws2")
    assert store(ws2, "product_image").files(notes) and notes == []
    assert sorted(load_embeddings(ws2, "product_image", model).ids) == ["V0", "V1", "V2", "V3"]


def test_plumbing_a_shared_photo_refused_at_one_path_is_tried_at_the_next(
        tmp_path, write_catalog, fake_embedder):
    """Plumbing (the fake embedder): the first product's copy of a shared photo changes
    after the check; the same bytes at another path are embedded and copied to the rest
    (before, every product with those bytes was rejected untried)."""
    from pinshop_cli.workspace import Workspace
    from pinshop_cli.workspace.embeddings import load_embeddings

    photo = tmp_path / "products" / "P001.jpg"
    write_catalog([])  # the sample photos, copied beside the catalog
    for name in ("copy1.jpg", "copy2.jpg"):
        shutil.copy(photo, tmp_path / "products" / name)
    images = {"A": "P001.jpg", "B": "copy1.jpg", "C": "copy2.jpg", "D": "copy1.jpg"}
    catalog = write_catalog([{"id": pid, "title": f"Lamp {pid}", "image": f"products/{name}"}
                             for pid, name in images.items()])

    class ChangesThePhoto:
        def start(self, stage: str, total: int) -> None:
            if stage == "product images":  # after the check, before the decode
                photo.write_bytes(b"not a photo any more")

        def note(self, message: str) -> None:
            pass

        def advance(self, count: int = 1) -> None:
            pass

    summary = ingest(tmp_path / "ws", catalog, config=IngestConfig(embedder=fake_embedder),
                     progress=ChangesThePhoto())
    assert summary.embedded["product_image"] == 3
    assert [row[0] for row in run_sql("SELECT id FROM rejects_product_images",
                                      tmp_path / "ws").rows] == ["A"]
    ws = Workspace.open(tmp_path / "ws")
    found = load_embeddings(ws, "product_image", ws.settings()["image_model_id"])
    assert sorted(found.ids) == ["B", "C", "D"]
    assert np.array_equal(found.vectors[0], found.vectors[2])


def test_refused_bytes_that_did_not_change_are_not_tried_again(tmp_path):
    """Only a photo whose refused file changed since the check is tried at another path:
    the same bytes would be refused at every path (a placeholder shared by 500 products
    cost 500 runs of the model stage)."""
    import hashlib

    import pyarrow as pa

    from pinshop_cli.ingestion.shared_photos import refused_leaders, worth_retrying

    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"the bytes checked")
    h = hashlib.sha256(photo.read_bytes()).hexdigest()
    leaders = pa.table({"id": ["A"], "h": [h], "path": [str(photo)]})
    rows = pa.table({"id": ["B", "C"], "h": [h, h],
                     "path": [str(tmp_path / "b.jpg"), str(photo)]})
    refused = refused_leaders(leaders, ["A"])
    assert worth_retrying(rows, refused).num_rows == 0  # refused as they are
    photo.write_bytes(b"changed since the check")
    assert worth_retrying(rows, refused).column("id").to_pylist() == ["B"]


def test_a_run_killed_after_replacing_the_catalog_has_its_changes_reported_again(
        tmp_path, write_catalog, fake_embedder):
    """Plumbing (the fake embedder): killed once the new catalog was written, the re-run
    found it unchanged and reported 0 added, 0 removed, 0 changed (a cron log keeps that)."""
    from pinshop_cli.io.catalog import normalize_catalog
    from pinshop_cli.workspace import Workspace

    config = IngestConfig(embedder=fake_embedder)
    rows = [{"id": f"L{n}", "title": f"Lamp {n}", "price": 10 + n} for n in range(6)]
    ingest(tmp_path / "ws", write_catalog(rows), config=config)
    week2 = write_catalog([{**row, "price": 99} if row["id"] == "L0" else row
                           for row in rows[1:]] + [{"id": "L9", "title": "Lamp 9"}])
    ws = Workspace.open(tmp_path / "ws")  # the catalog step of a run killed right after it
    normalize_catalog(week2, ws.catalog, ws.rejects_dir / "catalog.parquet")
    again = ingest(ws.root, week2, config=config)
    assert (again.rows_added, again.rows_removed, again.rows_changed) == (1, 1, 0)
    assert not again.unchanged and any("was stopped before it finished" in note
                                       for note in again.notes)
    third = ingest(ws.root, week2, config=config)  # reported once
    assert third.unchanged and (third.rows_added, third.rows_removed) == (0, 0)


def test_killed_run_resumes_without_duplicates(tmp_path, sample_dir):
    """SIGKILL a real `pinshop ingest` subprocess mid-run, then run it again."""
    root = tmp_path / "ws"
    command = [sys.executable, "-m", "pinshop_cli.commands.main", "ingest",
               str(sample_dir / "catalog.csv"), "--pins", str(sample_dir / "pins"),
               "--batch-size", "2", "-w", str(root)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ}, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(root.glob("embeddings/product_image/*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    parts_at_kill = len(list(root.glob("embeddings/product_image/*.parquet")))
    assert 3 <= parts_at_kill < 17, "the kill should land mid-way through product images"
    assert not list(root.rglob("*.tmp")) or all(p.name.startswith(".") for p in
                                                 root.rglob("*.tmp"))

    # What the manifest listed is kept; a part written but not yet listed is redone.
    listed = PartStore(root / "embeddings" / "product_image").manifest().rows
    assert 0 < listed < 34
    summary = ingest(root, sample_dir / "catalog.csv", sample_dir / "pins",
                     IngestConfig(batch_size=2))
    assert summary.already_done["product_image"] == listed
    detections = pq.read_table(root / "detections.parquet")
    assert len(set(detections.column("pin_id").to_pylist())) == 6  # every pin, once
    for kind, expected in (("product_image", 34), ("product_text", 44),
                           ("crop", detections.num_rows)):
        ids = _ids(root, kind)
        assert len(ids) == len(set(ids)) == expected, kind


def test_large_photos_decode_reduced_but_boxes_are_in_original_pixels(tmp_path,
                                                                      write_catalog,
                                                                      fake_embedder):
    """Plumbing (the fake embedder): boxes come back in the photo's own pixels."""
    from interior_photos import get_all_photos

    from pinshop_cli.io.images import decode_scale, load_image

    photo = Path(next(p for p in get_all_photos() if p.endswith("7303782.jpg")))
    fast = load_image(photo, min_side=1280)
    assert min(fast.size) >= 1280 and decode_scale(fast) * max(fast.size) == 2880
    pins = tmp_path / "pins"
    pins.mkdir()
    shutil.copy(photo, pins)
    ingest(tmp_path / "ws", write_catalog([{"id": "a", "title": "A"}]), pins,
           IngestConfig(embedder=fake_embedder))
    box = run_sql("SELECT x1, y1, x2, y2 FROM detections", tmp_path / "ws").rows[0]
    assert box == (0.0, 0.0, 1920.0, 2880.0)  # the whole photo, in its own pixels


def test_pins_of_later_runs_add_unless_replace(copy_workspace, sample_dir, tmp_path):
    from dataclasses import replace

    root = copy_workspace()
    extra = tmp_path / "more-pins"
    extra.mkdir()
    shutil.copy(sample_dir / "products" / "P001.jpg", extra / "P001.jpg")
    ingest(root, pins=extra)
    paths = pq.read_table(Path(root) / "pins.parquet").column("path").to_pylist()
    assert len(paths) == 7  # the 6 sample pins stay, the new one is added
    # The same photo under another name, in a later run: a duplicate, not a second pin.
    copy = tmp_path / "copy-of-a-pin"
    copy.mkdir()
    shutil.copy(extra / "P001.jpg", copy / "again.jpg")
    again = ingest(root, pins=copy)
    pins = pq.read_table(Path(root) / "pins.parquet").to_pylist()
    assert again.pins_ok == 0 and again.pins_rejected == 1
    assert [(p["status"], p["reason"]) for p in pins if p["path"].endswith("again.jpg")] == \
        [("rejected", f"duplicate of {extra / 'P001.jpg'}")]
    assert len({p["pin_id"] for p in pins if p["status"] == "ok"}) == 7
    summary = ingest(root, pins=extra, config=replace(IngestConfig(), replace_pins=True))
    pins = pq.read_table(Path(root) / "pins.parquet").column("path").to_pylist()
    assert [Path(p).name for p in pins] == ["P001.jpg"]
    # No model work (P001.jpg was embedded by the first run), yet not "nothing changed".
    # (the 6 sample pins and the rejected copy are removed)
    assert summary.pins_removed == 7 and not summary.model_work_done and not summary.unchanged
    detections = pq.read_table(Path(root) / "detections.parquet")
    assert set(detections.column("path").to_pylist()) == set(pins)  # old crops are gone


def test_a_shrunk_catalog_is_reported_not_unchanged(copy_workspace, sample_dir, tmp_path):
    root = copy_workspace()
    shutil.copytree(sample_dir / "products", tmp_path / "products")
    lines = (sample_dir / "catalog.csv").read_text().splitlines(keepends=True)
    (tmp_path / "catalog.csv").write_text("".join(lines[:-5]))
    summary = ingest(root, tmp_path / "catalog.csv")
    assert not summary.model_work_done and not summary.unchanged
    assert (summary.rows_added, summary.rows_removed, summary.rows_changed) == (0, 5, 0)
    assert any("5 removed" in note for note in summary.notes)
    assert summary.to_dict()["unchanged"] is False


def test_the_cli_says_nothing_changed_only_when_nothing_did(copy_workspace, sample_dir,
                                                            tmp_path):
    root = copy_workspace()
    shutil.copytree(sample_dir / "products", tmp_path / "products")
    lines = (sample_dir / "catalog.csv").read_text().splitlines(keepends=True)
    (tmp_path / "catalog.csv").write_text("".join(lines[:-5]))
    said = [CliRunner().invoke(app, ["ingest", str(tmp_path / "catalog.csv"), "-w", str(root)])
            for _ in range(2)]  # 5 products gone, no model work; then truly nothing
    assert [s.exit_code for s in said] == [0, 0]
    assert "5 removed" in said[0].output and "Nothing changed" not in said[0].output
    assert "Nothing changed since the last ingest" in said[1].output


def test_a_first_ingest_that_fails_leaves_no_workspace_behind(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,title\n,no id\n")
    for catalog, said in ((bad, "no usable rows (1 rejected, the first at line 2: missing id); "
                                "no catalog was written"),
                          (tmp_path / "missing.csv", "not found")):
        with pytest.raises(PinshopError) as caught:
            ingest(tmp_path / "new", catalog)
        assert said in str(caught.value)
        assert not (tmp_path / "new").exists()  # no .lock, embeddings/ or parts/ left
