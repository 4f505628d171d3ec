"""What keeps a served Shop safe under load: caps on requests, the bearer token, one lock
that bounds the Shop's work to one call at a time (a burst queues, it does not run the
process out of memory; the Shop's DuckDB connection and LRUs are not shared across
threads), and a gate that bounds chat turns: a turn holds the Shop's lock only between the
chat model's pieces (serve/chat.py), so other requests go on while it generates. A turn that
finds the gate full is refused at once (ChatBusy: a 503), never parked on a worker thread
that other requests need."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..shop import Shop

MAX_K = 100  # results per query
MAX_TEXT = 500  # characters in a search query (a chat question has its own cap)
MAX_SESSION_EVENTS = 1000  # a browsing session's events in one POST /recommend
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000  # a 8000 x 5000 photo; a decompression bomb is far above
CHAT_TURNS = 1  # chat turns generating at once (one model; more are refused, see ChatBusy)
RETRY_AFTER = 1  # seconds a refused request is told to wait (Retry-After)


class Unauthorized(Exception):
    """A write without the server's bearer token."""


class ChatBusy(Exception):
    """CHAT_TURNS chat turns are under way: the chat model is busy."""


@dataclass
class ServedShop:
    """The one Shop a server answers from, with its token."""

    shop: Shop
    token: str

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._turns = 0  # chat turns under way: the Shop is not reloaded under them
        self._chat_gate = threading.BoundedSemaphore(CHAT_TURNS)

    @contextmanager
    def using(self) -> Iterator[Shop]:
        """The Shop, for one call at a time; a re-ingest or re-index by another process is
        picked up here (Shop.refresh: a few stat calls), unless a chat turn is using the
        loaded one (the next call after it picks it up)."""
        with self._lock:
            if not self._turns:
                self.shop.refresh()
            yield self.shop

    @property
    def lock(self) -> threading.Lock:
        """The Shop's lock (a chat turn takes it step by step: serve/chat.py)."""
        return self._lock

    def begin_turn(self) -> None:
        """Start one chat turn: through the gate (CHAT_TURNS at once; ChatBusy, without
        waiting, when it is full), with the Shop brought up to date first and kept loaded
        until `end_turn`."""
        if not self._chat_gate.acquire(blocking=False):
            raise ChatBusy("the chat model is busy with another conversation; try again")
        try:
            with self._lock:
                self.shop.refresh()
                self._turns += 1
        except BaseException:
            self._chat_gate.release()
            raise

    def end_turn(self) -> None:
        with self._lock:
            self._turns -= 1
        self._chat_gate.release()

    def check_token(self, authorization: str | None) -> None:
        """Accept `Authorization: Bearer <token>` only (compared in constant time)."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                  self.token.encode()):
            raise Unauthorized("this needs the server's token: Authorization: Bearer <token>")
