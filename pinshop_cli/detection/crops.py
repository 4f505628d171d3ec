"""Detect -> crop, shared by ingest and match. A pin where nothing is found is kept as one
whole-image region, so every pin stays searchable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..models.detectors import whole_image

if TYPE_CHECKING:
    from PIL import Image

    from ..models import Detection, Detector

Region = tuple["Detection", "Image.Image"]
# Pins decode at >= this many pixels a side: plenty for YOLO's 640 input and for crops.
# Boxes are reported in the original photo's pixels (see images.decode_scale).
PIN_DECODE_SIDE = 1280


def detect_and_crop(detector: Detector, images: Sequence[Image.Image]) -> list[list[Region]]:
    regions: list[list[Region]] = []
    for image, detections in zip(images, detector.detect_batch(images), strict=True):
        found = detections or [whole_image(image)]
        regions.append([(d, image.crop(d.box)) for d in found])
    return regions
