"""Similarity people can read: a raw cosine means little (0.62 is close for EfficientNet
features and far for CLIP), so look features show where a score falls among the pairs of
products in this catalog: "92% similar" = more alike than 92% of same-category pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from ..index.hnsw import LoadedIndex
    from .store import LabelColumns

PAIRS = 20_000  # sampled pairs: percentiles stable to about 1 point
MIN_SAME_CATEGORY = 200  # below this, same-category pairs are too few to rank against
SAME_PHOTO = 0.9999  # a cosine this close to 1: one photo under two products


@dataclass(frozen=True)
class SimilarityScale:
    """Empirical distribution of pair cosines in one index; `percent` maps a cosine to it."""

    quantiles: np.ndarray  # cosine at 0, 1, ..., 100 percent
    population: str  # "same-category pairs" or "product pairs" (a small catalog)

    def percent(self, cosine: np.ndarray | float) -> np.ndarray:
        """Percent of reference pairs less alike than `cosine` (0-100, integers)."""
        import numpy as np

        levels = np.interp(cosine, self.quantiles, np.arange(101))
        # The same photo is 100%: where many pairs share one photo, their float32 cosines
        # (0.99999994) tie the top quantiles, and an identical listing read "90% similar".
        levels = np.where(np.asarray(cosine) >= SAME_PHOTO, 100, levels)
        return np.floor(np.nan_to_num(levels, nan=0.0)).astype(np.int64)


def similarity_scale(loaded: LoadedIndex, columns: LabelColumns, seed: int = 0
                     ) -> SimilarityScale:
    """Sample pairs of distinct products (same category where the catalog has enough such
    pairs) and keep the percentiles of their cosines: vectorized, about 50 ms at 10^6."""
    import numpy as np

    if len(columns.labels) < 2:  # nothing to compare with: the cosine scale itself
        return SimilarityScale(np.linspace(-1.0, 1.0, 101), "cosine (fewer than 2 products)")
    rng = np.random.default_rng(seed)
    codes = columns.category_codes
    labels = columns.labels
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
    ends = np.searchsorted(sorted_codes, sorted_codes, side="right")
    sizes = ends - starts
    usable = (sizes >= 2) & (sorted_codes >= 0)
    same_pairs = int((sizes[usable] - 1).sum() // 2)
    if same_pairs >= MIN_SAME_CATEGORY:
        first = rng.choice(np.flatnonzero(usable), size=PAIRS)
        # A random other member of the same category run: offset 1..size-1, wrapped.
        offset = 1 + (rng.random(PAIRS) * (sizes[first] - 1)).astype(np.int64)
        second = starts[first] + (first - starts[first] + offset) % sizes[first]
        left, right, population = labels[order[first]], labels[order[second]], \
            "same-category pairs"
    else:
        n = len(labels)
        left_pos = rng.integers(0, n, size=PAIRS)
        right_pos = (left_pos + rng.integers(1, n, size=PAIRS)) % n  # never the same product
        left, right, population = labels[left_pos], labels[right_pos], "product pairs"
    cosines = np.einsum("ij,ij->i", loaded.vectors_of(left), loaded.vectors_of(right))
    quantiles = np.quantile(cosines, np.linspace(0, 1, 101))
    # Strictly increasing (interpolation needs it where samples tie); the top stays exact.
    quantiles = np.maximum.accumulate(quantiles - np.arange(100, -1, -1) * 1e-9)
    return SimilarityScale(quantiles, population)
