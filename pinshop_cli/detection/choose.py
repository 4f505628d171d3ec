"""Which regions of a photo are searched: `--detector` resolved against the catalog.

    auto      the default detector where its weights resolve (YOLOE prompt-free, else
              YOLO11n), with the catalog's regions added where it has no box;
              catalog-guided regions alone where none resolves
    regions   catalog-guided regions only
    none      the whole photo as one region
    NAME|PATH a registered detector or any ultralytics checkpoint, with the catalog's regions

A detector's class names become the catalog's categories (vocabulary.py); its boxes of
things the catalog does not sell are dropped. A photo where nothing is found stays
searchable as one whole-image region (crops.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..models.base import Detection, Detector
from ..models.detectors import WholeImageDetector
from .regions import REGIONS, CatalogRegions, non_max_suppression
from .vocabulary import CatalogNamed, CategoryVocabulary

if TYPE_CHECKING:
    from PIL import Image

    from ..models.base import Embedder
    from .products import ProductPhotos


class DetectorWithRegions(Detector):
    """A detector's boxes, plus the catalog regions that no box already covers."""

    def __init__(self, detector: Detector, regions: CatalogRegions) -> None:
        self.detector, self.regions = detector, regions
        self.model_id = f"{detector.model_id}+{REGIONS}"
        self.note = detector.note

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        import numpy as np

        merged = []
        for boxes, regions in zip(self.detector.detect_batch(images),
                                  self.regions.detect_batch(images), strict=True):
            found = boxes + regions
            if not boxes or not regions:
                merged.append(found)
                continue
            # Detector boxes rank first, so a region only survives where no box covers it.
            rank = np.arange(len(found), 0, -1, dtype=np.float32)
            keep = non_max_suppression(np.asarray([d.box for d in found], np.float32), rank,
                                       self.regions.settings.overlap)
            merged.append([found[i] for i in sorted(keep.tolist())])
        return merged


def choose_detector(name: str, embedder: Embedder,
                    photos: Callable[[], ProductPhotos | None],
                    categories: Callable[[], list[str]],
                    models_dir: str | None = None, min_score: float = 0.25,
                    device: str = "auto") -> Detector:
    """The detector `name` stands for (see the module docstring). `photos` gives the
    catalog's product photos and `categories` its category names, asked for only when
    needed."""
    from ..models import get_detector
    from ..models.detectors import UltralyticsDetector

    if name == "none":
        return get_detector("none", models_dir, min_score, device)
    base = None if name == REGIONS else get_detector(name, models_dir, min_score, device)
    if base is not None and not base.is_fallback:
        names = categories()
        if isinstance(base, UltralyticsDetector):
            base.prompt(names)  # a prompted open-vocabulary model looks for these
        base = CatalogNamed(base, CategoryVocabulary(names, embedder.embed_texts))
    products = photos()
    if products is None:
        if base is not None and not base.is_fallback:
            return base
        return WholeImageDetector("no product photo is indexed in this workspace: the whole "
                                  "photo is one region")
    regions = CatalogRegions(embedder, products)
    if base is None:
        return regions
    if base.is_fallback:  # no detector weights: the catalog's regions instead
        fix = base.note.partition("Fix: ")[2]
        regions.note = ("no detector weights resolve: finding the catalog's products as "
                        "regions" + (f" (a detector adds its own boxes; {fix})" if fix else ""))
        return regions
    return DetectorWithRegions(base, regions)
