"""Taste profiles: each user's mean liked-item vector, matched to products by HNSW.

The profiles are one sparse (users x items) by dense (items x dim) product and the search
is one batched hnswlib query, so the cost is BLAS and C++ work, never a Python loop per user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..workspace.embeddings import EmbeddingSet, load_embeddings
from ..workspace.layout import Workspace

if TYPE_CHECKING:
    import numpy as np


def product_vectors(ws: Workspace, prefer: str = "product_image") -> EmbeddingSet | None:
    """Product image vectors (the visual taste), else product text vectors, else None."""
    settings = ws.settings()
    kinds = [("product_image", "image_model_id"), ("product_text", "text_model_id")]
    kinds.sort(key=lambda pair: pair[0] != prefer)
    for kind, key in kinds:
        if key in settings:
            vectors = load_embeddings(ws, kind, settings[key])
            if vectors.ids:
                return vectors
    return None


def nearest_to_profiles(vectors: EmbeddingSet, users: np.ndarray, items: np.ndarray,
                        strengths: np.ndarray, k: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (user, item, strength) likes: (user per row, product label, cosine) of the k
    products nearest to each user's strength-weighted mean liked vector."""
    import hnswlib
    import numpy as np
    from scipy.sparse import csr_matrix

    label_of = {pid: n for n, pid in enumerate(vectors.ids)}
    known = np.array([pid in label_of for pid in items], dtype=bool)
    users, items, strengths = users[known], items[known], strengths[known]
    user_ids, user_index = np.unique(users, return_inverse=True)
    item_index = np.array([label_of[pid] for pid in items], dtype=np.int64)
    likes = csr_matrix((strengths.astype(np.float32), (user_index, item_index)),
                       shape=(len(user_ids), len(vectors.ids)))
    profiles = np.asarray(likes @ vectors.vectors, dtype=np.float32)
    profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
    index = hnswlib.Index(space="ip", dim=vectors.dim)
    index.init_index(max_elements=len(vectors.ids), M=16, ef_construction=100)
    index.add_items(vectors.vectors, np.arange(len(vectors.ids)))
    k = min(k, len(vectors.ids))
    index.set_ef(max(k * 2, 64))
    labels, distances = index.knn_query(profiles, k=k)
    return (np.repeat(user_ids, k), labels.ravel().astype(np.int64),
            (1.0 - distances.ravel()).astype(np.float32))
