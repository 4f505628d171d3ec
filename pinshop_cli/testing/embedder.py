"""A fake embedder for plumbing tests: deterministic vectors from a photo's coarse colours
and a text's words, in milliseconds and with no weights. Ingest, resume, locking, indexing
and the commands run through it exactly as through a real embedder (it is registered like
a plugin's model); what it can never show is retrieval quality.

    with registered_fake_embedder() as name:   # "fake-embedder"
        pinshop_cli.ingest(workspace, catalog, config=IngestConfig(embedder=name))
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.base import Embedder, l2_normalize
from ..models.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

FAKE_EMBEDDER_NAME = "fake-embedder"
#: Side of the colour thumbnail an image becomes, and the vectors' dimension.
THUMB, DIM = 8, 32


class FakeEmbedder(Embedder):
    """Images: an 8x8 colour thumbnail, centred, through a fixed random projection (alike
    photos get alike vectors). Texts: hashed words (the same words, the same vector).
    Two unrelated spaces, like the offline pair."""

    name = "fake"
    image_model_id = "fake-image"
    text_model_id = "fake-text"
    shared_space = False
    input_size = THUMB

    def __init__(self, source: str = FAKE_EMBEDDER_NAME) -> None:
        import numpy as np

        self.source = source
        self._projection = np.random.default_rng(0).standard_normal(
            (3 * THUMB * THUMB, DIM)).astype(np.float32)

    @property
    def runtime_used(self) -> str:
        return "fake (no model)"

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        import numpy as np

        thumb = image.convert("RGB").resize((THUMB, THUMB))
        return np.asarray(thumb, dtype=np.float32).transpose(2, 0, 1) / 255.0

    def embed_image_tensors(self, batch: np.ndarray) -> np.ndarray:
        flat = batch.reshape(len(batch), -1)
        return l2_normalize((flat - flat.mean(axis=1, keepdims=True)) @ self._projection)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        vectors = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):  # a fake: a handful of test rows
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % DIM] += 1.0
        vectors[:, 0] += 1e-3  # an empty text still has a direction
        return l2_normalize(vectors)


def _build(spec: ModelSpec, path: Path | None, options: Any) -> FakeEmbedder:
    return FakeEmbedder(source=options.source or spec.name)


FAKE_EMBEDDER = ModelSpec(FAKE_EMBEDDER_NAME, "embed", "fake (plumbing tests)", "MIT", (),
                          description="Deterministic vectors without weights, for tests.",
                          factory=_build)


@contextmanager
def registered_fake_embedder() -> Iterator[str]:
    """Register the fake embedder for the block (in this process); yields its name."""
    from ..models.registry import register, unregister

    register(FAKE_EMBEDDER)
    try:
        yield FAKE_EMBEDDER_NAME
    finally:
        unregister(FAKE_EMBEDDER_NAME)
