"""ONNX Runtime for the embedders: exports agree with torch, are cached and listed, int8 is
used only where it passes its check, and `pinshop match` runs without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pinshop_cli.models import get_embedder
from pinshop_cli.models.onnx import cosines, list_exports

TEXTS = ["cream boucle armchair", "Black steel floor lamp. lamp. black. Norvet.",
         "a long description " * 80]  # past MiniLM's 256 word pieces: truncated alike


def pins(sample_dir: Path, count: int = 3) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((sample_dir / "pins").glob("*.jpg"))
            [:count]]


@pytest.mark.slow
def test_offline_pair_on_onnx_agrees_with_torch(sample_dir: Path, offline_models: Path) -> None:
    on_torch = get_embedder("offline", runtime="torch")
    on_onnx = get_embedder("offline", runtime="onnx")
    images = pins(sample_dir)
    assert cosines(on_torch.embed_images(images), on_onnx.embed_images(images)).min() >= 0.9999
    assert cosines(on_torch.embed_texts(TEXTS), on_onnx.embed_texts(TEXTS)).min() >= 0.9999
    assert on_onnx.runtime_used == "image: onnx, text: onnx"
    exports = {e.manifest["model"]: e for e in list_exports(offline_models)
               if e.manifest["precision"] == "fp32"}
    assert set(exports) >= {"efficientnet-lite0", "all-MiniLM-L6-v2"}
    for export in exports.values():
        assert export.accepted and export.manifest["min_cosine"] >= 0.9999
        assert export.path.is_file() and len(export.manifest["weights_sha256"]) == 64
    listed = json.loads(CliRunner().invoke(
        __import__("pinshop_cli.commands.main", fromlist=["app"]).app,
        ["models", "list", "--json"]).stdout)
    assert {r["name"] for r in listed if r["task"] == "onnx"} >= {
        "efficientnet-lite0 (fp32)", "all-MiniLM-L6-v2 (fp32)"}


def test_tiny_clip_on_onnx_agrees_with_torch(tiny_clip: str, sample_dir: Path) -> None:
    """open_clip's image and text towers export too, and the ONNX path's numpy
    preprocessing gives open_clip's own pixels (compared through the two runtimes)."""
    on_torch = get_embedder(tiny_clip, runtime="torch")
    on_onnx = get_embedder(tiny_clip, runtime="onnx")
    images = pins(sample_dir) + [Image.new("RGB", (40, 90), (10, 200, 30))]
    torch_pixels = np.stack([on_torch.preprocess_image(i) for i in images])
    onnx_pixels = np.stack([on_onnx.preprocess_image(i) for i in images])
    assert np.abs(torch_pixels - onnx_pixels).max() < 0.02  # PIL rounding, same resize
    assert cosines(on_torch.embed_images(images), on_onnx.embed_images(images)).min() >= 0.999
    assert cosines(on_torch.embed_texts(TEXTS[:2]), on_onnx.embed_texts(TEXTS[:2])).min() \
        >= 0.9999


@pytest.mark.slow
def test_int8_is_used_only_where_its_check_passes(offline_models: Path) -> None:
    """MiniLM's int8 export is measured against fp32 on product-like texts and recorded
    either way; when refused, onnx-int8 runs the fp32 export and says why."""
    embedder = get_embedder("offline", runtime="onnx-int8")
    vectors = embedder.embed_texts(TEXTS)
    int8 = next(e for e in list_exports(offline_models)
                if e.manifest["model"] == "all-MiniLM-L6-v2" and e.manifest["precision"] == "int8")
    assert 0.9 < int8.manifest["min_cosine"] <= 1.0 and int8.manifest["fp32_s"] > 0
    if int8.accepted:
        assert int8.manifest["min_cosine"] >= 0.99 and "text: onnx-int8" in embedder.runtime_used
    else:
        assert "text: onnx" in embedder.runtime_used
        assert any("int8 export not used" in n for n in embedder.runtime_notes)
    # Against the fp32 export (the test above holds fp32 to torch at 0.9999).
    reference = get_embedder("offline", runtime="onnx").embed_texts(TEXTS)
    assert cosines(reference, vectors).min() >= 0.98


def test_auto_falls_back_to_torch_when_export_fails(tiny_clip: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Plumbing: a failing exporter is a note under auto and a one-line error under onnx."""
    from pinshop_cli import PinshopError
    from pinshop_cli.models import onnx

    def broken(*args: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx, "_export_torch", broken)
    models = tmp_path / "models"
    auto = get_embedder(tiny_clip, models, "auto")
    assert auto.embed_texts(["sofa"]).shape == (1, 32)
    assert auto.runtime_used == "image: unused, text: torch"
    assert "exporter exploded" in auto.runtime_notes[0]
    with pytest.raises(PinshopError, match=r"--runtime onnx: .* \(exporter exploded\)"):
        get_embedder(tiny_clip, models, "onnx").embed_texts(["sofa"])


@pytest.mark.slow
def test_match_never_imports_torch_with_exports(copy_workspace: Callable[[], Path],
                                                sample_dir: Path, offline_models: Path) -> None:
    """The query path: cached exports, no YOLO weights -> no torch in the process; and the
    same matches as the torch runtime."""
    from pinshop_cli import match

    workspace = copy_workspace()
    photo = sorted((sample_dir / "pins").glob("*.jpg"))[0]
    on_torch = match([photo], workspace=workspace, runtime="torch", top_k=3)
    match([photo], workspace=workspace, runtime="onnx", top_k=3)  # makes the exports
    code = ("import sys\nfrom pinshop_cli.commands.main import run\n"
            f"sys.argv = ['pinshop', 'match', {str(photo)!r}, '-w', {str(workspace)!r}, "
            "'-k', '3', '--json']\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PINSHOP_MODELS": str(offline_models)})
    assert "torch imported: False" in done.stderr, done.stderr
    result = json.loads(done.stdout)
    assert result["runtime"] == "image: onnx, text: unused"
    ids = [m["id"] for m in result["pins"][0]["objects"][0]["matches"]]
    assert ids == [m.id for m in on_torch.pins[0].objects[0].matches]


def test_unknown_runtime_is_an_argument_error(sample_dir: Path) -> None:
    from pinshop_cli.commands._output import RUNTIMES
    from pinshop_cli.commands.main import app
    from pinshop_cli.models.onnx import RUNTIMES as LIBRARY_RUNTIMES

    assert RUNTIMES == LIBRARY_RUNTIMES  # the CLI's copy keeps --help free of imports
    photo = sorted((sample_dir / "pins").glob("*.jpg"))[0]
    result = CliRunner().invoke(app, ["match", str(photo), "--runtime", "tensorrt"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "'tensorrt' is not one of auto, torch, onnx, onnx-int8" in result.output


def test_a_refused_fp32_export_is_remembered(tiny_clip: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that fails its cosine check is recorded as refused: auto runs torch, and
    the next process does not export again."""
    from pinshop_cli.models import embedders, onnx
    from pinshop_cli.models.registry import _cached_embedder

    monkeypatch.setattr(onnx, "FP32_MIN_COSINE", 2.0)  # no export can pass
    models = tmp_path / "models"
    first = get_embedder(tiny_clip, models, "auto")
    first.embed_texts(["sofa"])
    assert first.runtime_used == "image: unused, text: torch"
    refused = [e for e in list_exports(models) if e.manifest["model"].endswith(":text")]
    assert len(refused) == 1 and not refused[0].accepted and not refused[0].path.exists()

    def exporting(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx, "_export_torch", exporting)
    embedders._WEIGHTS.clear()  # as a new process would start
    _cached_embedder.cache_clear()
    again = get_embedder(tiny_clip, models, "auto")
    again.embed_texts(["sofa"])
    assert again.runtime_used == "image: unused, text: torch"
    assert "differs from torch" in again.runtime_notes[0]


class NotesProgress:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_a_first_ingest_says_it_will_export_the_models(tmp_path: Path,
                                                       demo_workspace: Path) -> None:
    """The first ingest's ONNX exports took about 30 s a model with no word while its bar
    sat still. Plumbing: the note is checked, the exports are not made (they cost time)."""
    from pinshop_cli.engines import get_engine
    from pinshop_cli.ingestion.config import IngestConfig
    from pinshop_cli.ingestion.pipeline import _Run
    from pinshop_cli.workspace.layout import Workspace

    fresh = tmp_path / "empty-cache"
    assert get_embedder("offline", fresh).exports_to_make() == [
        "efficientnet-lite0", "all-MiniLM-L6-v2"]
    assert get_embedder("offline", fresh, runtime="torch").exports_to_make() == []
    assert get_embedder("offline").exports_to_make() == []  # the demo made them
    progress = NotesProgress()
    run = _Run(Workspace.open(tmp_path / "ws", create=True), IngestConfig(
        embedder="offline", models_dir=str(fresh)), progress, get_engine("local"))
    assert run.embedder.image_model_id == "efficientnet-lite0"
    assert progress.notes == [
        "first use of efficientnet-lite0 and all-MiniLM-L6-v2: exporting to ONNX Runtime "
        "and checking it against torch, once (about 30 s a model); later runs load the "
        "export"]
