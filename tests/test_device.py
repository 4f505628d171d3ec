"""--device: choosing where models run, the GPU paths (run only where a GPU is visible),
and the model registry's factories that build every detector, embedder and chat model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pinshop_cli.errors import PinshopError
from pinshop_cli.models import registry
from pinshop_cli.models.device import (
    CPU,
    Device,
    DeviceError,
    Placement,
    check_spelling,
    cuda_devices,
    resolve_device,
)
from pinshop_cli.models.resolve import ModelFile
from pinshop_cli.models.spec import ModelSpec

needs_gpu = pytest.mark.skipif(not cuda_devices(), reason="no CUDA device visible here")
no_gpu = pytest.mark.skipif(bool(cuda_devices()), reason="this machine has a GPU")


def pinshop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "pinshop_cli.commands.main", *args],
                          capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "300", **(env or {})})


def test_device_spellings_are_checked_without_any_library():
    assert [check_spelling(s) for s in ("auto", "CPU", "cuda", " cuda:1 ")] == \
        ["auto", "cpu", "cuda", "cuda:1"]
    for wrong in ("gpu", "cuda:", "cuda:x", "mps"):
        with pytest.raises(DeviceError, match="use auto"):
            check_spelling(wrong)
    assert resolve_device("cpu") == CPU
    assert str(Device("cuda", 2)) == "cuda:2"
    assert Device("cuda", 1).ort_providers()[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert CPU.ort_providers() == ["CPUExecutionProvider"]


@no_gpu
def test_auto_is_the_cpu_and_a_named_gpu_is_an_error_without_one():
    assert resolve_device("auto") == CPU
    with pytest.raises(DeviceError, match=r"--device cuda:1: no CUDA device 1 \(none visible\)"):
        resolve_device("cuda:1")


@no_gpu
def test_cli_device_cuda_without_a_gpu_is_one_line_and_exit_1(tmp_path: Path):
    done = pinshop("match", "--text", "sofa", "-w", str(tmp_path), "--device", "cuda")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: --device cuda: no CUDA device 0 (none visible); use --device cpu or auto"]
    by_env = pinshop("similar", "P001", "-w", str(tmp_path), env={"PINSHOP_DEVICE": "cuda:0"})
    assert by_env.returncode == 1 and "no CUDA device 0" in by_env.stderr
    misspelled = pinshop("ingest", "x.csv", "-w", str(tmp_path), "--device", "gpu")
    assert misspelled.returncode == 2 and "unknown device 'gpu'" in misspelled.stderr


def test_embedders_are_placed_per_call_not_by_a_global():
    """Two placements are two embedders (thread counts are no longer process state), and
    both give the same vectors."""
    one = registry.get_embedder("offline", device="cpu", threads=1)
    every = registry.get_embedder("offline", device="cpu")
    assert one is not every and one.placement == Placement(CPU, 1)
    texts = ["green velvet sofa", "brass floor lamp"]
    assert np.allclose(one.embed_texts(texts), every.embed_texts(texts), atol=1e-5)
    assert registry.get_embedder("offline", device="cpu", threads=1) is one


def test_ray_model_actors_ask_for_gpus_only_where_wanted_and_present():
    from pinshop_cli.engines import actor_gpus

    assert actor_gpus(["cpu", "cpu"], cluster_gpus=4, model_actors=2) == 0
    assert actor_gpus(["auto"], cluster_gpus=0, model_actors=2) == 0
    assert actor_gpus(["auto"], cluster_gpus=1, model_actors=4) == 0.25
    assert actor_gpus(["cuda:0"], cluster_gpus=8, model_actors=2) == 1
    with pytest.raises(PinshopError, match="the Ray cluster has no GPUs"):
        actor_gpus(["auto", "cuda"], cluster_gpus=0, model_actors=2)


def test_chat_on_a_gpu_says_when_llama_cpp_cannot_offload(smollm2: Any):
    """The installed llama-cpp-python decides: a CPU build answers on the CPU and says so."""
    from pinshop_cli.models.llm import LlamaCppChatModel

    model = LlamaCppChatModel(smollm2.path, "smollm2", n_ctx=512, n_threads=1,
                              device=Device("cuda", 0))
    try:
        assert model.count_tokens("a green sofa") > 0
        offload = model._ready_worker().ready["gpu_offload"]
        assert (model.note == "") == offload
        if not offload:
            assert "built without GPU support: chat runs on the CPU, not cuda:0" in model.note
    finally:
        model.close()


# -- the registry's factories (plumbing: a plugin's own class, with the fake detector) -----
@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_specs", {})
    monkeypatch.setattr(registry, "_aliases", {})
    registry._cached_detector.cache_clear()
    yield
    registry._cached_detector.cache_clear()


def plugin_detector(weights: Path) -> ModelSpec:
    from pinshop_cli.testing import FixedBoxesDetector

    def build(spec: ModelSpec, path: Path, options: Any) -> FixedBoxesDetector:
        assert path == weights and options.placement.device == CPU
        return FixedBoxesDetector([(0.0, 0.0, 0.5, 1.0, "Lamp")], model_id=spec.name)

    return ModelSpec("shelf-detector", "detect", "a plugin's own class", "MIT",
                     (ModelFile("shelf.bin", mirror=lambda: weights),), aliases=("shelf",),
                     factory=build)


class EntryPoint:
    name, value = "shelf", "shelf_plugin:register"

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def load(self) -> Any:
        return self.hook


def test_a_plugin_registers_a_detector_class_by_factory_and_alias(
        fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    weights = tmp_path / "shelf.bin"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [EntryPoint(lambda add: add(plugin_detector(weights)))])
    detector = registry.get_detector("shelf", device="cpu")
    assert detector.model_id == "shelf-detector"
    [[found]] = detector.detect_batch([Image.new("RGB", (200, 100))])
    assert found.box == (0.0, 0.0, 100.0, 100.0) and found.category == "lamp"
    assert registry.get_spec("yolo11n").factory is None  # built-ins: the task's factory


def test_a_plugin_calling_register_itself_while_loading_does_not_reenter(
        fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    weights = tmp_path / "shelf.bin"
    weights.write_bytes(b"weights")
    calls = []

    def hook(add: Any) -> None:
        calls.append(1)
        registry.register(plugin_detector(weights))  # not the callback it was given

    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [EntryPoint(hook)])
    assert registry.get_spec("shelf").name == "shelf-detector"
    assert registry.get_spec("yolo11n").task == "detect" and calls == [1]


# -- on a GPU (skipped here: no device was lent to this project's CPU machines) ------------
@needs_gpu
def test_gpu_embeddings_agree_with_the_cpu(sample_dir: Path):
    images = [Image.open(p).convert("RGB") for p in sorted(sample_dir.glob("products/*.jpg"))[:8]]
    cpu = registry.get_embedder("offline", device="cpu").embed_images(images)
    gpu_embedder = registry.get_embedder("offline", device="cuda")
    gpu = gpu_embedder.embed_images(images)
    assert float(np.min(np.sum(cpu * gpu, axis=1))) >= 0.999
    assert "cuda:0" in gpu_embedder.runtime_used


def test_engine_options_keep_the_cpus_batches_and_grow_on_a_gpu():
    from pinshop_cli.engines import EngineOptions, engine_options

    assert engine_options("cpu", 32, 2, None) == EngineOptions(32, 2, None)
    if cuda_devices():
        on_gpu = engine_options("cuda", 32, 2, None)
        assert on_gpu.batch_size >= 32 and on_gpu.reader_threads >= 2
