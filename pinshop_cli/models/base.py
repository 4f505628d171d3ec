"""One small base class per model kind. Constructing a model is cheap; weights load lazily,
once, on first use — so listing, resolving and re-running finished work never load them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the input image
    class_name: str
    category: str
    score: float
    #: What found it: "detector", "regions" (catalog-guided) or "whole_image".
    source: str = "detector"
    #: The crop's embedding when finding it already made one (regions do), else None.
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)


class Detector(ABC):
    model_id: str
    #: True when no real detector resolved and every image is one whole-image region.
    is_fallback: bool = False
    #: Why the fallback was used, shown to the user.
    note: str = ""

    @abstractmethod
    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """One list of product detections per input image."""


class Embedder(ABC):
    """Embeds images and/or texts into L2-normalized float32 vectors.

    `shared_space` is True for CLIP-like models (a crop can match a text row); the offline
    pair embeds images and texts into two unrelated spaces."""

    name: str
    image_model_id: str
    text_model_id: str
    shared_space: bool = False
    #: The name that rebuilds this embedder (recorded in the workspace).
    source: str = ""
    #: Why this embedder was chosen, shown to the user (e.g. the CLIP fallback).
    note: str = ""
    #: Side of the square model input; readers decode JPEGs no larger than needed for it.
    input_size: int = 224

    @property
    def runtime_used(self) -> str:
        """Where the forwards ran, e.g. 'image: onnx, text: unused'."""
        return "torch"

    @property
    def runtime_notes(self) -> list[str]:
        """Why a runtime other than the requested one was used (e.g. a failed export)."""
        return []

    def exports_to_make(self) -> list[str]:
        """The model parts whose ONNX export the first forward will make and check (about
        half a minute each on 2 cores), so a caller can say why the first run waits."""
        return []

    @abstractmethod
    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """CPU-side transform (safe to run in reader threads): PIL image -> float32 CHW."""

    @abstractmethod
    def embed_image_tensors(self, batch: np.ndarray) -> np.ndarray:
        """Forward pass on a stacked (N, C, H, W) batch of preprocessed images."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of texts."""

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        import numpy as np

        return self.embed_image_tensors(np.stack([self.preprocess_image(i) for i in images]))


def l2_normalize(vectors: Any) -> np.ndarray:
    """torch or numpy (n, d) -> float32 numpy with unit rows."""
    import numpy as np

    array = vectors.detach().cpu().float().numpy() if hasattr(vectors, "detach") else vectors
    array = np.asarray(array, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


class ChatModel(ABC):
    """A chat LLM. `stream` yields text pieces; with a JSON schema the output is constrained
    to it (grammar-based decoding), which small models need to produce valid JSON."""

    model_id: str
    n_ctx: int

    @abstractmethod
    def stream(self, messages: list[dict[str, str]], max_tokens: int = 256,
               temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
               repeat_penalty: float = 1.0) -> Iterator[str]:
        """Text pieces of the assistant's reply, as they are generated."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's context."""

    def start(self) -> None:
        """Begin loading the weights, if the model can do that in the background (the
        llama.cpp worker does), so the load overlaps the caller's own preparation."""
        return None

    def close(self) -> None:
        """Let go of what `start` or the first call took (the llama.cpp worker process)."""
        return None

    def generate(self, messages: list[dict[str, str]], max_tokens: int = 256,
                 temperature: float = 0.2, json_schema: dict[str, Any] | None = None) -> str:
        return "".join(self.stream(messages, max_tokens, temperature, json_schema))
