"""POST /chat as Server-Sent Events: a session id keeps each conversation's dialogue; the
answer streams through the same guard as `pinshop chat` (ShoppingAssistant.ask_stream)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from .guard import ServedShop

if TYPE_CHECKING:
    from ..assistant.session import ShoppingAssistant

log = logging.getLogger("pinshop.serve")
MAX_SESSIONS = 256  # conversations kept; the least recently used is forgotten first


def event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


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
            if known is not None:  # the assistant and its journey share one Dialogue
                assistant.dialogue = assistant.journey.dialogue = known[1].dialogue
        else:
            assistant = known[1]
        with self._lock:
            self._sessions[session] = (shop.generation, assistant)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return assistant

    def stream(self, message: str, session: str | None) -> Iterator[str]:
        """The events of one turn: `session` (its id), `token` pieces as the guard passes
        them, then `reply` (the `chat --json` shape), or `error` with a one-line reason."""
        from ..assistant.session import Reply

        session = session or secrets.token_urlsafe(12)
        yield event("session", {"session": session})
        with self.served.using():
            try:
                assistant = self._assistant(session)
                for piece in assistant.ask_stream(message):
                    if isinstance(piece, Reply):
                        yield event("reply", piece.to_dict())
                    else:
                        yield event("token", {"text": piece})
            except PinshopError as exc:
                yield event("error", {"error": str(exc)})
            except Exception:  # the stream has begun: say so in it, keep the trace in the log
                log.exception("chat turn failed")
                yield event("error", {"error": "internal error (see the server's log)"})
