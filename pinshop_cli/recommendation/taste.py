"""Taste profiles: each user's strength-weighted mean liked-item vector, matched to products
through the workspace's saved product index (product images, else product texts).

Liked items become index labels through one join, their vectors come out of the index, the
profiles are one sparse (users x liked items) by dense (liked items x dim) product, and the
search is one batched hnswlib query: BLAS and C++ work, never a Python loop per user, and no
index built per call. A workspace without a product index has no taste component until
`pinshop index` builds one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..index.hnsw import LoadedIndex, load_index
from ..workspace import Workspace
from ..workspace.storage import query_arrow

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

TASTE_KINDS = ("product_image", "product_text")  # visual taste first


def product_index(ws: Workspace) -> LoadedIndex | None:
    """The saved global product index the taste profiles search (stale is acceptable here:
    deleted products are marked deleted, so they are never returned)."""
    for kind in TASTE_KINDS:
        try:
            return load_index(ws, kind, allow_stale=True)
        except FileNotFoundError:
            continue
    return None


def taste_profiles(index: LoadedIndex, likes: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """For likes (user_id, item_id, strength): the users and their unit-length
    strength-weighted mean liked-item vectors (one row per user with a liked indexed item)."""
    labelled = query_arrow("SELECT k.user_id, l.label, k.strength FROM likes k "
                           "JOIN labels l ON l.id = k.item_id",
                           tables={"likes": likes, "labels": index.label_table})
    return profiles_of(index, labelled.column("user_id").to_numpy(zero_copy_only=False),
                       labelled.column("label").to_numpy(),
                       labelled.column("strength").to_numpy())


def profiles_of(index: LoadedIndex, users: np.ndarray, labels: np.ndarray,
                strengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """taste_profiles for likes already given as index labels, one array per column."""
    import numpy as np
    from scipy.sparse import csr_matrix

    if len(users) == 0:
        return np.array([], dtype=object), np.zeros((0, index.manifest.dim), np.float32)
    user_ids, user_index = _codes(users)
    liked_labels, item_index = _codes(labels)
    vectors = index.vectors_of(liked_labels)
    weights = csr_matrix((np.asarray(strengths, np.float32), (user_index, item_index)),
                         shape=(len(user_ids), len(liked_labels)))
    profiles = np.asarray(weights @ vectors, dtype=np.float32)
    profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
    return user_ids, profiles


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, each value's position among them), as np.unique gives:
    for integer keys one pass over a presence mask, not a sort of 10^6 values."""
    import numpy as np

    if values.dtype.kind not in "iu" or values.min() < 0:
        return np.unique(values, return_inverse=True)
    present = np.zeros(int(values.max()) + 1, dtype=bool)
    present[values] = True
    return np.flatnonzero(present).astype(values.dtype), (np.cumsum(present) - 1)[values]


def nearest_labels(index: LoadedIndex, user_ids: np.ndarray, profiles: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user per row, label, cosine) of the k products nearest to each profile: one
    batched hnswlib query."""
    import numpy as np

    if len(user_ids) == 0:
        return user_ids, np.array([], dtype=np.int64), np.array([], dtype=np.float32)
    k = min(k, index.live_count)
    labels, cosines = index.knn(profiles, k)
    return np.repeat(user_ids, k), labels.ravel(), cosines.ravel()
