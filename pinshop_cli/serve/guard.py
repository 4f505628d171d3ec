"""What keeps a served Shop safe under load: caps on requests, the bearer token, one lock
that bounds the Shop's work to one call at a time (a burst queues, it does not run the
process out of memory; the Shop's DuckDB connection and LRUs are not shared across
threads), and a gate that bounds chat turns: a turn holds the Shop's lock only between the
chat model's pieces (serve/chat.py), so other requests go on while it generates. A turn that
finds the gate full is refused at once (ChatBusy: a 503), never parked on a worker thread
that other requests need."""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..shop import Shop

MAX_K = 100  # results per query
MAX_TEXT = 500  # characters in a search query (a chat question has its own cap)
MAX_SESSION_EVENTS = 1000  # a browsing session's events in one POST /recommend
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000  # a 8000 x 5000 photo; a decompression bomb is far above
#: Any other body (JSON: a 1,000-event session is ~100 KB); a multipart upload gets
#: MAX_UPLOAD_BYTES and room for the form around it.
MAX_BODY_BYTES = 1024 * 1024
FORM_ROOM = 64 * 1024
#: How much more of an oversized body is read, in caps, before the connection is dropped.
DRAIN_FACTOR = 4
CHAT_TURNS = 1  # chat turns generating at once (one model; more are refused, see ChatBusy)
RETRY_AFTER = 1  # seconds a refused request is told to wait (Retry-After)


class BodyLimit:
    """ASGI middleware: a body over its cap is a 413, whether its Content-Length says so
    (before any of it is read) or a chunked body runs over while the app reads it (a 200 MB
    JSON body was kept whole, 0.6 GB, before validation refused it). Its pieces are let go
    as they arrive, and at most DRAIN_FACTOR caps more are read so that the client, still
    sending, sees the 413 rather than a reset connection; past that the connection closes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        upload = headers.get(b"content-type", b"").startswith(b"multipart/")
        cap = MAX_UPLOAD_BYTES + FORM_ROOM if upload else MAX_BODY_BYTES
        message = f"the body is over {cap // 1024:,} KiB"
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > cap:
            from starlette.responses import JSONResponse

            await _drain(receive, DRAIN_FACTOR * cap)
            await JSONResponse({"error": message}, status_code=413,
                               headers=CLOSE)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            piece = await receive()
            seen += len(piece.get("body", b""))
            if seen > cap:
                from starlette.exceptions import HTTPException

                if piece.get("more_body", False):
                    await _drain(receive, DRAIN_FACTOR * cap)
                raise HTTPException(413, message, CLOSE)  # the app's handler answers it
            return piece

        await self.app(scope, counted, send)


#: On a 413: without it uvicorn keeps the connection and reads the rest of the body.
CLOSE = {"Connection": "close"}


async def _drain(receive: Any, budget: int) -> None:
    """Read and let go of the rest of a request body, at most `budget` bytes."""
    while budget > 0:
        piece = await receive()
        budget -= len(piece.get("body", b""))
        if not piece.get("more_body", False):
            return


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
        from ..models.resolve import models_dir

        self._lock = threading.Lock()
        self._turns = 0  # chat turns under way: the Shop is not reloaded under them
        self._chat_gate = threading.BoundedSemaphore(CHAT_TURNS)
        # This machine's folders by what they are to a client (see `public`): absolute,
        # as given and resolved, longest first, each only as a whole path part.
        root, models = self.shop.ws.root, models_dir(self.shop.models_dir)
        named = [(root, "the workspace"), (root.resolve(), "the workspace"),
                 (models, "the models folder"), (models.resolve(), "the models folder"),
                 (Path.home(), "~")]
        folders = {str(folder): name for folder, name in named
                   if folder.is_absolute() and str(folder).strip("/")}
        self._folders = [(re.compile(rf"(?<![\w.\-]){re.escape(folder)}(?=[/\\\s\"'`:;,)]|$)"),
                          name) for folder, name in sorted(folders.items(),
                                                           key=lambda item: -len(item[0]))]

    def public(self, message: str) -> str:
        """An error message for a client, with this machine's folders named by what they
        are ("no events in the workspace"): it said "no events in /srv/shop/data", the
        server's layout, to anyone who asked for a user without events."""
        for folder, name in self._folders:
            message = folder.sub(name, message)
        return message

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
