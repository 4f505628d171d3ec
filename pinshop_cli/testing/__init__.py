"""Fakes for plumbing tests, named as fakes (like llm's MockModel): they test how pinshop's
parts are wired together, never a real model's quality (real small models do that)."""

from .chat import ScriptedCall, ScriptedChatModel
from .detector import FixedBoxesDetector

__all__ = ["FixedBoxesDetector", "ScriptedCall", "ScriptedChatModel"]
