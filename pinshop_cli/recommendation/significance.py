"""Is a difference between two recommenders more than noise? Paired bootstrap over users.

On a validation window of a few hundred users the methods differ by a handful of users,
so a point estimate alone picks winners inside the noise. Both methods are scored on the
same users; the users are resampled with replacement RESAMPLES times (the same resamples
for every comparison, from a fixed seed), and the 95% interval of the mean is read off the
2.5th and 97.5th percentiles. A gain is significant when the interval of the paired
difference lies above 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


def interval(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED
             ) -> tuple[float, float]:
    """The bootstrap 95% interval of the mean of per-user `values`; for a paired
    difference pass a - b. Resampled in blocks so memory stays at ~8 MB per block."""
    import numpy as np

    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    block = max(1, 1_000_000 // len(values))
    means = np.concatenate([
        values[rng.integers(0, len(values), (min(block, resamples - start), len(values)))]
        .mean(axis=1) for start in range(0, resamples, block)])
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def significant_gain(candidate: np.ndarray, baseline: np.ndarray) -> tuple[float, float, bool]:
    """(mean gain, lower 95% bound of it, whether the bound is above 0) of per-user
    `candidate` over `baseline`, paired by position."""
    import numpy as np

    difference = np.asarray(candidate, np.float64) - np.asarray(baseline, np.float64)
    low, _ = interval(difference)
    return round(float(difference.mean()) if len(difference) else 0.0, 4), low, low > 0
