"""What a registered model is: its name, task, files and licence. Kept apart from the
registry so that built-ins and plugins can describe models without importing it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .resolve import ModelFile


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str  # detect | embed | embed-image | embed-text | chat
    architecture: str
    license: str
    files: tuple[ModelFile, ...]
    aliases: tuple[str, ...] = ()
    description: str = ""
    #: Builds the model from (this spec, its first file resolved, registry.BuildOptions).
    #: None: the task's built-in factory (models/factories.py), so a plugin can register a
    #: class of its own and built-ins take the same path.
    factory: Callable[..., Any] | None = field(default=None, compare=False)
