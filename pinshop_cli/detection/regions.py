"""Catalog-guided regions: the catalog's products in a photo, without a detector.

1. One pass of the image CNN over the photo (long side `long_side`) gives a feature map; the
   mean of the cells under a window is that window's embedding, before normalizing (the
   product photos' embeddings are the mean over all cells). An integral image makes every
   window's mean O(1), so all windows of 2+ cells are scored, not a sliding sample.
2. Windows are scored against a sketch of the catalog's product photos (all of them up to
   SKETCH, else a fixed sample): each sketch product keeps its best window, and the best
   `proposals` windows, overlapping ones removed, go on.
3. Each proposal is cut from the full-resolution photo and embedded as a crop, exactly as
   `match` embeds any region, and searched in the product-image index.
4. A proposal is kept when its best product clears the acceptance threshold calibrated on
   the catalog itself (`Acceptance`); one region per product; of two regions that overlap
   much, the better one.

Embedders without a feature map (CLIP) skip step 1-2: a fixed grid of windows at three
scales is embedded as crops instead (slower, same steps 3-4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models.base import Detection, Detector

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..models.base import Embedder
    from .products import ProductPhotos

REGIONS = "regions"  # the source and class name of a catalog-guided region
SKETCH = 512  # product vectors windows are first scored against
GRID_SCALES = (0.9, 0.6, 0.4, 0.25)  # window sides, as a share of the photo, without a map


@dataclass(frozen=True)
class Acceptance:
    """When a region counts as showing a catalog product. A raw cosine threshold does not
    carry from one embedder or catalog to another, so it is set from the catalog: a region
    must be more like its best product than `quantile` of the catalog's products are like
    their nearest other product (what the best match of something not in the catalog looks
    like)."""

    threshold: float
    quantile: float

    @classmethod
    def calibrate(cls, photos: ProductPhotos, quantile: float = 0.5, sample: int = 2000,
                  seed: int = 0) -> Acceptance:
        import numpy as np

        labels = photos.labels
        if len(labels) < 2:
            return cls(0.0, quantile)
        rng = np.random.default_rng(seed)
        picked = rng.choice(labels, size=min(sample, len(labels)), replace=False)
        found, scores = photos.search(photos.vectors_of(picked), 2)
        # The nearest other product: the first hit that is not the product itself.
        other = np.where(found[:, 0] == picked, scores[:, 1], scores[:, 0])
        return cls(float(np.quantile(other, quantile)), quantile)


@dataclass(frozen=True)
class RegionSettings:
    long_side: int = 512  # the photo's side for the feature map (cells of 32 px)
    proposals: int = 12  # windows embedded as crops per photo
    min_cells: int = 2  # smallest window side, in cells
    max_aspect: float = 4.0
    overlap: float = 0.5  # IoU above which two windows or regions are one
    acceptance_quantile: float = 0.5


class CatalogRegions(Detector):
    """Regions of a photo that show catalog products (see the module docstring)."""

    model_id = REGIONS

    def __init__(self, embedder: Embedder, products: ProductPhotos,
                 settings: RegionSettings | None = None) -> None:
        import numpy as np

        self.embedder, self.products = embedder, products
        self.settings = settings or RegionSettings()
        self.acceptance = Acceptance.calibrate(products, self.settings.acceptance_quantile)
        labels = products.labels
        if len(labels) > SKETCH:
            labels = np.sort(np.random.default_rng(0).choice(labels, SKETCH, replace=False))
        self.sketch = products.vectors_of(labels)

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        return [self.detect(image) for image in images]

    def detect(self, image: Image.Image) -> list[Detection]:
        boxes = self.propose(image)
        if not len(boxes):
            return []
        crops = [image.crop(tuple(box)) for box in boxes.tolist()]
        vectors = self.embedder.embed_images(crops)
        labels, scores = self.products.search(vectors, 1)
        return self.accept(boxes, labels[:, 0], scores[:, 0])

    # -- step 1-2 --------------------------------------------------------------------------
    def propose(self, image: Image.Image) -> np.ndarray:
        """Candidate boxes (N, 4) in the photo's pixels, best first."""
        import numpy as np

        scene_pixels = getattr(self.embedder, "scene_pixels", None)
        if scene_pixels is None:
            return grid_windows(*image.size)
        pixels = scene_pixels(image, self.settings.long_side)
        features = self.embedder.feature_map(pixels[None])[0]  # type: ignore[attr-defined]
        cells, window_features = pooled_windows(features, self.settings)
        if not len(cells):
            return np.zeros((0, 4), np.float32)
        scores = window_features @ self.sketch.T  # (windows, sketch products)
        best_window = scores.argmax(axis=0)  # each product's best window
        best_score = scores[best_window, np.arange(scores.shape[1])]
        order = np.argsort(-best_score, kind="stable")
        candidates = np.unique(best_window[order], return_index=True)
        ranked = candidates[0][np.argsort(candidates[1])]  # windows in best-score order
        rows, columns = features.shape[1:]
        scale = np.array([image.width / columns, image.height / rows] * 2, np.float32)
        boxes = cells[ranked][:, [2, 0, 3, 1]].astype(np.float32) * scale  # x1, y1, x2, y2
        keep = non_max_suppression(boxes, np.arange(len(boxes))[::-1].astype(np.float32),
                                   self.settings.overlap)
        return boxes[keep[:self.settings.proposals]]

    # -- step 4 ----------------------------------------------------------------------------
    def accept(self, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray
               ) -> list[Detection]:
        import numpy as np

        passing = np.flatnonzero(scores >= self.acceptance.threshold)
        best: dict[int, int] = {}  # product label -> its best region
        for i in passing[np.argsort(-scores[passing], kind="stable")].tolist():
            best.setdefault(int(labels[i]), i)
        chosen = np.asarray(list(best.values()), dtype=np.int64)
        if not len(chosen):
            return []
        keep = chosen[non_max_suppression(boxes[chosen], scores[chosen], self.settings.overlap)]
        return [Detection((float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]),
                           float(boxes[i, 3])), REGIONS, self.products.category(int(labels[i])),
                          float(scores[i]), REGIONS)
                for i in keep.tolist()]


def pooled_windows(features: np.ndarray, settings: RegionSettings
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Every window of the (C, rows, columns) feature map within the size and aspect
    limits: its cells (row0, row1, col0, col1) and its L2-normalized mean feature."""
    import numpy as np

    channels, rows, columns = features.shape
    integral = np.zeros((rows + 1, columns + 1, channels), np.float32)
    integral[1:, 1:] = features.transpose(1, 2, 0).cumsum(0).cumsum(1)
    spans_r = [(a, b) for a in range(rows) for b in range(a + settings.min_cells, rows + 1)]
    spans_c = [(a, b) for a in range(columns)
               for b in range(a + settings.min_cells, columns + 1)]
    r = np.asarray(spans_r, np.int64).reshape(-1, 2)
    c = np.asarray(spans_c, np.int64).reshape(-1, 2)
    r0, r1 = np.repeat(r[:, 0], len(c)), np.repeat(r[:, 1], len(c))
    c0, c1 = np.tile(c[:, 0], len(r)), np.tile(c[:, 1], len(r))
    height, width = r1 - r0, c1 - c0
    fits = ((np.maximum(height, width) <= settings.max_aspect * np.minimum(height, width))
            & (height * width < rows * columns))  # the whole photo is not a region
    r0, r1, c0, c1 = r0[fits], r1[fits], c0[fits], c1[fits]
    sums = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return np.stack([r0, r1, c0, c1], axis=1), sums


def grid_windows(width: int, height: int) -> np.ndarray:
    """Square-ish windows at a few scales with half-window steps, for embedders without a
    feature map."""
    import numpy as np

    boxes = []
    for share in GRID_SCALES:
        side_w, side_h = width * share, height * share
        for y in np.arange(0, height - side_h + 1, side_h / 2):
            for x in np.arange(0, width - side_w + 1, side_w / 2):
                boxes.append((x, y, x + side_w, y + side_h))
    return np.asarray(boxes, np.float32)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> np.ndarray:
    """Indices of the boxes kept, best first: each drops the later ones overlapping it by
    more than `overlap` IoU."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while len(order):
        first, rest = order[0], order[1:]
        kept.append(int(first))
        x1 = np.maximum(boxes[first, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[first, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[first, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[first, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / np.maximum(areas[first] + areas[rest] - inter, 1e-9)
        order = rest[iou <= overlap]
    return np.asarray(kept, dtype=np.int64)
