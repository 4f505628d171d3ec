"""The colour of an object in a photo, named: "like this but in blue" needs it.

The dominant colours of a crop come from k-means in CIELAB over a thumbnail, each pixel
weighted by a centre prior (an object sits in the middle of its box). When one cluster holds
most of the border (a packshot's plain background, a wall behind a lamp) it is background
and dropped. The heaviest remaining cluster is put in one of a few families (blue, green,
...) by its lightness, chroma and hue, so a filter for "blue" finds navy and steelblue alike,
and named after the nearest (in CIELAB) of the CSS colour names shipped in data/colors.csv
that are words of that family, so that name and family never disagree.
Catalog words CSS has no name for (walnut, oak, cream, terracotta ...) are in the same file,
used to read catalog colours and queries, never to name a photo.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

TABLE = Path(__file__).resolve().parent.parent / "data" / "colors.csv"
FAMILIES = ("black", "white", "grey", "beige", "brown", "red", "orange", "yellow", "green",
            "teal", "blue", "purple", "pink")
#: The version of the naming rules below: ingest names a product photo named under an
#: older one again (2: indoor light, 2026-12).
RULES = 2
THUMBNAIL = 48  # pixels a side: colour needs few
CLUSTERS = 4
BACKGROUND_BORDER_SHARE = 0.6  # a cluster holding this much of the border is background


@dataclass(frozen=True)
class NamedColor:
    name: str  # the nearest CSS colour name, e.g. "steelblue"
    family: str  # one of FAMILIES, e.g. "blue"
    share: float  # of the object's weighted pixels
    rgb: tuple[int, int, int]


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in 0..255 -> CIELAB (D65)."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.2126729, 0.0193339],
                             [0.3575761, 0.7151522, 0.1191920],
                             [0.1804375, 0.0721750, 0.9503041]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


#: CIELAB hue angles (degrees) where each chromatic family ends, going round from 0.
HUES = ((15, "pink"), (50, "red"), (75, "orange"), (105, "yellow"), (170, "green"),
        (240, "teal"), (315, "blue"), (345, "purple"), (360, "pink"))


#: Lightness (CIELAB L*) above which an unsaturated colour is white. A colour word is an
#: sRGB value (darkgray is L* 69: a grey); a photo of a white thing indoors is mostly
#: L* 55-70, rarely lighter, and a photo's greys sit lower.
WHITE_WORD, WHITE_PHOTO = 70.0, 55.0


def family(lab: np.ndarray, white_above: float = WHITE_WORD) -> str:
    """The family of one CIELAB colour: greys by lightness, the rest by hue angle, with
    beige and brown for the light and the dark low-chroma warm tones furniture is full of."""
    lightness, a, b = (float(v) for v in lab)
    chroma = (a * a + b * b) ** 0.5
    hue = float(np.degrees(np.arctan2(b, a)) % 360)
    # A dark colour has little chroma however tinted: a plant in shade (L* 12, C* 13) is
    # dark green, not black, so below L* 17 the bar falls with lightness, to no less than
    # 8 (a black sofa in cool light, L* 7 C* 6, stays black).
    if chroma < min(10.0, max(8.0, 0.6 * lightness)):
        return "black" if lightness < 25 else "white" if lightness > white_above else "grey"
    if 40 <= hue < 115 and chroma < 40 and lightness > 65:
        return "beige"
    if 15 <= hue < 90 and lightness < 50 and chroma < 45:
        return "brown"
    if 90 <= hue < 115 and lightness < 55:
        return "green"  # olive: a dark yellow is a shopper's green (olive green)
    name = next(name for upper, name in HUES if hue < upper)
    return "red" if name == "pink" and lightness < 60 else name


@lru_cache(maxsize=1)
def _table() -> tuple[list[str], np.ndarray, list[str]]:
    """(names, CIELAB, source) of every colour in data/colors.csv."""
    with open(TABLE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rgb = np.array([[int(r["hex"][i:i + 2], 16) for i in (1, 3, 5)] for r in rows], float)
    return [r["name"] for r in rows], srgb_to_lab(rgb), [r["source"] for r in rows]


def nearest_name(lab: np.ndarray, in_family: str | None = None) -> str:
    """The CSS colour nearest to `lab` (CIE76 distance); with `in_family`, the nearest
    whose word is of that family (a shaded plant the photo's light makes brown was called
    "gray", the nearest name of all), or the family itself where no CSS name is of it
    (CSS's browns are saturated: sienna and saddlebrown are orange words)."""
    names, table, sources = _table()
    distances = np.linalg.norm(table - lab, axis=1)
    distances[np.asarray(sources) != "css"] = np.inf
    if in_family is not None:
        distances = np.where(_word_families() == in_family, distances, np.inf)
        if not np.isfinite(distances).any():
            return in_family
    return names[int(distances.argmin())]


@lru_cache(maxsize=1)
def _word_families() -> np.ndarray:
    """The family of each colour of data/colors.csv read as a word (word_family's rule),
    CSS names and catalog words alike, in the table's order."""
    return np.asarray([family(lab) for lab in _table()[1]])


def word_family(text: str | None) -> str | None:
    """The family a colour word or phrase names ("navy", "natural oak", "Blue"), from the
    table's names and the families themselves; None when no word is a colour."""
    if not text:
        return None
    names, table, _ = _table()
    known = dict(zip(names, table, strict=True))
    words = text.lower().replace("-", " ").split()
    for word in [text.lower().strip(), *reversed(words)]:  # "natural oak": the last word
        if word in FAMILIES:
            return word
        lab = known.get(word, known.get(word.replace(" ", "-")))
        if lab is not None:
            return family(lab)
        if word == "gray":
            return "grey"
    return None


def dominant_colors(image: Image.Image, top: int = 2) -> list[NamedColor]:
    """The object's main colours, heaviest first (see the module docstring)."""
    thumbnail = image.convert("RGB")
    thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
    pixels = np.asarray(thumbnail, dtype=np.float64)
    height, width = pixels.shape[:2]
    lab = srgb_to_lab(pixels).reshape(-1, 3)
    ys, xs = np.mgrid[0:height, 0:width]
    prior = np.exp(-(((xs - (width - 1) / 2) / (0.35 * width)) ** 2
                     + ((ys - (height - 1) / 2) / (0.35 * height)) ** 2) / 2).reshape(-1)
    margin = max(1, round(0.1 * min(height, width)))
    border = ((xs < margin) | (xs >= width - margin) | (ys < margin)
              | (ys >= height - margin)).reshape(-1)
    labels, centres = _kmeans(lab, min(CLUSTERS, len(lab)))
    mass = np.bincount(labels, weights=prior, minlength=len(centres))
    border_share = np.bincount(labels[border], minlength=len(centres)) / max(border.sum(), 1)
    if border_share.max() >= BACKGROUND_BORDER_SHARE and (mass > 0).sum() > 1:
        mass[border_share.argmax()] = 0.0  # a plain background
    order = [int(c) for c in np.argsort(-mass) if mass[c] > 0][:top]
    total = mass.sum() or 1.0
    found = []
    for c in order:
        rgb = pixels.reshape(-1, 3)[labels == c].mean(axis=0)
        named = family(centres[c], WHITE_PHOTO)
        found.append(NamedColor(nearest_name(centres[c], named), named,
                                round(float(mass[c] / total), 3),
                                (int(rgb[0]), int(rgb[1]), int(rgb[2]))))
    return found


def _kmeans(points: np.ndarray, k: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Plain Lloyd iterations from a deterministic farthest-point start."""
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[np.argmin(points[:, 0])]  # the darkest pixel
    distance = np.linalg.norm(points - centres[0], axis=1)
    for c in range(1, k):
        centres[c] = points[int(distance.argmax())]
        distance = np.minimum(distance, np.linalg.norm(points - centres[c], axis=1))
    for _ in range(iterations):
        labels = _nearest(points, centres)
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=points[:, d], minlength=k)
                         for d in range(points.shape[1])], axis=1)
        filled = counts > 0  # an empty cluster keeps its centre
        centres[filled] = sums[filled] / counts[filled, None]
    return _nearest(points, centres), centres


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each point's nearest centre (squared distances without the points' own norms)."""
    return np.argmin((centres * centres).sum(axis=1) - 2.0 * points @ centres.T, axis=1)
