"""How library code reports progress without knowing about terminals."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, count: int = 1) -> None: ...
    def note(self, message: str) -> None: ...


class NullProgress:
    """Default for notebook and library callers: silent."""

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        pass
