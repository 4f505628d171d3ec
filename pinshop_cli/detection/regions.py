"""Catalog-guided regions: the catalog's products in a photo, without a detector.

1. One pass of the image CNN over the photo (long side `long_side`) gives a feature map of
   cells (32 px each). Each cell is compared with a sketch of the catalog's product photos
   (all of them up to SKETCH, else a fixed sample), and each product's cosines are ranked
   against its own mean over the photo (a beige sofa looks a little like every wall; a lamp
   stands out only where it is).
2. Where a product stands out most, the connected cells that stand out at least half as much
   make its box, and those standing out at least 0.65 as much a tighter one (objects are
   not all one shape of heat: a lamp's base stands out less than its shade). The boxes of
   the products that stand out most give the proposals, overlapping boxes removed.
   Small objects (a cup, a cushion) cover a cell or two, and their product's peak is often
   elsewhere, so each local maximum of "some product stands out here" also proposes a box
   of a few cells around itself, unless a box already proposed overlaps it by more than
   `overlap`. A second map at a finer scale (long side `fine_side`, cells a third
   smaller) proposes small boxes around its own peaks the same way: objects of a cell or
   less at 640 px (a hanging fern, a cup) peak there.
3. Each proposal is cut from the full-resolution photo and embedded as a crop, exactly as
   `match` embeds any region, and searched among the product photos.
4. A proposal is kept when its best product clears the acceptance bars calibrated on the
   catalog itself (`Acceptance`); one region per product (per family, where the catalog
   has `item_group_id`: a variant photographed apart is the same product, not a rival);
   of two regions that overlap much, the better one. A region carries its crop's vector,
   so it is not embedded twice.

Pooling every window's mean from an integral image over the same map and ranking those
windows localized worse (BENCHMARKS.md, "Regions").
Embedders without a feature map (CLIP) skip steps 1-2: a fixed grid of windows at a few
scales is embedded as crops instead (slower; the same steps 3-4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..models.base import Detection, Detector
from ..retrieval.calibration import SAME_PHOTO

if TYPE_CHECKING:
    from PIL import Image

    from ..models.base import Embedder
    from .products import ProductPhotos

REGIONS = "regions"  # the source and class name of a catalog-guided region
SKETCH = 512  # product photos each cell is compared with
BOX_CHUNK = 64  # products whose boxes are drawn at a time (see propose)
TWINS = 8  # products sharing one photo that the bars look past
GRID_SCALES = (0.9, 0.6, 0.4, 0.25)  # window sides, as a share of the photo, without a map


@dataclass(frozen=True)
class Acceptance:
    """When a region counts as showing a catalog product. A raw cosine threshold does not
    carry from one embedder or catalog to another, so the bars are read off the catalog
    itself, from each product's nearest and second-nearest other products (what the best
    match of something the catalog does not hold looks like). A region is accepted when
    its best product is
    - more alike than `threshold`: the median product is to its nearest other one; or
    - more alike than `floor` (the least alike tenth) and ahead of its second-best product
      by `margin`, more than three quarters of products are ahead of their second nearest
      (a dim or cluttered photo lowers every cosine, but a true match still stands out).
    A small box around a peak (see peak_boxes) must lead by `margin` either way: it holds a
    part of an object, which looks a little like many products. "Other" products are
    other photos and, in a catalog with families, other families: with each product's
    variants photographed apart, the nearest other was its own sibling, the bars rose to
    a cosine of 0.93, and a bench of 58 products found 9 of them (43 now; BENCHMARKS.md)."""

    threshold: float
    floor: float
    margin: float

    @classmethod
    def calibrate(cls, photos: ProductPhotos, sample: int = 2000, seed: int = 0
                  ) -> Acceptance:
        # One label per photo file: a photo under 2,273 listings is one product photo.
        labels = photos.labels if photos.searched is None else photos.searched.labels
        if len(labels) < 3:
            return cls(0.0, 0.0, 0.0)
        rng = np.random.default_rng(seed)
        picked = rng.choice(labels, size=min(sample, len(labels)), replace=False)
        found, scores = photos.search(photos.vectors_of(picked),
                                      min(len(photos), 2 + TWINS + photos.largest_family))
        # The nearest and second-nearest other products: each product's own hit dropped,
        # the products sharing its photo (other merchants' listings) and its family's other
        # variants (the same sofa in blue), which would put every bar near a cosine of 1.
        own = (found == picked[:, None]) | (scores >= SAME_PHOTO)
        if photos.groups is not None:
            own |= photos.groups[found] == photos.groups[picked][:, None]
        masked = np.where(own, -np.inf, scores)
        order = np.argsort(-masked, axis=1)
        others = np.take_along_axis(masked, order, axis=1)
        nearest = others[:, 0]
        second = second_product(others, np.take_along_axis(found, order, axis=1),
                                photos.groups)
        whole = np.isfinite(nearest) & np.isfinite(second)
        if not whole.any():
            return cls(0.0, 0.0, 0.0)
        nearest, gap = nearest[whole], nearest[whole] - second[whole]
        return cls(float(np.quantile(nearest, 0.5)), float(np.quantile(nearest, 0.1)),
                   float(np.quantile(gap, 0.75)))

    def accepts(self, best: np.ndarray, second: np.ndarray, small: np.ndarray | None = None
                ) -> np.ndarray:
        leads = best - second >= self.margin
        passing = (best >= self.threshold) | ((best >= self.floor) & leads)
        return passing if small is None else passing & (~small | leads)


@dataclass(frozen=True)
class RegionSettings:
    long_side: int = 640  # the photo's side for the feature map (cells of 32 px)
    proposals: int = 28  # products' boxes embedded as crops per photo
    #: A product's boxes: the connected cells standing out at least each share of its peak.
    extents: tuple[float, ...] = (0.5, 0.65)
    overlap: float = 0.5  # IoU above which two boxes or regions are one
    peaks: int = 12  # small boxes around local maxima, beyond `proposals` (see peak_boxes)
    peak_side: int = 3  # their side, in cells
    #: The photo's side for a second, finer map whose peaks add `peaks` more small boxes
    #: (0: none). On rooms never used to choose it: found@1 0.71 -> 0.76 (BENCHMARKS.md).
    fine_side: int = 960


class CatalogRegions(Detector):
    """Regions of a photo that show catalog products (see the module docstring)."""

    model_id = REGIONS

    def __init__(self, embedder: Embedder, products: ProductPhotos,
                 settings: RegionSettings | None = None) -> None:
        self.embedder, self.products = embedder, products
        self.settings = settings or RegionSettings()
        self.acceptance = Acceptance.calibrate(products)
        labels = products.labels
        if len(labels) > SKETCH:
            labels = np.sort(np.random.default_rng(0).choice(labels, SKETCH, replace=False))
        self.sketch = products.vectors_of(labels)

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        return [self.detect(image) for image in images]

    def detect(self, image: Image.Image) -> list[Detection]:
        boxes, small = self.propose(image)
        if not len(boxes):
            return []
        vectors = self.embedder.embed_images([image.crop(tuple(box)) for box in boxes.tolist()])
        labels, scores = self.products.search(
            vectors, min(len(self.products), 1 + TWINS + self.products.largest_family))
        # -1: no other product among those searched
        second = np.maximum(second_product(scores, labels, self.products.groups), -1.0)
        passing = self.acceptance.accepts(scores[:, 0], second, small)
        return self.accept(boxes, vectors, labels[:, 0], scores[:, 0], passing, small)

    # -- step 1-2 --------------------------------------------------------------------------
    def propose(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Candidate boxes (N, 4) in the photo's pixels, best first, and which of them are
        small boxes around peaks."""
        if not hasattr(self.embedder, "scene_pixels"):
            windows = grid_windows(*image.size)
            return windows, np.zeros(len(windows), bool)
        standing, rows, columns, to_pixels = self.stand_out(image, self.settings.long_side)
        boxes = strongest_boxes(standing, rows, columns, to_pixels, self.settings)
        small = peak_boxes(standing, rows, columns, to_pixels, boxes, self.settings)
        if self.settings.fine_side:
            taken = np.concatenate([boxes, small])
            small = np.concatenate([small, peak_boxes(
                *self.stand_out(image, self.settings.fine_side), taken, self.settings)])
        return (np.concatenate([boxes, small]),
                np.arange(len(boxes) + len(small)) >= len(boxes))

    def stand_out(self, image: Image.Image, long_side: int
                  ) -> tuple[np.ndarray, int, int, np.ndarray]:
        """How much each sketched product stands out in each cell of the photo's feature
        map at `long_side` (standing_out), the map's rows and columns, and a cell's size
        in the photo's pixels (x, y, x, y)."""
        pixels = self.embedder.scene_pixels(image, long_side)  # type: ignore[attr-defined]
        features = self.embedder.feature_map(pixels[None])[0]  # type: ignore[attr-defined]
        rows, columns = features.shape[1:]
        to_pixels = np.array([image.width / columns, image.height / rows] * 2, np.float32)
        return standing_out(features, self.sketch), rows, columns, to_pixels

    # -- step 4 ----------------------------------------------------------------------------
    def accept(self, boxes: np.ndarray, vectors: np.ndarray, labels: np.ndarray,
               scores: np.ndarray, accepted: np.ndarray, small: np.ndarray) -> list[Detection]:
        passing = np.flatnonzero(accepted)
        groups = self.products.groups
        best: dict[int, int] = {}  # product (its family, if any) -> its best region
        # A product's own box before a small one, which holds a part of the object: small
        # boxes add products, and do not move one found already (nor its score, by which
        # chat picks the photo's lead product).
        for i in passing[np.lexsort((-scores[passing], small[passing]))].tolist():
            best.setdefault(int(labels[i] if groups is None else groups[labels[i]]), i)
        chosen = np.asarray(list(best.values()), dtype=np.int64)
        if not len(chosen):
            return []
        # (Nor may a small box suppress another product's own box: it ranks after them.)
        rank = scores[chosen] - 2 * small[chosen]
        keep = chosen[non_max_suppression(boxes[chosen], rank, self.settings.overlap)]
        return [Detection((float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]),
                           float(boxes[i, 3])), REGIONS, self.products.category(int(labels[i])),
                          float(scores[i]), REGIONS, vectors[i])
                for i in keep.tolist()]


def standing_out(features: np.ndarray, products: np.ndarray) -> np.ndarray:
    """How much each of the (P, C) `products` stands out in each cell of the (C, rows,
    columns) feature map: its cosine z-scored over the photo's cells, (rows * columns, P)."""
    channels = features.shape[0]
    cells = features.reshape(channels, -1).T
    cells = cells / np.maximum(np.linalg.norm(cells, axis=1, keepdims=True), 1e-12)
    cosines = cells @ products.T
    standing: np.ndarray = (cosines - cosines.mean(axis=0)) / (cosines.std(axis=0) + 1e-6)
    return standing


def second_product(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray | None
                   ) -> np.ndarray:
    """Per row of cosines sorted best first (of `labels`): the best that is another photo
    than the first, past the products sharing its photo, which tie with it, and of another
    family where the catalog has families (`groups` by label): -inf where there is none."""
    other = scores < scores[:, :1] - (1 - SAME_PHOTO)
    if groups is not None:
        other &= groups[labels] != groups[labels[:, :1]]
    result: np.ndarray = np.where(other, scores, -np.inf).max(axis=1, initial=-np.inf)
    return result


def product_boxes(standing: np.ndarray, rows: int, columns: int, extents: Sequence[float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """For each extent, then each product (a column of `standing`, see standing_out): the
    box (in cells: x1, y1, x2, y2) of the connected cells where it stands out at least
    `extent` of its peak, and that peak. Returns (len(extents) * P, 4) boxes and peaks."""
    from scipy import ndimage

    products = standing.shape[1]
    peaks, peak_cells = standing.max(axis=0), standing.argmax(axis=0)
    boxes = np.zeros((len(extents), products, 4), np.float32)
    for e, extent in enumerate(extents):
        # a labelling of ~300 cells a product, for a chunk of products (see propose)
        above = (standing >= extent * peaks).T.reshape(products, rows, columns)
        for j in range(products):
            blobs, _ = ndimage.label(above[j])
            ys, xs = np.nonzero(blobs == blobs.reshape(-1)[peak_cells[j]])
            boxes[e, j] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes.reshape(-1, 4), np.tile(peaks, len(extents)).astype(np.float32)


def strongest_boxes(standing: np.ndarray, rows: int, columns: int, to_pixels: np.ndarray,
                    settings: RegionSettings) -> np.ndarray:
    """The `settings.proposals` boxes (in pixels: cells times `to_pixels`) of the products
    standing out most, overlapping ones suppressed. They are drawn a chunk of products at a
    time, those standing out most first: suppression keeps boxes in the order of their
    peaks, so once enough are kept, the products standing out less cannot change them (most
    photos need one chunk)."""
    order = np.argsort(-standing.max(axis=0), kind="stable")
    # The boxes kept so far: one suppressed never suppresses another, so each chunk is
    # weighed against these alone.
    boxes, peaks = np.empty((0, 4), np.float32), np.empty(0, np.float32)
    for start in range(0, len(order), BOX_CHUNK):
        more, more_peaks = product_boxes(standing[:, order[start:start + BOX_CHUNK]], rows,
                                         columns, settings.extents)
        boxes = np.concatenate([boxes, more * to_pixels])
        peaks = np.concatenate([peaks, more_peaks])
        keep = non_max_suppression(boxes, peaks, settings.overlap)
        boxes, peaks = boxes[keep], peaks[keep]
        if len(boxes) >= settings.proposals:
            break
    return boxes[:settings.proposals]


def peak_boxes(standing: np.ndarray, rows: int, columns: int, to_pixels: np.ndarray,
               taken: np.ndarray, settings: RegionSettings) -> np.ndarray:
    """Up to `settings.peaks` boxes (in pixels) of `settings.peak_side` cells centred on
    the cells where some product stands out more than in each of the 8 cells around
    (strictly: a flat stretch proposes nothing), strongest first; one overlapping a box in
    `taken`, or a stronger peak's box, by more than `settings.overlap` IoU is left out.

    On the 12 hand-boxed rooms these find objects that no product's own box outlined
    (a hanging fern, a plant on a café shelf): found@1 0.76 -> 0.81, and on the 4 rooms
    not looked at while designing 0.59 -> 0.68, for about 11 more crops a photo
    (BENCHMARKS.md, "Regions")."""
    from scipy import ndimage

    strongest = standing.max(axis=1).reshape(rows, columns)
    around = np.ones((3, 3), bool)
    around[1, 1] = False
    ys, xs = np.nonzero(strongest > ndimage.maximum_filter(
        strongest, footprint=around, mode="constant", cval=-np.inf))
    order = np.argsort(-strongest[ys, xs], kind="stable")
    centre_x, centre_y, half = xs[order] + 0.5, ys[order] + 0.5, settings.peak_side / 2
    boxes = np.stack([np.maximum(centre_x - half, 0), np.maximum(centre_y - half, 0),
                      np.minimum(centre_x + half, columns), np.minimum(centre_y + half, rows)],
                     axis=1).astype(np.float32) * to_pixels
    # The taken boxes rank first and do not suppress one another (they were suppressed
    # already), so this is a greedy pass over the peaks in order of strength.
    ranks = np.concatenate([np.full(len(taken), np.inf, np.float32),
                            -np.arange(len(boxes), dtype=np.float32)])
    keep = non_max_suppression(np.concatenate([taken, boxes]), ranks, settings.overlap)
    return boxes[keep[keep >= len(taken)][:settings.peaks] - len(taken)]


def grid_windows(width: int, height: int) -> np.ndarray:
    """Square-ish windows at a few scales with half-window steps, for embedders without a
    feature map."""
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
