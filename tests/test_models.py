"""The model layer: registry, resolution errors, and every model path with a real or tiny
self-built model through the same loading code."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from pinshop_cli import (
    MissingWeightsError,
    UnknownModelError,
    build_indexes,
    get_detector,
    get_embedder,
    ingest,
    match,
)
from pinshop_cli.ingestion.pipeline import IngestConfig
from pinshop_cli.models import list_models, model_status, pull, verify
from pinshop_cli.models.detectors import UltralyticsDetector, WholeImageDetector


def test_registry_lists_builtins_with_sources_and_presence(offline_models):
    names = {spec.name: spec for spec in list_models()}
    assert {"yolo11n", "clip-vit-b-32", "efficientnet-lite0", "all-minilm-l6-v2"} <= set(names)
    assert model_status(names["efficientnet-lite0"]).where == "mirror package"
    assert model_status(names["yolo11n"]).where == "missing"


def test_offline_weights_verify_against_their_sha256():
    assert verify("efficientnet-lite0") == []
    assert verify("yolo11n") == ["yolo11n.pt: missing"]


def test_pull_copies_nothing_when_a_mirror_package_has_it():
    assert pull("efficientnet") [0].name == "efficientnet-lite0-57934424.pth"


def test_missing_weights_error_names_the_file_and_the_fix(offline_models):
    with pytest.raises(MissingWeightsError) as error:
        get_detector("yolo11n")
    message = str(error.value)
    assert "yolo11n.pt" in message and str(offline_models) in message
    assert "pinshop models pull yolo11n" in message and "hub (offline)" in message
    # It said "(it fetches from the mirror or the hub)" for a model no mirror holds.
    assert "without PINSHOP_OFFLINE=1 (it fetches from the hub)" in message
    with pytest.raises(MissingWeightsError, match="ViT-B-32-laion2b_s34b_b79k.bin"):
        get_embedder("clip")


def test_unknown_model_and_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(UnknownModelError, match="known models: "):
        get_embedder("gpt-7")
    with pytest.raises(UnknownModelError, match="neither a registered model nor an existing"):
        get_detector(str(tmp_path / "nope.pt"))
    with pytest.raises(UnknownModelError, match="not a detector"):
        get_detector("efficientnet-lite0")
    # A models folder that is a file: pull told the user to copy weights "into" it.
    from typer.testing import CliRunner

    from commands.main import app

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for argv in (["models", "pull", "clip-vit-b-32"], ["models", "export", "clip-vit-b-32"],
                 ["models", "list"]):
        done = CliRunner().invoke(app, argv, env={"PINSHOP_MODELS": str(notes)})
        assert done.exit_code == 1 and f"the models folder {notes} (--models-dir / " \
            "PINSHOP_MODELS) is a file: point it at a folder" in str(done.exception), argv
    assert notes.read_text() == "mine"


def test_auto_falls_back_visibly_when_nothing_resolves():
    detector = get_detector("auto")
    assert isinstance(detector, WholeImageDetector) and "whole image" in detector.note
    embedder = get_embedder("auto")
    assert embedder.source == "offline" and "CLIP weights not found" in embedder.note


def test_weights_resolve_from_the_models_dir_first(tmp_path, yaml_yolo_checkpoint):
    # A directory of its own: the session's models cache is shared by parallel workers,
    # whose `--detector auto` would pick these weights up.
    (tmp_path / "yolo11n.pt").write_bytes(yaml_yolo_checkpoint.read_bytes())
    detector = get_detector("yolo11n", tmp_path)
    assert isinstance(detector, UltralyticsDetector)
    assert detector.weights == tmp_path / "yolo11n.pt"


@pytest.mark.slow
def test_real_person_detector_finds_people_on_bus_jpg(person_detector, bus_jpg):
    detector = get_detector(str(person_detector))
    found = detector.detect_batch([Image.open(bus_jpg).convert("RGB")])[0]
    # A custom checkpoint's own classes are kept as categories (here: people standing).
    assert len(found) >= 3
    assert {d.category for d in found} <= {"normal", "fall"}
    for d in found:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 810 and 0 <= y1 < y2 <= 1080 and d.score >= 0.25


def test_plumbing_yaml_built_yolo_random_weights_runs_through_ingest(tmp_path, write_catalog,
                                                                     yaml_yolo_checkpoint,
                                                                     sample_dir):
    catalog = write_catalog([{"id": "a", "title": "Chair", "image": "products/P001.jpg"}])
    pins = tmp_path / "pins"
    shutil.copytree(sample_dir / "pins", pins)
    (pins / "cut-short.jpg").write_bytes((pins / "7303782.jpg").read_bytes()[:2000])
    config = IngestConfig(detector=str(yaml_yolo_checkpoint))
    summary = ingest(tmp_path / "ws", catalog, pins, config)
    assert summary.detector == "tiny-yolov8n.pt+regions"  # the catalog adds its regions
    # Random weights find nothing real; every pin still yields at least one region.
    assert summary.detections >= summary.pins_ok == 6 and summary.pins_rejected == 1
    # The next run retries only the broken pin: a batch with no image to detect in.
    again = ingest(tmp_path / "ws", catalog, pins, config)
    assert (again.pins_rejected, again.pins_ok, again.embedded["crop"]) == (1, 6, 0)


def test_plumbing_tiny_openclip_random_weights_shares_one_space(tmp_path, write_catalog,
                                                                 tiny_clip):
    embedder = get_embedder(tiny_clip)
    assert embedder.shared_space and embedder.image_model_id.startswith("open_clip:tiny-clip@")
    images = embedder.embed_images([Image.new("RGB", (80, 60), "red")] * 2)
    texts = embedder.embed_texts(["a red chair"])
    assert images.shape == (2, 32) and texts.shape == (1, 32)
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)

    catalog = write_catalog([
        {"id": "a", "title": "Oak chair", "image": "products/P001.jpg", "price": "100"},
        {"id": "b", "title": "Sideboard", "image": "products/P002.jpg", "price": "900"},
    ])
    ingest(tmp_path / "ws", catalog, config=IngestConfig(embedder=tiny_clip))
    build_indexes(tmp_path / "ws")
    # Cross-modal: with a shared space, a text query searches product photos.
    result = match(text="oak chair", workspace=tmp_path / "ws", top_k=2)
    assert {m.id for m in result.text_matches} == {"a", "b"} and not result.notes


def test_chunked_mirror_joins_parts_in_numeric_order_and_verifies(tmp_path, monkeypatch):
    """Eleven tiny self-built chunk packages: part10 and part11 must come after part9."""
    import hashlib
    import sys

    from pinshop_cli.models.chunks import ChunkedMirror
    from pinshop_cli.models.resolve import ModelFile

    chunks = [f"chunk-{n:02d}|".encode() * 100 for n in range(1, 12)]
    for n, data in enumerate(chunks, start=1):
        package = tmp_path / f"tinyparts_part{n}"
        package.mkdir()
        (package / "data.bin").write_bytes(data)
        (package / "__init__.py").write_text(
            "import os\ndef get_part_path():\n"
            "    return os.path.join(os.path.dirname(__file__), 'data.bin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    whole = b"".join(chunks)
    model = ModelFile("tiny.gguf", chunks=ChunkedMirror("tinyparts", 11, "1.0"),
                      size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    path = model.resolve("tiny", tmp_path / "models", allow_download=False)
    assert path.read_bytes() == whole
    assert model.resolve("tiny", tmp_path / "models", allow_download=False) == path  # reused

    bad = ModelFile("bad.gguf", chunks=ChunkedMirror("tinyparts", 11, "1.0"),
                    size=len(whole), sha256="0" * 64)
    with pytest.raises(MissingWeightsError, match="corrupt"):
        bad.resolve("bad", tmp_path / "models", allow_download=False)
    assert not (tmp_path / "models" / "bad.gguf").exists()
    for n in range(1, 12):
        sys.modules.pop(f"tinyparts_part{n}", None)
