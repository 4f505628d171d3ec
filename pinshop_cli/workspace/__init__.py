"""The workspace: layout and writer lock, atomic storage, embedding parts and snapshots."""

from .layout import DEFAULT_WORKSPACE, EMBEDDING_KINDS, Workspace

__all__ = ["DEFAULT_WORKSPACE", "EMBEDDING_KINDS", "Workspace"]
