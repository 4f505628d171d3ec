"""POST /chat as Server-Sent Events: a session id keeps each conversation's dialogue; the
answer streams through the same guard as `pinshop chat` (ShoppingAssistant.ask_stream).

A turn does not hold the Shop for its whole length: each step of the turn (up to its next
piece of text) runs under the Shop's lock, and the chat model lets go of the lock while it
waits for its next piece (`Unlocking`), so searches, matches and updates are answered
while the model generates; sending a piece to the client holds nothing."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from fastapi.responses import StreamingResponse

from ..errors import PinshopError
from ..models.base import ChatModel
from .guard import ServedShop

if TYPE_CHECKING:
    from ..assistant.session import ShoppingAssistant

log = logging.getLogger("pinshop.serve")
MAX_SESSIONS = 256  # conversations kept; the least recently used is forgotten first


def event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


class Unlocking(ChatModel):
    """A chat model that releases `lock` (held by its caller) while it waits for the model,
    and takes it back before handing over each piece."""

    def __init__(self, model: ChatModel, lock: threading.Lock) -> None:
        self.model, self.lock = model, lock
        self.model_id, self.n_ctx = model.model_id, model.n_ctx

    def stream(self, messages: list[dict[str, str]], max_tokens: int = 256,
               temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
               repeat_penalty: float = 1.0) -> Iterator[str]:
        pieces = self.model.stream(messages, max_tokens, temperature, json_schema,
                                   repeat_penalty)
        try:
            while True:
                self.lock.release()
                try:
                    piece = next(pieces, None)
                finally:
                    self.lock.acquire()
                if piece is None:
                    return
                yield piece
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:  # a caller that stops reading stops the model
                close()

    def generate(self, messages: list[dict[str, str]], max_tokens: int = 256,
                 temperature: float = 0.2, json_schema: dict[str, Any] | None = None) -> str:
        self.lock.release()
        try:
            return self.model.generate(messages, max_tokens, temperature, json_schema)
        finally:
            self.lock.acquire()

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)


class Turn:
    """A begun turn's events, read one at a time in worker threads. `close` ends the turn
    (its `finally` gives back the chat slot and stops the model) once a read still running
    in another thread is done."""

    def __init__(self, first: str, rest: Generator[str, None, None]) -> None:
        self._first: str | None = first
        self._rest = rest
        self._reading = threading.Lock()  # a generator cannot be closed while it runs

    def __iter__(self) -> Turn:
        return self

    def __next__(self) -> str:
        with self._reading:
            if self._first is not None:
                first, self._first = self._first, None
                return first
            return next(self._rest)

    def close(self) -> None:
        with self._reading:
            self._rest.close()


class TurnResponse(StreamingResponse):
    """A turn as Server-Sent Events, ended with the response however the response ends.
    When the client leaves mid-answer, Starlette stops reading but closes nothing, so the
    turn, and the one chat slot with it, stayed taken until the garbage collector came
    by: every later chat was a 503, for minutes or until a restart."""

    def __init__(self, turn: Turn) -> None:
        super().__init__(turn, media_type="text/event-stream",
                         headers={"Cache-Control": "no-store"})
        self.turn = turn

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # in a thread: a read may still be waiting on the model
            threading.Thread(target=self.turn.close, daemon=True).start()


class ChatSessions:
    """Conversations by id, each a ShoppingAssistant on the served Shop's chat model."""

    def __init__(self, served: ServedShop, model: str, n_ctx: int = 4096) -> None:
        self.served, self.model, self.n_ctx = served, model, n_ctx
        self._sessions: OrderedDict[str, tuple[int, ShoppingAssistant]] = OrderedDict()
        self._lock = threading.Lock()

    def _assistant(self, session: str) -> ShoppingAssistant:
        """The session's assistant (called holding the Shop): one built on a Retriever the
        Shop has since let go of moves to the new one, keeping its dialogue."""
        shop = self.served.shop
        with self._lock:
            known = self._sessions.pop(session, None)
        if known is None or known[0] != shop.generation:
            assistant = shop.chat(self.model, n_ctx=self.n_ctx)
            assistant.model = assistant.answerer.model = Unlocking(assistant.model,
                                                                   self.served.lock)
            if known is not None:  # the assistant and its journey share one Dialogue
                assistant.dialogue = assistant.journey.dialogue = known[1].dialogue
        else:
            assistant = known[1]
        with self._lock:
            self._sessions[session] = (shop.generation, assistant)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return assistant

    def stream(self, message: str, session: str | None) -> Turn:
        """The events of one turn: `session` (its id), `token` pieces as the guard passes
        them, then `reply` (the `chat --json` shape), or `error` with a one-line reason.
        ChatBusy, raised here before any event, when the chat model is busy with other
        turns (the turn is begun at once, not on the stream's first read)."""
        session = session or secrets.token_urlsafe(12)
        self.served.begin_turn()
        events = self._events(message, session)
        first = next(events)  # begun: its `finally` ends the turn however the stream ends
        return Turn(first, events)

    def _events(self, message: str, session: str) -> Generator[str, None, None]:
        try:
            yield event("session", {"session": session})
            yield from self._turn(message, session)
        finally:
            self.served.end_turn()

    def _turn(self, message: str, session: str) -> Iterator[str]:
        """The turn's events, each step under the Shop's lock, each yield outside it."""
        from ..assistant.session import Reply

        steps: Generator[Any, None, Any] | None = None
        try:
            while True:
                with self.served.lock:
                    if steps is None:
                        steps = self._assistant(session).ask_stream(message)
                    piece = next(steps, None)
                if piece is None:
                    return
                if isinstance(piece, Reply):
                    yield event("reply", piece.to_dict())
                else:
                    yield event("token", {"text": piece})
        except PinshopError as exc:
            yield event("error", {"error": self.served.public(str(exc))})
        except Exception:  # the stream has begun: say so in it, keep the trace in the log
            log.exception("chat turn failed")
            yield event("error", {"error": "internal error (see the server's log)"})
        finally:
            if steps is not None:
                with self.served.lock:  # its clean-up may touch the Shop
                    steps.close()
