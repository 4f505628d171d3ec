"""Where the models run: `--device auto|cpu|cuda|cuda:N` (or PINSHOP_DEVICE).

`auto` takes the first GPU when one is visible, else the CPU. Asking for a GPU that is not
there is a one-line error, never a silent fall back to the CPU: a job sized for a GPU would
otherwise run for days. Seeing no GPU costs nothing on a machine without an NVIDIA driver
(torch is imported only where a driver is present)."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import PinshopError

DEVICE_HELP = "auto (a GPU when one is visible), cpu, cuda or cuda:N"
_SPELLING = re.compile(r"auto|cpu|cuda(:\d+)?")


class DeviceError(PinshopError):
    """A device that is misspelled or not visible on this machine."""


@dataclass(frozen=True)
class Device:
    kind: str  # cpu | cuda
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"

    def ort_providers(self) -> list[Any]:
        """ONNX Runtime execution providers, best first."""
        if not self.is_gpu:
            return ["CPUExecutionProvider"]
        return [("CUDAExecutionProvider", {"device_id": self.index}), "CPUExecutionProvider"]


CPU = Device("cpu")


@dataclass(frozen=True)
class Placement:
    """Where one model's forwards run and with how many CPU threads (None: every core).
    A value, not a global: two embedders in one process may run in different places."""

    device: Device = CPU
    threads: int | None = None

    def cpu_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


def check_spelling(requested: str) -> str:
    """`requested` lower-cased, or a DeviceError naming the choices (no library imported)."""
    text = requested.strip().lower()
    if not _SPELLING.fullmatch(text):
        raise DeviceError(f"unknown device {requested!r}: use {DEVICE_HELP}")
    return text


def resolve_device(requested: str = "auto") -> Device:
    """The Device `requested` names on this machine."""
    text = check_spelling(requested)
    if text == "cpu":
        return CPU
    gpus = cuda_devices()
    if text == "auto":
        return Device("cuda", 0) if gpus else CPU
    index = int(text.partition(":")[2] or 0)
    if index >= len(gpus):
        seen = f"{len(gpus)} visible" if gpus else "none visible"
        raise DeviceError(f"--device {text}: no CUDA device {index} ({seen}); "
                          "use --device cpu or auto")
    return Device("cuda", index)


@lru_cache(maxsize=1)
def cuda_devices() -> tuple[str, ...]:
    """Names of the visible CUDA devices, in index order."""
    if not _driver_present():
        return ()
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def _driver_present() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def gpu_batch_size(device: Device, bytes_per_item: int, default: int,
                   ceiling: int = 4096) -> int:
    """A batch that fills about half of the device's free memory (the rest is the model's
    and the allocator's), at least `default`; `default` itself on the CPU."""
    if not device.is_gpu:
        return default
    import torch

    free, _ = torch.cuda.mem_get_info(device.index)
    fits = int(free * 0.5) // max(1, bytes_per_item)
    return max(default, min(ceiling, fits))
