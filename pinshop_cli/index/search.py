"""Searching a graph: the one place pinshop calls hnswlib's knn_query, and exact search.

Another ANN library can stand in for hnswlib by offering the same few calls (`Graph`).
Setting the search breadth and querying happen under one lock: the breadth is a setting of
the shared graph, and two threads (a server) must not query with each other's.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Graph(Protocol):
    """What pinshop needs of an ANN index (hnswlib.Index, or ShardedIndex over several)."""

    def set_ef(self, ef: int) -> None: ...
    def knn_query(self, data: Any, k: int = 1) -> tuple[Any, Any]: ...
    def get_max_elements(self) -> int: ...


_QUERY = threading.Lock()


def knn(graph: Graph, queries: np.ndarray, k: int, n: int, ef: int | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64, cosines float32) of the k nearest per query (vectors are unit
    length, the space is inner product) at breadth `ef` (default: search_ef(k, n), n the
    number of vectors searched)."""
    import numpy as np

    with _QUERY:
        graph.set_ef(max(ef or 0, search_ef(k, n)))
        labels, distances = graph.knn_query(np.ascontiguousarray(queries, np.float32), k=k)
    return labels.astype(np.int64), (1.0 - distances).astype(np.float32)


def top_k_exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """(positions, scores) of the k best inner products per query, best first: the ground
    truth for recall, and the search over small filtered sets."""
    import numpy as np

    scores = queries @ vectors.T
    k = min(k, vectors.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def search_ef(k: int, n: int) -> int:
    """hnswlib's search breadth for a top-k query over n vectors. It grows with log n as
    well as k: on text queries not in the index, ef=64 missed the exact best match for
    0.2% of queries at 92k products and none at 23k; ef>=100 found it for all, at 0.27 vs
    0.19 ms a query (bench/bench_ef.py, BENCHMARKS.md)."""
    import math

    return max(64, 2 * k, math.ceil(8 * math.log2(max(n, 2))))


def measure_recall(index: Any, vectors: np.ndarray, sample: int = 200, k: int = 10,
                   seed: int = 0, labels: np.ndarray | None = None) -> float:
    """recall@k of the index against exact search at the breadth queries use, queries
    drawn from the indexed vectors (`labels[i]` is the label of vectors[i]; default
    0..n-1). A result as close as the exact k-th is a hit: among identical vectors (one
    photo under many listings) exact search picks k of the tied ones arbitrarily, and
    counting ids, a catalog of 34 photos under 77k products read 0.0 for a working index."""
    import numpy as np

    k = min(k, vectors.shape[0])
    rng = np.random.default_rng(seed)
    picks = rng.choice(vectors.shape[0], size=min(sample, vectors.shape[0]), replace=False)
    queries = vectors[picks]
    kth = top_k_exact(vectors, queries, k)[1][:, -1:]
    found, _ = knn(index, queries, k, vectors.shape[0])
    if labels is not None:  # labels -> rows of `vectors`
        row_of = np.zeros(int(labels.max()) + 1, np.int64)
        row_of[labels] = np.arange(len(labels))
        found = row_of[found]
    scores = np.einsum("qd,qkd->qk", queries, vectors[found])
    return round(float(np.mean(scores >= kth - 1e-5)), 4)
