"""Searches that arrive while the Shop is busy are answered together. A request queues its
query and awaits it on the event loop; one drain thread at a time takes the Shop and
answers everything queued in one call (Shop.match_texts: one embedding call, one catalog
lookup), then whatever queued meanwhile, until the queue is empty. Requests wait on the
event loop rather than each holding a pool thread, so they reach the queue while a batch
runs, and the batches grow with the load."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from ..retrieval.batch import TextQuery
from .guard import ServedShop

Waiting = tuple[TextQuery, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class SearchBatcher:
    def __init__(self, served: ServedShop) -> None:
        self.served = served
        self._queued: list[Waiting] = []
        self._draining = False
        self._queue_lock = threading.Lock()

    async def search(self, query: TextQuery) -> Any:
        """The MatchResult of `query`, answered alone or with the others queued with it."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        with self._queue_lock:
            self._queued.append((query, answer, loop))
            start, self._draining = not self._draining, True
        if start:  # on the loop's pool: a thread reused, not one started per burst
            loop.run_in_executor(None, self._drain)
        return await answer

    def _drain(self) -> None:
        batch: list[Waiting] = []
        try:
            while True:
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                    if not batch:
                        self._draining = False
                        return
                try:
                    with self.served.using() as shop:
                        outcomes = self._answer(shop, [query for query, _, _ in batch])
                except Exception as exc:  # no Shop to answer with (e.g. a reload failed)
                    outcomes = [(False, exc)] * len(batch)
                _settle_all(batch, outcomes)
        except BaseException as exc:  # never leave a search waiting, nor the flag set
            with self._queue_lock:
                left, self._queued, self._draining = self._queued, [], False
            failed = RuntimeError(f"the search failed: {exc}")
            _settle_all(batch + left, [(False, failed)] * (len(batch) + len(left)))
            raise

    @staticmethod
    def _answer(shop: Any, queries: list[TextQuery]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, error) for each query."""
        try:
            return [(True, result) for result in shop.match_texts(queries)]
        except Exception:  # one query's error must not fail the others: each alone
            outcomes: list[tuple[bool, Any]] = []
            for query in queries:
                try:
                    outcomes.append((True, shop.match_texts([query])[0]))
                except Exception as exc:
                    outcomes.append((False, exc))
            return outcomes


def _settle_all(waiting: list[Waiting], outcomes: list[tuple[bool, Any]]) -> None:
    """Hand each outcome to its request's event loop (skipped once the server stopped)."""
    for (_, answer, loop), (ok, value) in zip(waiting, outcomes, strict=True):
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, answer, ok, value)


def _settle(answer: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if answer.done():  # the client went away, or a failure already answered it
        return
    if ok:
        answer.set_result(value)
    else:
        answer.set_exception(value)
