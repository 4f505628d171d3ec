"""`ScriptedChatModel`: a fake chat model that answers from a script.

Each model call takes the next scripted reply:
- a string: the text it streams, in pieces of PIECE_CHARS characters (one "token" each, so
  `max_tokens` cuts it where a real model would stop);
- a dict, for a call with a `json_schema`: the JSON it returns, as grammar decoding
  would: a required key the script leaves out gets an empty value ("", 0, [], or
  "none"/"any" when the enum lists one, else its first value), and a value outside an enum
  is a scripting error, since a constrained model could not write it (a string is streamed
  as it is, constrained or not: JSON cut short, say);
- a callable: called with the messages, it returns one of the above (an answer that cites
  whatever the prompt lists).
Every call is recorded (`calls`), with whether the caller stopped reading before the end.
Tokens are counted by a simple rule: one per PIECE_CHARS characters, rounded up.

`StuckChatModel` streams half an answer and then waits for its `release` event: a turn
caught mid-generation, for tests of what else goes on meanwhile.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..models.base import ChatModel

PIECE_CHARS = 4
Scripted = str | dict[str, Any] | Callable[[list[dict[str, str]]], Any]


@dataclass
class ScriptedCall:
    messages: list[dict[str, str]]
    max_tokens: int
    json_schema: dict[str, Any] | None
    text: str = ""  # what the caller read
    stopped: bool = False  # the caller stopped reading before the end


class ScriptedChatModel(ChatModel):
    """A fake ChatModel for plumbing tests; see the module docstring."""

    model_id = "scripted-fake"

    def __init__(self, replies: Iterable[Scripted] = (), n_ctx: int = 4096) -> None:
        self.replies: list[Scripted] = list(replies)
        self.n_ctx = n_ctx
        self.calls: list[ScriptedCall] = []

    @property
    def constrained(self) -> list[bool]:
        """Per call, whether it was constrained to a JSON schema."""
        return [call.json_schema is not None for call in self.calls]

    def stream(self, messages: list[dict[str, str]], max_tokens: int = 256,
               temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
               repeat_penalty: float = 1.0) -> Iterator[str]:
        call = ScriptedCall(messages, max_tokens, json_schema)
        self.calls.append(call)
        if not self.replies:
            raise AssertionError(f"{self.model_id}: call {len(self.calls)} has no scripted "
                                 "reply left")
        scripted = self.replies.pop(0)
        if callable(scripted):
            scripted = scripted(messages)
        text = _as_schema(scripted, json_schema) if isinstance(scripted, dict) and \
            json_schema is not None else scripted
        if not isinstance(text, str):
            raise AssertionError(f"{self.model_id}: call {len(self.calls)} is unconstrained "
                                 f"text, but its script is {type(text).__name__}")
        pieces = [text[at:at + PIECE_CHARS] for at in range(0, len(text), PIECE_CHARS)]
        return self._pieces(call, pieces[:max_tokens])

    def _pieces(self, call: ScriptedCall, pieces: list[str]) -> Iterator[str]:
        try:
            for piece in pieces:
                call.text += piece
                yield piece
        except GeneratorExit:
            call.stopped = True
            raise

    def count_tokens(self, text: str) -> int:
        return -(-len(text) // PIECE_CHARS)


def _as_schema(scripted: dict[str, Any], schema: dict[str, Any]) -> str:
    """The scripted JSON as a schema-constrained model would write it."""
    data = dict(scripted)
    properties = schema.get("properties", {})
    for key in schema.get("required", []):
        data.setdefault(key, _empty(properties.get(key, {})))
    for key, value in data.items():
        allowed = properties.get(key, {}).get("enum")
        if allowed is not None and value not in allowed:
            raise ValueError(f"scripted {key}={value!r} is not one of the schema's {allowed}")
    return json.dumps(data)


def _empty(prop: dict[str, Any]) -> Any:
    if "enum" in prop:
        return next((v for v in ("none", "any") if v in prop["enum"]), prop["enum"][0])
    return {"string": "", "number": 0, "integer": 0, "array": [], "boolean": False,
            "object": {}}.get(prop.get("type", "string"), "")


class StuckChatModel(ScriptedChatModel):
    """Streams "Here is a chair ", sets `generating`, waits for `release`, then ends the
    answer; a call for the intent (constrained to a JSON schema) is answered at once."""

    model_id = "stuck-fake"

    def __init__(self) -> None:
        super().__init__()
        self.generating, self.release = threading.Event(), threading.Event()

    def stream(self, messages: list[dict[str, str]], max_tokens: int = 256,
               temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
               repeat_penalty: float = 1.0) -> Iterator[str]:
        if json_schema is not None:
            self.replies = [{}]
            yield from super().stream(messages, max_tokens, temperature, json_schema)
            return
        yield "Here is a chair "
        self.generating.set()
        if not self.release.wait(120):
            raise AssertionError(f"{self.model_id}: never released")
        yield "for you."
