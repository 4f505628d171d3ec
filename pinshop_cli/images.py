"""Safe image loading: every way an image file can be bad becomes an ImageRejected reason."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# Larger than any real photo (a 50 MP camera frame) but far below a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageRejected(Exception):
    """The file is not a usable image; str(exc) is the one-line reason."""


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

    if not path.exists():
        raise ImageRejected(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _pil_open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image (unrecognized format)") from None
    except OSError as exc:
        raise ImageRejected(f"unreadable image: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"decompression bomb refused: {width}x{height} exceeds {max_pixels:,} pixels"
        )
    if image.format not in {"JPEG", "PNG", "WEBP", "MPO"}:
        raise ImageRejected(f"unsupported image format {image.format} (use JPEG, PNG or WebP)")
    return image


def check_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Decode the whole file cheaply (JPEG at 1/8 scale) to catch truncation; return its size."""
    image = open_checked(path, max_pixels)
    size = image.size
    try:
        image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        image.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError for broken streams
        raise ImageRejected(f"corrupt or truncated image: {exc}") from None
    return size


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS,
               min_side: int | None = None) -> Image.Image:
    """Fully decode to RGB with EXIF orientation applied. With `min_side`, a JPEG decodes at
    the smallest DCT scale keeping both sides >= min_side: a 2880 px photo bound for a
    224 px model input decodes 4-8x faster than at full size."""
    from PIL import ImageOps

    image = open_checked(path, max_pixels)
    full_size = image.size
    try:
        if min_side is not None and image.format in {"JPEG", "MPO"}:
            image.draft("RGB", (min_side, min_side))
        image.load()
        decoded = ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:
        raise ImageRejected(f"corrupt or truncated image: {exc}") from None
    decoded.info["decode_scale"] = max(full_size) / max(decoded.size)
    return decoded


def decode_scale(image: Image.Image) -> float:
    """Factor from a load_image() result's pixels back to the original photo's pixels."""
    return float(image.info.get("decode_scale", 1.0))
