"""Model layer: base classes, the registry, and the built-in detectors and embedders."""

from .base import Detection, Detector, Embedder
from .registry import (
    ModelSpec,
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
    "Detection", "Detector", "Embedder", "ModelSpec", "get_detector", "get_embedder",
    "get_spec", "list_models", "model_status", "pull", "register", "verify",
]  # fmt: skip
