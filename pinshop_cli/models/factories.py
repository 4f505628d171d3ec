"""How a registered model becomes an object: one factory per task, called with the spec,
its first file resolved, and the build options. A spec may bring its own factory (a
plugin's detector class, say); built-ins use these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnknownModelError
from .device import Placement
from .spec import ModelSpec


@dataclass(frozen=True)
class BuildOptions:
    """What a factory may use; each task reads its own fields."""

    models_dir: Path
    placement: Placement = field(default_factory=Placement)
    runtime: str = "auto"  # embedders: torch, onnx, onnx-int8 or auto
    source: str = ""  # embedders: the name recorded in the workspace (default: spec.name)
    conf: float = 0.25  # detectors: the confidence floor
    n_ctx: int = 4096  # chat models
    n_threads: int | None = None


#: (spec, its first file resolved or None when it needs none, options) -> the model.
Factory = Callable[[ModelSpec, Path | None, BuildOptions], Any]


def weights(spec: ModelSpec, path: Path | None) -> Path:
    """The weights file a built-in factory needs (a spec registered without files has none)."""
    if path is None:
        raise UnknownModelError(f"{spec.name} lists no weights file for its {spec.task} factory")
    return path


def ultralytics_detector(spec: ModelSpec, path: Path | None, options: BuildOptions) -> Any:
    path = weights(spec, path)
    from .detectors import UltralyticsDetector

    return UltralyticsDetector(path, model_id=spec.name, conf=options.conf,
                               device=options.placement.device)


def open_clip_embedder(spec: ModelSpec, path: Path | None, options: BuildOptions) -> Any:
    path = weights(spec, path)
    from .embedders import OpenClipEmbedder

    return OpenClipEmbedder(spec.architecture, path, f"open_clip:{spec.name}",
                            source=options.source or spec.name, runtime=options.runtime,
                            models_dir=options.models_dir, placement=options.placement)


def llama_chat(spec: ModelSpec, path: Path | None, options: BuildOptions) -> Any:
    path = weights(spec, path)
    from .llm import LlamaCppChatModel

    return LlamaCppChatModel(path, spec.name, n_ctx=options.n_ctx, n_threads=options.n_threads,
                             device=options.placement.device)


TASK_FACTORIES: dict[str, Factory] = {
    "detect": ultralytics_detector, "embed": open_clip_embedder, "chat": llama_chat}


def build_model(spec: ModelSpec, path: Path | None, options: BuildOptions) -> Any:
    """The spec's own factory, else its task's."""
    factory = spec.factory or TASK_FACTORIES.get(spec.task)
    if factory is None:
        raise UnknownModelError(f"{spec.name} is a {spec.task} model with no factory: it is "
                                "used as part of another model, not on its own")
    return factory(spec, path, options)
