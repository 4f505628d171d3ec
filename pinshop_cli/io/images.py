"""Safe image loading: every way an image file can be bad becomes an ImageRejected reason."""

from __future__ import annotations

import os
import stat
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# Larger than any real photo (a 50 MP camera frame) but far below a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000
# load_image(min_side=...) shrinks what is larger than this many times min_side.
SHRINK_ABOVE = 1.25
# EXIF orientations that turn the stored pixels by 90 degrees: width and height swap.
_SIDEWAYS = {5, 6, 7, 8}
_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))


def one_line(text: str) -> str:
    """Reasons land in one table cell and one terminal line; file names may hold newlines."""
    return " ".join(text.splitlines())


def os_reason(exc: Exception) -> str:
    """An OSError's own words without the path (it is in the row already, and may be huge)."""
    return one_line(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)


class ImageRejected(Exception):
    """The file is not a usable image; str(exc) is the one-line reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(one_line(reason))


def _check_regular_file(path: Path) -> None:
    """Refuse anything but a non-empty regular file before opening it: opening a FIFO blocks
    forever and /dev/zero never ends. stat() follows symlinks, so a symlink to either is
    caught too, and a symlink loop or a bad name fails here as an OSError."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageRejected("broken symlink (its target does not exist)") from None
        raise ImageRejected(f"image not found: {path}") from None
    except (OSError, ValueError) as exc:  # symlink loop, name too long, NUL byte, permission
        raise ImageRejected(f"unreadable path: {os_reason(exc)}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(info.st_mode)), "a special file")
        raise ImageRejected(f"not a regular file ({kind})")
    if info.st_size == 0:
        raise ImageRejected("empty file (0 bytes)")


def _pil_open(path: Path) -> Image.Image:
    """PIL's own Image.open. Importing ultralytics replaces Image.open with a wrapper that
    tries to pip-install a HEIF plugin when a file is not an image; here a non-image file
    must become a reject, never an install attempt."""
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(path)


def open_checked(path: Path, max_pixels: int) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    _check_regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _pil_open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image (unrecognized format)") from None
    except Exception as exc:  # OSError (permission, I/O), or whatever a hostile header raises
        raise ImageRejected(f"unreadable image: {os_reason(exc)}") from None
    width, height = image.size
    problem = (
        f"decompression bomb refused: {width}x{height} exceeds {max_pixels:,} pixels"
        if width * height > max_pixels else
        f"unsupported image format {image.format} (use JPEG, PNG or WebP)"
        if image.format not in {"JPEG", "PNG", "WEBP", "MPO"} else None
    )
    if problem:
        image.close()
        raise ImageRejected(problem)
    return image


def _orientation(image: Image.Image) -> int:
    from PIL import Image

    try:
        # Image.getexif, not PngImageFile.getexif: that one decodes the whole file looking for
        # an EXIF chunk after the pixels. Header fields only, so a scan stays cheap and
        # load_image (which asks before decoding) agrees with it.
        return int(Image.Image.getexif(image).get(0x0112, 1))
    except Exception:  # a corrupt EXIF block: show the pixels as stored
        return 1


def display_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, after EXIF orientation: the frame boxes are in."""
    width, height = image.size
    return (height, width) if _orientation(image) in _SIDEWAYS else (width, height)


def check_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Decode the whole file cheaply (JPEG at 1/8 scale) to catch truncation; return its
    displayed size."""
    with open_checked(path, max_pixels) as image:
        size = display_size(image)
        try:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError for broken streams
            raise ImageRejected(f"corrupt or truncated image: {exc}") from None
    return size


def _to_8bit(image: Image.Image) -> Image.Image:
    """Grey modes wider than 8 bits. PIL's own convert clips them at 255, so a 16-bit PNG
    comes out all white; scale the range instead."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image)
    if image.mode == "F":  # no stated range: 0..1 when it fits there, else 0..255
        values = np.nan_to_num(values)
        grey = np.clip(values * (255 if values.max(initial=0) <= 1 else 1), 0, 255)
    elif image.mode == "I" and values.max(initial=0) <= 255:  # 32-bit ints holding 8-bit data
        grey = np.clip(values, 0, 255)
    else:  # "I;16*", or "I" holding 16-bit data (the usual source of "I")
        grey = np.clip(values, 0, 65535) >> 8
    return Image.fromarray(grey.astype(np.uint8))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Models take 8-bit RGB. Transparent areas become white, as a viewer shows them, rather
    than whatever colour hides under alpha 0 (often black)."""
    from PIL import Image

    if image.mode in {"I", "F"} or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")  # CMYK, palette, grey, YCbCr


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS,
               min_side: int | None = None) -> Image.Image:
    """Fully decode to RGB with EXIF orientation applied. With `min_side`, a JPEG decodes at
    the smallest DCT scale keeping both sides >= min_side (a 2880 px photo bound for a
    224 px model input decodes 4-8x faster than at full size), and any image well above
    that is then shrunk to a shorter side of `min_side`: less to carry between stages and
    processes, and the same pixels a model input would be resampled from anyway."""
    from PIL import Image
    from PIL.Image import Transpose

    turn = {2: Transpose.FLIP_LEFT_RIGHT, 3: Transpose.ROTATE_180, 4: Transpose.FLIP_TOP_BOTTOM,
            5: Transpose.TRANSPOSE, 6: Transpose.ROTATE_270, 7: Transpose.TRANSVERSE,
            8: Transpose.ROTATE_90}
    with open_checked(path, max_pixels) as image:
        full_size = image.size
        orientation = _orientation(image)  # before decoding: the same answer scan_pins got
        try:
            if min_side is not None and image.format in {"JPEG", "MPO"}:
                image.draft("RGB", (min_side, min_side))
            image.load()
            decoded = _to_rgb(image.transpose(turn[orientation]) if orientation in turn else image)
        except Exception as exc:
            raise ImageRejected(f"corrupt or truncated image: {exc}") from None
    if min_side is not None and min(decoded.size) > SHRINK_ABOVE * min_side:
        factor = min_side / min(decoded.size)
        decoded = decoded.resize((max(min_side, round(decoded.width * factor)),
                                  max(min_side, round(decoded.height * factor))),
                                 Image.Resampling.BILINEAR, reducing_gap=2.0)
    # The orientation is applied: drop the metadata that would make anyone apply it again.
    decoded.info = {"decode_scale": max(full_size) / max(decoded.size)}
    return decoded


def decode_scale(image: Image.Image) -> float:
    """Factor from a load_image() result's pixels back to the original photo's pixels."""
    return float(image.info.get("decode_scale", 1.0))
