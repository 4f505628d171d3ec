"""A detector's class names, mapped to the catalog's own categories by text similarity.

COCO says "couch" and "potted plant", an open-vocabulary YOLOE says "floor lamp" or "throw
pillow", the catalog says "sofa", "plant", "lamp", "cushion". A class name maps to the
category it names outright (a whole word of it: "floor lamp" -> lamp), else to the category
whose name embeds closest (the workspace's text embedder: MiniLM offline), when closer than
the catalog's categories usually are to each other. Anything else ("person", "car",
"wall") is not something the catalog sells, and its boxes are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..models.base import Detection, Detector

if TYPE_CHECKING:
    from PIL import Image

#: A class name must be closer to its category than this share of category pairs are to
#: each other (two catalog categories are distinct things, so that is "not the same").
SEPARATION = 0.9


class CategoryVocabulary:
    def __init__(self, categories: Sequence[str],
                 embed_texts: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.categories = sorted({c.lower() for c in categories if c})
        self.embed_texts = embed_texts
        self.vectors = embed_texts(self.categories) if self.categories else np.zeros((0, 1))
        pairs = self.vectors @ self.vectors.T
        others = pairs[~np.eye(len(self.categories), dtype=bool)]
        self.threshold = float(np.quantile(others, SEPARATION)) if len(others) else 0.5
        self._known: dict[str, str | None] = {}

    def category(self, class_name: str) -> str | None:
        """The catalog category `class_name` stands for, or None (not sold here)."""
        name = class_name.strip().lower()
        if name not in self._known:
            self._known[name] = self._lookup(name)
        return self._known[name]

    def _lookup(self, name: str) -> str | None:
        if not self.categories:
            return None
        words = set(re.findall(r"[a-z]+", name))
        named = [c for c in self.categories if c == name or c in words
                 or c.rstrip("s") in words]
        if named:
            return max(named, key=len)
        cosines = self.vectors @ self.embed_texts([name])[0]
        best = int(cosines.argmax())
        return self.categories[best] if cosines[best] >= self.threshold else None


class CatalogNamed(Detector):
    """A detector whose boxes carry catalog categories; boxes of classes the catalog does
    not sell are dropped."""

    def __init__(self, detector: Detector, vocabulary: CategoryVocabulary) -> None:
        self.detector, self.vocabulary = detector, vocabulary
        self.model_id, self.note = detector.model_id, detector.note

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        from dataclasses import replace

        named = []
        for found in self.detector.detect_batch(images):
            kept = []
            for detection in found:
                category = self.vocabulary.category(detection.class_name)
                if category is not None:
                    kept.append(replace(detection, category=category))
            named.append(kept)
        return named
