"""Fakes for plumbing tests, named as fakes (like llm's MockModel): they test how pinshop's
parts are wired together, never a real model's quality (real small models do that)."""

from .chat import ScriptedCall, ScriptedChatModel, StuckChatModel
from .detector import FixedBoxesDetector
from .embedder import FAKE_EMBEDDER, FakeEmbedder, registered_fake_embedder

__all__ = ["FAKE_EMBEDDER", "FakeEmbedder", "FixedBoxesDetector", "ScriptedCall",
           "ScriptedChatModel", "StuckChatModel", "registered_fake_embedder"]
