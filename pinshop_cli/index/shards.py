"""Sharded HNSW: one kind's index split into N hnswlib graphs, built in parallel (processes
here, Ray tasks with --engine ray) and searched together.

Labels stay global (0..n-1, the label table and the vectors file are shared); shard i holds
the labels with label % N == i, so new items spread evenly and anyone can tell a label's
shard. A query asks every shard for its own top-k and keeps the k best of the union: the
exact merge, since the global top-k is inside it. ShardedIndex answers the few hnswlib
calls the rest of pinshop makes, so searching, filtering and updating need no second path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..engines import Engine


def shard_file(prefix: str, shard: int) -> str:
    """A shard's file: `prefix` names the index generation it belongs to (e.g.
    `product_text.g3`), so a new build or update never overwrites the files the current
    manifest lists (index/generations.py)."""
    return f"{prefix}.shard{shard}.hnsw"


def build_shard(vectors: np.ndarray, labels: np.ndarray, space: str, M: int,
                ef_construction: int, target: str, threads: int = 1) -> int:
    """Build one shard's graph and save it atomically; returns its size in bytes. A plain
    function of arrays and a path: it runs in a worker process or as a Ray task."""
    import hnswlib

    from ..workspace.storage import atomic_path

    index = hnswlib.Index(space=space, dim=vectors.shape[1])
    index.init_index(max_elements=max(1, len(labels)), M=M, ef_construction=ef_construction)
    if len(labels):
        index.add_items(vectors, labels, num_threads=threads)
    with atomic_path(Path(target)) as tmp:
        index.save_index(str(tmp))
    return Path(target).stat().st_size


def build_shards(vectors: np.ndarray, directory: Path, prefix: str, shards: int, space: str,
                 M: int, ef_construction: int, engine: Engine) -> list[str]:
    """Build `shards` graphs over vectors (label = row) in parallel on `engine`; returns
    their files."""
    import numpy as np

    threads = engine.job_threads(shards)
    files = [shard_file(prefix, shard) for shard in range(shards)]
    jobs = []
    for shard in range(shards):
        labels = np.arange(shard, len(vectors), shards, dtype=np.int64)
        jobs.append((vectors[labels], labels, space, M, ef_construction,
                     str(directory / files[shard]), threads))
    engine.map(build_shard, jobs)
    return files


class ShardedIndex:
    """N hnswlib graphs behind the hnswlib calls pinshop uses (knn_query, set_ef,
    get_max_elements, mark_deleted, add_items, save_index, dim)."""

    def __init__(self, shards: Sequence[Any], live_labels: np.ndarray) -> None:
        import numpy as np

        self.shards = list(shards)
        self.dim = self.shards[0].dim
        # Live items per shard (hnswlib counts deleted ones too): k may not exceed them.
        self.live = np.bincount(live_labels % len(self.shards), minlength=len(self.shards))
        self._max_elements = int(live_labels.max()) + 1 if len(live_labels) else 1

    @classmethod
    def load(cls, directory: Path, files: Sequence[str], space: str, dim: int,
             live_labels: np.ndarray) -> ShardedIndex:
        import hnswlib

        graphs = []
        for file in files:
            graph = hnswlib.Index(space=space, dim=dim)
            graph.load_index(str(directory / file))
            graphs.append(graph)
        return cls(graphs, live_labels)

    def set_ef(self, ef: int) -> None:
        for shard in self.shards:
            shard.set_ef(ef)

    def get_max_elements(self) -> int:
        return self._max_elements

    def knn_query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest over all shards: each shard's own top-k, merged exactly."""
        import numpy as np

        labels, distances = [], []
        for shard, live in zip(self.shards, self.live, strict=True):
            if live <= 0:
                continue
            found, dist = shard.knn_query(queries, k=int(min(k, live)))
            labels.append(found.astype(np.int64))
            distances.append(dist)
        every, gaps = np.concatenate(labels, axis=1), np.concatenate(distances, axis=1)
        if every.shape[1] < k:
            raise RuntimeError(f"the shards hold fewer than k={k} live items")
        best = np.argsort(gaps, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(every, best, axis=1), np.take_along_axis(gaps, best, axis=1)

    def mark_deleted(self, label: int) -> None:
        self.shards[label % len(self.shards)].mark_deleted(label)
        self.live[label % len(self.shards)] -= 1

    def add_items(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Each label goes to its shard, which grows to fit."""
        for number, shard in enumerate(self.shards):
            mine = labels % len(self.shards) == number
            if mine.any():
                shard.resize_index(shard.get_current_count() + int(mine.sum()))
                shard.add_items(vectors[mine], labels[mine])
                self.live[number] += int(mine.sum())
        self._max_elements = max(self._max_elements, int(labels.max()) + 1)

    def save_shards(self, directory: Path, prefix: str) -> list[str]:
        from ..workspace.storage import atomic_path

        files = []
        for number, shard in enumerate(self.shards):
            files.append(shard_file(prefix, number))
            with atomic_path(directory / files[-1]) as tmp:
                shard.save_index(str(tmp))
        return files

