"""Finding and vetting pin images. Bad files become rejected rows, never exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import PinshopError
from .images import IMAGE_SUFFIXES, ImageRejected, open_checked
from .storage import sha256_file


@dataclass
class PinFile:
    path: str
    pin_id: str = ""
    sha256: str = ""
    bytes: int = 0
    width: int = 0
    height: int = 0
    status: str = "ok"  # ok | rejected
    reason: str = ""


def _candidate_paths(source: Path) -> Iterator[Path]:
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            hidden = any(p.startswith(".") for p in path.relative_to(source).parts)
            if path.is_file() and not hidden:
                yield path
    elif source.is_file():  # a list file: one image path per line, relative to the list
        for line in source.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                candidate = Path(line.strip()).expanduser()
                yield candidate if candidate.is_absolute() else source.parent / candidate
    else:
        raise PinshopError(f"pins not found: {source} (pass a directory or a list file)")


def scan_pins(source: Path, max_pixels: int) -> list[PinFile]:
    """Every file under `source`, with its content hash and a header check."""
    pins: list[PinFile] = []
    seen: dict[str, str] = {}
    for path in _candidate_paths(Path(source)):
        pin = PinFile(str(path.resolve()))
        pins.append(pin)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            pin.status, pin.reason = "rejected", f"not an image file ({path.suffix or 'no suffix'})"
            continue
        try:
            image = open_checked(path, max_pixels)
            pin.width, pin.height = image.size
            image.close()
        except ImageRejected as exc:
            pin.status, pin.reason = "rejected", str(exc)
            continue
        pin.sha256 = sha256_file(path)
        pin.pin_id = pin.sha256[:16]
        pin.bytes = path.stat().st_size
        if pin.pin_id in seen:
            pin.status, pin.reason = "rejected", f"duplicate of {seen[pin.pin_id]}"
        else:
            seen[pin.pin_id] = pin.path
    return pins
