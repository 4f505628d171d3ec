"""A fake detector for plumbing tests: it returns the boxes it was given, as fractions of
each image, so a test of registration, cropping or resume needs no weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..models.base import Detection, Detector

if TYPE_CHECKING:
    from PIL import Image

#: (x1, y1, x2, y2) as fractions of the image's width and height, and a class name.
FractionBox = tuple[float, float, float, float, str]


class FixedBoxesDetector(Detector):
    """Detects the same boxes in every image (scaled to its size), with score 1."""

    def __init__(self, boxes: Sequence[FractionBox], model_id: str = "fixed-boxes") -> None:
        self.boxes, self.model_id = list(boxes), model_id

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        found = []
        for image in images:
            width, height = image.size
            found.append([Detection((x1 * width, y1 * height, x2 * width, y2 * height), name,
                                    name.lower(), 1.0) for x1, y1, x2, y2, name in self.boxes])
        return found
