"""What a registered model is: its name, task, files and licence. Kept apart from the
registry so that built-ins and plugins can describe models without importing it."""

from __future__ import annotations

from dataclasses import dataclass

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
