"""Searches that arrive while the Shop is busy are answered together: each request queues
its query, and whoever gets the Shop next answers everything queued in one call
(Shop.match_texts: one embedding call, one catalog lookup). At concurrency 8 this turns
eight embedding calls into one or two."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from ..retrieval.batch import TextQuery
from .guard import ServedShop


class SearchBatcher:
    def __init__(self, served: ServedShop) -> None:
        self.served = served
        self._queued: list[tuple[TextQuery, Future[Any]]] = []
        self._queue_lock = threading.Lock()

    def search(self, query: TextQuery) -> Any:
        """The MatchResult of `query`, answered alone or with the others queued with it."""
        answer: Future[Any] = Future()
        with self._queue_lock:
            self._queued.append((query, answer))
        with self.served.using() as shop:
            with self._queue_lock:
                batch, self._queued = self._queued, []
            if batch:
                self._answer(shop, batch)
        return answer.result()  # set by this call or by the one that took it

    @staticmethod
    def _answer(shop: Any, batch: list[tuple[TextQuery, Future[Any]]]) -> None:
        try:
            results = shop.match_texts([query for query, _ in batch])
        except Exception:  # one query's error must not fail the others: each alone
            for query, answer in batch:
                try:
                    answer.set_result(shop.match_texts([query])[0])
                except Exception as exc:
                    answer.set_exception(exc)
            return
        for (_, answer), result in zip(batch, results, strict=True):
            answer.set_result(result)
