"""Model layer: base classes, the registry, and the built-in detectors and embedders."""

from .base import ChatModel, Detection, Detector, Embedder
from .registry import (
    ModelSpec,
    get_chat_model,
    get_detector,
    get_embedder,
    get_spec,
    list_models,
    model_status,
    pull,
    register,
    verify,
)

__all__ = [
    "ChatModel", "Detection", "Detector", "Embedder", "ModelSpec", "get_chat_model",
    "get_detector", "get_embedder",
    "get_spec", "list_models", "model_status", "pull", "register", "verify",
]  # fmt: skip
