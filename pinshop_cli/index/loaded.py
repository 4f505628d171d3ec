"""Loading an index for answering: the generation its manifest names, held and checked.

A reader reads the manifest, holds its generation (generations.py), checks every file's
size and checksum against the manifest (full sha256 up to 4 MiB, a sampled digest above;
PINSHOP_VERIFY=off skips this, for measuring its cost) and only then loads the graph and
labels. Whatever is wrong becomes one DamagedFileError naming `pinshop index`; nothing
here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DamagedFileError, PinshopError, StaleIndexError, first_line
from ..workspace.embeddings import snapshot_hash
from ..workspace.integrity import readers_verify
from ..workspace.layout import Workspace
from ..workspace.storage import read_parquet
from .generations import (
    Hold,
    graph_files,
    hold,
    ids_file,
    require_whole,
    unlisted_files,
    vectors_file,
)
from .manifest import REPAIR, IndexManifest, index_name, manifest_path, read_manifest
from .shards import ShardedIndex

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

#: Times a reader reads the manifest again when a writer swept the generation it named.
ATTEMPTS = 5
EXACT_CHUNK = 65_536  # vectors scored at once where a search falls back to exact


@dataclass
class LoadedIndex:
    manifest: IndexManifest
    index: Any  # hnswlib.Index
    label_table: pa.Table  # label (int64) -> id, for the live labels only

    vectors_path: Path | None = None
    #: Built from other embeddings than the current ones (loaded with allow_stale).
    stale: bool = False
    #: Keeps writers from sweeping this generation while it is in use.
    held: Hold | None = field(default=None, repr=False)

    def close(self) -> None:
        """Let writers sweep this generation once the manifest has moved on."""
        if self.held is not None:
            self.held.release()

    @property
    def live_count(self) -> int:
        return self.label_table.num_rows

    def knn(self, queries: np.ndarray, k: int, ef: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosines) of the k nearest live labels per query (search.knn)."""
        from .search import knn

        try:
            return knn(self.index, queries, k, self.live_count, ef)
        except RuntimeError as exc:
            # hnswlib refuses a query that reaches fewer than k vectors: k near the live
            # count in a graph of many identical vectors (one photo under 2,273 listings of
            # a category) leaves some unreachable. Search exactly instead: a scan of the
            # index's vectors, only where the graph cannot answer.
            if "contiguous 2D array" not in str(exc):
                raise
            return self.exact_knn(queries, k)

    def exact_knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosines) of the exact k nearest live labels per query, EXACT_CHUNK
        vectors at a time (a million 1280-d vectors are 5 GB)."""
        import numpy as np

        from .search import top_k_exact

        live = self.label_table.column("label").to_numpy()
        labels = np.empty((len(queries), 0), np.int64)
        scores = np.empty((len(queries), 0), np.float32)
        for start in range(0, len(live), EXACT_CHUNK):
            chunk = live[start:start + EXACT_CHUNK]
            at, found = top_k_exact(self.vectors_of(chunk), queries, k)
            # The best k of the best so far and this chunk's.
            labels = np.concatenate([labels, chunk[at]], axis=1)
            scores = np.concatenate([scores, found.astype(np.float32)], axis=1)
            keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            labels = np.take_along_axis(labels, keep, axis=1)
            scores = np.take_along_axis(scores, keep, axis=1)
        return labels, scores

    @cached_property
    def vectors(self) -> np.ndarray | None:
        """Vectors by label, memory-mapped (None for indexes built before they were kept)."""
        import numpy as np

        if self.vectors_path is None or not self.vectors_path.exists():
            return None
        try:
            return np.load(self.vectors_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DamagedFileError(self.vectors_path, f"not a vector file: {first_line(exc, 200)}",
                                   REPAIR) from None

    def vectors_of(self, labels: np.ndarray) -> np.ndarray:
        """The vectors of `labels`, in that order: gathered from the memory-mapped copy
        (hnswlib's get_items builds Python lists: 300 ms for 10k labels)."""
        import numpy as np

        if self.vectors is not None:
            return np.asarray(self.vectors[labels], np.float32)
        return np.asarray(self.index.get_items(labels, return_type="numpy"), np.float32)

    def vectors_by_id(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        """(the ids this index holds, their vectors in that order), with no loop over the
        index's rows: a C scan per id for a few ids (hashing 10^6 ids costs ~15 ms more),
        one hash join otherwise."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        column = self.label_table.column("id")
        if len(ids) <= 8:
            positions = pa.array([pc.index(column, i).as_py() for i in ids], pa.int64())
            positions = pc.if_else(pc.less(positions, 0), None, positions)
        else:
            positions = pc.index_in(pa.array(ids, pa.string()), value_set=column)
        present = pc.is_valid(positions).to_numpy(zero_copy_only=False)
        labels = self.label_table.column("label").to_numpy()[
            positions.drop_null().to_numpy(zero_copy_only=False).astype(np.int64)]
        return [i for i, keep in zip(ids, present, strict=True) if keep], \
            self.vectors_of(labels)

    @cached_property
    def ids_by_label(self) -> np.ndarray:
        """label -> id as an array (deleted labels hold None)."""
        import numpy as np

        ids = np.empty(self.index.get_max_elements(), dtype=object)
        ids[self.label_table.column("label").to_numpy()] = np.asarray(
            self.label_table.column("id").to_pylist(), dtype=object)
        return ids


def missing_index(ws: Workspace, kind: str, category: str | None = None) -> str:
    """Why the workspace has no index of `kind` (for `category`), and the fix: `pinshop
    index`, unless nothing in the catalog could go into one (a text-only catalog has no
    product photos; `pinshop index` said to a user it would not help)."""
    from ..workspace.embeddings import parts_sql

    name = index_name(kind, category)
    if kind == "product_image" and parts_sql(ws, kind) is None:
        return (f"no {name} index in {ws.root}: no product in its catalog has a photo, so "
                "there is none to match a photo against (text queries work: --text)")
    return f"no {name} index in {ws.root}: run `pinshop index` first"


def load_index(ws: Workspace, kind: str, category: str | None = None,
               allow_stale: bool = False) -> LoadedIndex:
    """The current generation of index (kind, category), held and checked. FileNotFoundError
    when there is no such index, StaleIndexError when it is stale and not `allow_stale`,
    DamagedFileError when a file of it is missing or damaged."""
    name = index_name(kind, category)
    seen: int | None = None
    for _attempt in range(ATTEMPTS):
        manifest = read_manifest(ws, name)
        if manifest is None and unlisted_files(ws, name):  # answered as if there were none
            raise DamagedFileError(manifest_path(ws, name), "missing", REPAIR)
        if manifest is None:
            raise FileNotFoundError(missing_index(ws, kind, category))
        if manifest.generation == seen:  # the same manifest names a file that is gone
            raise DamagedFileError(ws.indexes_dir / ids_file(manifest), "missing", REPAIR)
        seen = manifest.generation
        held = hold(ws, manifest)
        if held is None:
            continue  # a writer swept this generation after the manifest moved on
        try:
            return _open(ws, manifest, held, allow_stale)
        except BaseException:
            held.release()
            raise
    raise PinshopError(f"index {name} changed {ATTEMPTS} times while loading it: try again")


def _open(ws: Workspace, manifest: IndexManifest, held: Hold, allow_stale: bool
          ) -> LoadedIndex:
    stale = snapshot_hash(ws, manifest.kind, manifest.model_id) != manifest.snapshot
    if stale and not allow_stale:
        raise StaleIndexError(
            f"index {manifest.name} was built before the latest ingest (it would serve "
            "outdated results): run `pinshop index`, or pass --rebuild to rebuild it now")
    if readers_verify():
        require_whole(ws, manifest, full=False)
    labels = read_labels(ws, manifest)
    index = load_graph(ws, manifest, labels.column("label").to_numpy(), manifest.count)
    return LoadedIndex(manifest, index, labels.select(["label", "id"]),
                       ws.indexes_dir / vectors_file(manifest), stale, held)


def read_labels(ws: Workspace, manifest: IndexManifest) -> pa.Table:
    """label -> id (and source_hash) of the live labels."""
    path = ws.indexes_dir / ids_file(manifest)
    try:
        labels = read_parquet(path)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise DamagedFileError(path, f"unreadable Parquet: {first_line(exc, 200)}",
                               REPAIR) from None
    if labels is None:
        raise DamagedFileError(path, "missing", REPAIR)
    if "label" not in labels.column_names:  # written before labels were stored explicitly
        import pyarrow as pa

        labels = pa.table({"label": pa.array(range(labels.num_rows), pa.int64()),
                           "id": labels.column("id")})
    if "id" not in labels.column_names:
        raise DamagedFileError(path, "no id column", REPAIR)
    return labels


def load_graph(ws: Workspace, manifest: IndexManifest, live_labels: np.ndarray,
               max_elements: int) -> Any:
    """The graph(s) of an index: an hnswlib.Index, or a ShardedIndex over its shards."""
    import hnswlib

    files = graph_files(manifest)
    try:
        if manifest.shards:
            return ShardedIndex.load(ws.indexes_dir, files, manifest.space, manifest.dim,
                                     live_labels)
        index = hnswlib.Index(space=manifest.space, dim=manifest.dim)
        index.load_index(str(ws.indexes_dir / files[0]), max_elements=max_elements)
        return index
    except RuntimeError as exc:  # hnswlib: "Index seems to be corrupted or unsupported"
        path = ws.indexes_dir / (files[0] if len(files) == 1 else f"{manifest.name} shards")
        raise DamagedFileError(path, f"unreadable graph: {first_line(exc, 200)}", REPAIR) from None

