"""Finding and vetting pin images. Bad files become rejected rows, never exceptions."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import PinshopError
from ..workspace.storage import sha256_file
from .images import (
    IMAGE_SUFFIXES,
    ImageRejected,
    display_size,
    one_line,
    open_checked,
    os_reason,
)

# A file given as --pins is one photo, not a list of them, when it starts like a JPEG, PNG or
# WebP (whatever its name says).
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


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


# A path to check, and why it is refused up front ("" when it still has to be opened).
Candidate = tuple[Path, str]


def _suffix_reason(path: Path) -> str:
    suffix = path.suffix.lower()
    return "" if suffix in IMAGE_SUFFIXES else f"not an image file ({suffix or 'no suffix'})"


def _walk(source: Path) -> list[Candidate]:
    """Every non-hidden entry under `source` that could be a pin. Nothing vanishes silently:
    a directory that cannot be listed, a symlinked directory (not followed, so loops are
    impossible) and a directory named like an image each come back with a reason."""
    found: list[Candidate] = []

    def unlistable(exc: OSError) -> None:
        found.append((Path(exc.filename), f"unreadable directory: {os_reason(exc)}"))

    for root, dirs, files in os.walk(source, onerror=unlistable):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for path in (Path(root, name) for name in dirs):
            if path.is_symlink():
                found.append((path, "symlinked directory (not followed)"))
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                found.append((path, "not a regular file (a directory)"))
        # Symlink loops, dangling symlinks, FIFOs and devices are listed here: the per-file
        # check refuses them without opening them.
        found.extend((path, _suffix_reason(path))
                     for path in (Path(root, name) for name in files if not name.startswith(".")))
    return sorted(found)


def _listed(source: Path) -> Iterator[Candidate]:
    """A list file: one image path per line, relative to the list; # starts a comment."""
    try:
        text = source.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PinshopError(
            f"pins list {source} is not UTF-8 text (bad byte at offset {exc.start}); pass a "
            "directory, one JPEG/PNG/WebP image, or a text file with one image path per line"
        ) from None
    except OSError as exc:
        raise PinshopError(f"cannot read pins list {source}: {os_reason(exc)}") from None
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            path = Path(os.path.expanduser(entry))  # unlike Path.expanduser, never raises
            path = path if path.is_absolute() else source.parent / path
            yield path, _suffix_reason(path)


def _is_image(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:  # then it is no readable list either: _listed says so
        return False
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:] == b"WEBP")


def check_pins_source(source: Path) -> int:
    """The file mode of a pins source that can be one (a directory, an image or a list
    file), else a PinshopError saying why: checked before an ingest's model work."""
    try:
        mode = os.stat(source).st_mode
    except (OSError, ValueError) as exc:
        raise PinshopError(f"pins not found: {source} ({os_reason(exc)}); pass a directory, "
                           "an image or a list file") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):  # a FIFO would block, a device not end
        raise PinshopError(f"pins source {source} is not a directory or a regular file")
    return mode


def _candidates(source: Path) -> Iterable[Candidate]:
    if stat.S_ISDIR(check_pins_source(source)):
        return _walk(source)
    return [(source, "")] if _is_image(source) else _listed(source)


def photos_in(source: Path) -> tuple[list[Path], list[Candidate]]:
    """The photos a path names, and what was left out with why: a directory's images,
    walked as `ingest --pins` walks it (a .gif, a folder it cannot list); any other path as
    it is (its reader says why it is no photo)."""
    if not source.is_dir():
        return [source], []
    found = _walk(source)
    return [path for path, reason in found if not reason], [c for c in found if c[1]]


def _inspect(path: Path, max_pixels: int) -> tuple[str, int, int, str, int]:
    """Resolved path, (width, height) as displayed, sha256 and size in bytes."""
    with open_checked(path, max_pixels) as image:
        width, height = display_size(image)
    try:
        resolved = str(path.resolve(strict=True))
        return resolved, width, height, sha256_file(path), os.stat(path).st_size
    except (OSError, RuntimeError) as exc:  # changed or vanished since the header check
        raise ImageRejected(f"unreadable file: {os_reason(exc)}") from None


def _storable(path: str) -> str:
    """A path as Parquet can store it: a name that is not UTF-8 (a Latin-1 zip, an old
    share) keeps its readable parts, with U+FFFD where its bytes are not UTF-8."""
    return os.fsencode(path).decode("utf-8", errors="replace")


def scan_pins(source: Path, max_pixels: int) -> list[PinFile]:
    """Every file under `source` (a directory, a list file or one image), with its content
    hash and a header check. A PinshopError only when `source` itself is unusable."""
    pins: list[PinFile] = []
    seen: dict[str, str] = {}
    listed: set[str] = set()
    for path, reason in _candidates(Path(source)):
        # A refused row names the entry as found: resolving a dangling symlink or a link to
        # /dev/zero would name its target instead, and a symlink loop cannot be resolved.
        found = os.path.abspath(path)
        if found in listed:  # a list file naming a path twice: one row
            continue
        listed.add(found)
        pin = PinFile(_storable(found))
        pins.append(pin)
        try:
            if reason:
                raise ImageRejected(reason)
            if pin.path != found:
                raise ImageRejected("file name is not valid UTF-8 (rename the file)")
            pin.path, pin.width, pin.height, pin.sha256, pin.bytes = _inspect(path, max_pixels)
        except ImageRejected as exc:
            pin.status, pin.reason = "rejected", str(exc)
            continue
        pin.pin_id = pin.sha256[:16]
        if pin.pin_id in seen:
            pin.status, pin.reason = "rejected", one_line(f"duplicate of {seen[pin.pin_id]}")
        else:
            seen[pin.pin_id] = pin.path
    return pins
