"""ONNX Runtime for the embedders' forward passes.

Each forward (`ModelPart`: named numpy inputs -> one numpy output) is exported from torch
once, checked against torch on a sample, and cached in `<models dir>/onnx/`, keyed by the
sha256 of its weight files and the export settings. Finding and running a cached export
never imports torch; only making one does. `Forward` is what an embedder calls: the same
inputs and outputs on either runtime, so preprocessing and pooling are shared.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..workspace.storage import atomic_path, sha256_file
from .device import Placement

if TYPE_CHECKING:
    import numpy as np

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
OPSET = 17
EXPORT_VERSION = 1  # bump when the export recipe changes: old exports are then ignored
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.99
INT8_MIN_SPEEDUP = 1.2  # below this, fp32's exactness is worth more than the time
TIMING_ROWS = 64  # the speed-up is timed on this many sample rows (the cosine on all)
TRACE_ROWS = 2  # sample rows the exporter traces with
FP16_MIN_COSINE = 0.999  # a GPU forward runs in half precision only when this close to fp32


@dataclass(frozen=True)
class ModelPart:
    """One exportable forward of an embedder. `build` returns the torch module taking the
    inputs positionally in `inputs` order (`build(True)`: the variant to export, e.g. eager
    attention that ORT can fuse); `sample` returns held-out inputs to verify on;
    `pool` turns (output, inputs) into the vectors compared (e.g. MiniLM's mean pooling)."""

    model_id: str
    weights: tuple[Path, ...]
    inputs: tuple[str, ...]
    build: Callable[[bool], Any] = field(compare=False)
    sample: Callable[[], dict[str, np.ndarray]] = field(compare=False)
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict, compare=False)
    pool: Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray] | None = field(
        default=None, compare=False)
    fuse_bert: tuple[int, int] | None = None  # (heads, hidden): ORT transformer fusion
    #: Extra manifest entries the ONNX path needs later without torch (CLIP's preprocessing).
    describe: Callable[[], dict[str, Any]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Export:
    path: Path
    manifest: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return bool(self.manifest.get("accepted", True))


def export_dir(models_dir: Path) -> Path:
    return models_dir / "onnx"


def list_exports(models_dir: Path) -> list[Export]:
    directory = export_dir(models_dir)
    if not directory.is_dir():
        return []
    found = []
    for manifest in sorted(directory.glob("*.json")):
        if manifest.name == "hashes.json":
            continue
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        found.append(Export(manifest.with_suffix(".onnx"), data))
    return found


def _weights_sha256(paths: tuple[Path, ...], models_dir: Path) -> str:
    """sha256 over the weight files, remembered by (path, size, mtime) so a query never
    re-reads a 350 MB checkpoint to find its export."""
    memo_path = export_dir(models_dir) / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    changed = False
    for path in paths:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = sha256_file(path)
            changed = True
        digest.update(memo[key].encode())
    if changed:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(memo_path) as tmp:
            tmp.write_text(json.dumps(memo, indent=1))
    return digest.hexdigest()


def _settings(precision: str) -> dict[str, Any]:
    settings: dict[str, Any] = {"opset": OPSET, "precision": precision, "recipe": EXPORT_VERSION}
    if precision == "int8":  # the acceptance rule decides what is cached
        settings |= {"min_cosine": INT8_MIN_COSINE, "min_speedup": INT8_MIN_SPEEDUP}
    return settings


def _export_path(part: ModelPart, precision: str, models_dir: Path) -> tuple[Path, str]:
    sha = _weights_sha256(part.weights, models_dir)
    settings = hashlib.sha256(json.dumps(_settings(precision), sort_keys=True).encode())
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in part.model_id)
    return export_dir(models_dir) / f"{slug}-{sha[:16]}-{settings.hexdigest()[:8]}.onnx", sha


def find_export(part: ModelPart, precision: str, models_dir: Path) -> Export | None:
    """The cached export of `part` (torch-free), or None. A refused one is returned too
    (`accepted` False), so its check is not repeated."""
    path, _ = _export_path(part, precision, models_dir)
    manifest = path.with_suffix(".json")
    if not manifest.is_file() or not (path.is_file() or _rejected(manifest)):
        return None
    try:
        return Export(path, json.loads(manifest.read_text()))
    except ValueError:  # a damaged manifest: make the export again
        return None


def _rejected(manifest: Path) -> bool:
    try:
        return json.loads(manifest.read_text()).get("accepted") is False
    except (OSError, ValueError):
        return False


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import numpy as np

    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                       1e-12)


def make_export(part: ModelPart, models_dir: Path, precision: str = "fp32") -> Export:
    """Export `part` (fp32 from torch; int8 by quantizing the fp32 export), verify it and
    cache it. An int8 export less than INT8_MIN_SPEEDUP faster than fp32, or below
    INT8_MIN_COSINE, is recorded as not accepted, so it is measured once, not on every run."""
    if existing := find_export(part, precision, models_dir):
        return existing
    path, sha = _export_path(part, precision, models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = part.sample()
    started = time.perf_counter()
    if precision == "fp32":
        torch_forward = TorchForward(part, export=True)
        reference = torch_forward(sample)
        with atomic_path(path) as tmp:
            _export_torch(torch_forward.module, part, sample, tmp)
        candidate = Forward.from_file(path, part)
        cosine = float(cosines(_vectors(part, reference, sample),
                               _vectors(part, candidate(sample), sample)).min())
        accepted, why = cosine >= FP32_MIN_COSINE, f"min cosine to torch {cosine:.6f}"
        timing: dict[str, Any] = part.describe() if part.describe else {}
    elif precision == "int8":
        fp32 = make_export(part, models_dir, "fp32")
        with atomic_path(path) as tmp:
            _quantize(fp32.path, tmp)
        fp32_forward, candidate = Forward.from_file(fp32.path, part), Forward.from_file(path, part)
        cosine = float(cosines(_vectors(part, fp32_forward(sample), sample),
                               _vectors(part, candidate(sample), sample)).min())
        rows = {name: values[:TIMING_ROWS] for name, values in sample.items()}
        timing = {"fp32_s": _time(fp32_forward, rows), "int8_s": _time(candidate, rows)}
        faster = timing["int8_s"] * INT8_MIN_SPEEDUP < timing["fp32_s"]
        accepted = cosine >= INT8_MIN_COSINE and faster
        why = (f"min cosine to fp32 {cosine:.4f}, {timing['fp32_s'] / timing['int8_s']:.2f}x "
               "fp32 speed")
    else:
        raise PinshopError(f"unknown export precision {precision!r} (fp32 or int8)")
    if not accepted:  # recorded below, so the check is not repeated on every run
        path.unlink(missing_ok=True)
    manifest = {"model": part.model_id, "weights_sha256": sha, **_settings(precision),
                "min_cosine": round(cosine, 6), "checked_on": len(next(iter(sample.values()))),
                "accepted": accepted, "check": why, "export_s": round(
                    time.perf_counter() - started, 1), **timing,
                "bytes": path.stat().st_size if path.is_file() else 0}
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return Export(path, manifest)


def _vectors(part: ModelPart, output: np.ndarray, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return part.pool(output, inputs) if part.pool else output


def _export_torch(module: Any, part: ModelPart, sample: dict[str, np.ndarray],
                  target: Path) -> None:
    import torch

    # A few rows are enough to trace (the batch axis is dynamic); the whole sample is for
    # the check after (tracing MiniLM on all 512 of them cost a 4 s forward pass).
    example = tuple(torch.from_numpy(sample[name][:TRACE_ROWS]) for name in part.inputs)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter: fixed opset, no onnxscript rewrites, and it handles
        # every model here. Its deprecation warnings are not the user's business.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(target), input_names=list(part.inputs),
                          output_names=["output"], dynamic_axes=part.dynamic_axes,
                          opset_version=OPSET, dynamo=False)
    if part.fuse_bert:
        from onnxruntime.transformers import optimizer

        heads, hidden = part.fuse_bert
        fused = optimizer.optimize_model(str(target), model_type="bert", num_heads=heads,
                                         hidden_size=hidden, opt_level=1)
        fused.save_model_to_file(str(target))


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 of the MatMul weights, per channel. Measured on MiniLM with product
    texts: per-tensor scales give cosine 0.94; per-channel 0.988; leaving the fused
    attention in fp32 0.991 at 1.9x fp32 speed. EfficientNet's convolutions lose
    (cosine 0.96 and slower), so they are left alone and a CNN's int8 is not accepted."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()  # the quantizer warns "consider pre-processing" on root
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": 1})
    finally:
        root.setLevel(level)


def _time(forward: Forward, sample: dict[str, np.ndarray]) -> float:
    forward(sample)
    started = time.perf_counter()
    for _ in range(3):
        forward(sample)
    return (time.perf_counter() - started) / 3


class Forward:
    """An ONNX Runtime session behind the part's named inputs."""

    def __init__(self, session: Any, names: tuple[str, ...], label: str) -> None:
        self.session, self.names, self.label = session, names, label

    @classmethod
    def from_file(cls, path: Path, part: ModelPart, label: str = "onnx",
                  placement: Placement | None = None) -> Forward:
        import onnxruntime as ort

        placement = placement or Placement()
        options = ort.SessionOptions()
        options.intra_op_num_threads = placement.cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Busy-waiting pool threads would steal the cores that decode the next batch.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options,
                                       providers=placement.device.ort_providers())
        if placement.device.is_gpu:
            label = f"{label} on {placement.device}"
        return cls(session, part.inputs, label)

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        outputs: list[np.ndarray] = self.session.run(
            None, {name: inputs[name] for name in self.names})
        return outputs[0]


class TorchForward:
    """The same forward on the torch module (the `torch` runtime, the export check, and the
    GPU when ONNX Runtime has no CUDA provider). On a GPU it runs in fp16 when that agrees
    with fp32 on the part's sample (cosine >= FP16_MIN_COSINE), else in fp32, saying why."""

    def __init__(self, part: ModelPart, export: bool = False,
                 placement: Placement | None = None) -> None:
        import torch

        placement = placement or Placement()
        if placement.threads:  # torch's pool is process-wide: the last placement sets it
            torch.set_num_threads(placement.threads)
        self.names, self.device = part.inputs, placement.device
        self.module = part.build(export).to(str(self.device))
        self.half, self.note = False, ""
        self.label = "torch" if not self.device.is_gpu else f"torch on {self.device}"
        if self.device.is_gpu:
            self._choose_precision(part)

    def _choose_precision(self, part: ModelPart) -> None:
        sample = part.sample()
        full = self(sample)
        self.module, self.half = self.module.half(), True
        cosine = self.fp16_cosine = float(cosines(full, self(sample)).min())
        if cosine >= FP16_MIN_COSINE:
            self.label += " fp16"
            return
        self.module, self.half = self.module.float(), False
        self.note = (f"{part.model_id}: fp16 cosine to fp32 is {cosine:.4f} < "
                     f"{FP16_MIN_COSINE}; running fp32")

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        def tensor(name: str) -> torch.Tensor:
            value = torch.from_numpy(inputs[name]).to(str(self.device))
            return value.half() if self.half and value.is_floating_point() else value

        with torch.inference_mode():
            output = self.module(*(tensor(n) for n in self.names))
        result: np.ndarray = output.float().cpu().numpy()
        return result


class LazyForward:
    """Chooses and loads a part's runtime on first call (thread-safe), then runs it.
    `auto` uses ONNX when an export exists or can be made, else torch (with a note);
    `onnx` fails instead; `onnx-int8` uses the int8 export where it was accepted. On a GPU
    without ONNX Runtime's CUDA provider, `auto` runs torch on the GPU."""

    def __init__(self, part: ModelPart, runtime: str, models_dir: Path,
                 placement: Placement | None = None) -> None:
        if runtime not in RUNTIMES:
            raise PinshopError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
        self.part, self.runtime, self.models_dir = part, runtime, models_dir
        self.placement = placement or Placement()
        self.note = ""
        self._lock = threading.Lock()
        self._forward: Forward | TorchForward | None = None

    @property
    def label(self) -> str:
        """The runtime it runs on ("unused" until first called: reporting never loads)."""
        return self._forward.label if self._forward is not None else "unused"

    def load(self) -> Forward | TorchForward:
        with self._lock:
            if self._forward is None:
                self._forward = self._choose()
            return self._forward

    def _choose(self) -> Forward | TorchForward:
        if self.runtime == "torch" or (self.runtime == "auto" and self._gpu_without_ort()):
            return self._torch()
        try:  # ORT's own errors subclass plain Exception: any failure here is a fallback
            return self._onnx()
        except Exception as exc:
            if self.runtime != "auto":
                raise PinshopError(f"--runtime {self.runtime}: {self.part.model_id} could not "
                                   f"run on ONNX Runtime ({exc})") from exc
            self.note = f"{self.part.model_id}: ONNX export failed ({exc}); using torch"
            return self._torch()

    def _torch(self) -> TorchForward:
        forward = TorchForward(self.part, placement=self.placement)
        self.note = "; ".join(filter(None, (self.note, forward.note)))
        return forward

    def _gpu_without_ort(self) -> bool:
        if not self.placement.device.is_gpu:
            return False
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return False
        self.note = (f"{self.part.model_id}: ONNX Runtime has no CUDA provider (that needs "
                     f"onnxruntime-gpu); running torch on {self.placement.device}")
        return True

    def _onnx(self) -> Forward:
        if self.runtime == "onnx-int8":
            int8 = make_export(self.part, self.models_dir, "int8")
            if int8.accepted:
                return Forward.from_file(int8.path, self.part, "onnx-int8", self.placement)
            self.note = (f"{self.part.model_id}: int8 export not used "
                         f"({int8.manifest['check']}); running the fp32 export")
        fp32 = make_export(self.part, self.models_dir, "fp32")
        if not fp32.accepted:
            raise PinshopError(f"the export differs from torch ({fp32.manifest['check']})")
        return Forward.from_file(fp32.path, self.part, "onnx", self.placement)

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.load()(inputs)
