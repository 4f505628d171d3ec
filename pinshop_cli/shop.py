"""The front door: one workspace with its catalog, indexes and models, loaded once.

    import pinshop_cli

    with pinshop_cli.open("shop") as shop:
        shop.ingest("catalog.csv", pins="photos/")
        shop.index()
        found = shop.match(["room.jpg"], top_k=3)
        picks = shop.recommend(user="u1")
        session = shop.chat()
        print(session.ask("a green sofa under 1500").answer)

A `Shop` is what every command is a skin over, and what `pinshop serve` keeps warm: its
Retriever (catalog store, indexes, prepared filters, region detector) and its models load on
first use and stay loaded; a write (`ingest`, `index`, `ingest_events`, `tune`) lets go of
what it changed, so the next answer reads the new state. Methods are named like the
commands and take the same options; the free functions of the same names (`pinshop_cli.
match(..., workspace=...)`) do one call each on a temporary Shop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .workspace.layout import Workspace

if TYPE_CHECKING:
    from .assistant.session import ShoppingAssistant
    from .models.base import ChatModel
    from .retrieval.retriever import Retriever
    from .retrieval.store import Product
    from .retrieval.updates import CatalogWriter, ProductChange


class Shop:
    def __init__(self, workspace: str | Path | None = None, models_dir: str | None = None,
                 runtime: str = "auto", device: str = "auto") -> None:
        """`workspace` need not exist yet: an empty or new directory is a workspace to
        ingest into (answers need one that has been ingested; nothing is created until a
        write). `device` (auto, cpu, cuda, cuda:N) is where its models run."""
        self.path = workspace
        self.models_dir, self.runtime, self.device = models_dir, runtime, device
        if device not in ("auto", "cpu"):  # a GPU asked for by name must be there: say so now
            from .models.device import resolve_device

            resolve_device(device)
        self._retriever: Retriever | None = None
        self._seen: tuple[tuple[str, int, int], ...] = ()  # what it was loaded from
        self._writer: CatalogWriter | None = None
        self._saving, self._saving_lock = 0, threading.Lock()  # save_update calls running
        self._own_writes_only = True
        self._folding: threading.Thread | None = None
        self._chat_models: dict[tuple[str, int, int | None], ChatModel] = {}

    @property
    def ws(self) -> Workspace:
        """The workspace directory (an error naming `pinshop ingest` if there is none)."""
        return Workspace.open(self.path)

    # -- lifetime --------------------------------------------------------------------------
    def __enter__(self) -> Shop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the catalog, the index generations held and the chat workers; live
        changes this Shop logged are folded into catalog.parquet first."""
        if self._writer is not None:
            from .errors import PinshopError

            try:
                self.fold_updates()
            except PinshopError:  # e.g. an ingest holds the lock: the log stays, and the
                pass  # next Shop to load the catalog applies it
        self._forget()
        for model in self._chat_models.values():
            model.close()
        self._chat_models.clear()

    def _forget(self) -> None:
        if self._retriever is not None:
            self._retriever.close()
            self._retriever = None

    @property
    def retriever(self) -> Retriever:
        """The workspace's Retriever, loaded on first use and kept."""
        from .retrieval.retriever import Retriever

        if self._retriever is None:
            from .retrieval.updates import ChangeLog, apply_pending

            self._seen = self.versions()
            retriever = Retriever(self.ws, self.models_dir, runtime=self.runtime,
                                  device=self.device)
            # Live changes not yet folded into catalog.parquet (retrieval/updates.py).
            apply_pending(retriever.store.con, ChangeLog(retriever.ws).pending())
            self._retriever = retriever
        return self._retriever

    @property
    def generation(self) -> int:
        """Changes each time the Retriever is let go of (a conversation holding the old one
        must move to the new one)."""
        return id(self._retriever)

    def versions(self) -> tuple[tuple[str, int, int], ...]:
        """(name, size, mtime) of the catalog, the live-change log and the index manifests:
        what a write by another process (ingest, index, a PATCH) changes. A few stat calls."""
        from .retrieval.updates import LOG_DIR
        from .workspace.parts import MANIFEST

        ws = self.ws
        paths = [ws.catalog, ws.root / LOG_DIR / MANIFEST,
                 *sorted(ws.indexes_dir.glob("*.json"))]
        found = []
        for path in paths:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found.append((path.name, stat.st_size, stat.st_mtime_ns))
        return tuple(found)

    def refresh(self) -> bool:
        """Let go of the loaded catalog and indexes if another process rewrote them since
        (the next answer loads the new state): True when it did. For a long-lived Shop,
        e.g. `pinshop serve`, before each answer."""
        if self._retriever is None or self._saving or self.versions() == self._seen:
            return False
        self._forget()
        return True

    # -- writers ---------------------------------------------------------------------------
    def ingest(self, catalog: str | Path | None = None, pins: str | Path | None = None,
               config: Any = None, progress: Any = None) -> Any:
        """`pinshop ingest`: an IngestSummary (config: ingestion.pipeline.IngestConfig)."""
        from .ingestion.config import IngestConfig
        from .ingestion.pipeline import ingest

        self._forget()
        config = config or IngestConfig(runtime=self.runtime, models_dir=self.models_dir,
                                        device=self.device)
        return ingest(self.path, catalog, pins, config, progress)

    def index(self, **options: Any) -> Any:
        """`pinshop index`: the manifests built or updated (options as build_indexes)."""
        from .index.hnsw import build_indexes

        self._forget()
        return build_indexes(self.ws.root, **options)

    def ingest_events(self, path: str | Path) -> Any:
        """`pinshop ingest-events`: an EventsSummary."""
        from .io.events import ingest_events

        return ingest_events(path, self.ws.root)

    # -- answers ---------------------------------------------------------------------------
    def match(self, images: Sequence[str | Path] = (), text: str | None = None,
              **options: Any) -> Any:
        """`pinshop match`: a MatchResult (options: top_k, category, max_price, color,
        detector, rebuild)."""
        from .retrieval.match import match

        rebuild = options.pop("rebuild", False)
        retriever = self.retriever
        if rebuild:  # an explicit request to bring stale indexes up to date first
            self._forget()
            from .retrieval.retriever import Retriever

            retriever = Retriever(self.ws, self.models_dir, rebuild=True, runtime=self.runtime,
                                  device=self.device)
            try:
                return match(images, text, retriever=retriever, models_dir=self.models_dir,
                             **options)
            finally:
                retriever.close()
        return match(images, text, retriever=retriever, models_dir=self.models_dir, **options)

    def match_texts(self, queries: list[Any]) -> list[Any]:
        """`match --text` for several queries at once (retrieval/batch.py TextQuery each):
        one embedding call and one catalog lookup for all; a MatchResult per query."""
        from .retrieval.batch import match_texts

        return match_texts(self.retriever, queries)

    def product(self, product_id: str) -> Product:
        """One catalog product (a PinshopError when there is none)."""
        from .errors import UnknownProductError
        from .retrieval.store import Product

        rows = self.retriever.rows([product_id])
        if not rows:
            raise UnknownProductError(f"no product {product_id!r} in the catalog")
        return Product.from_row(rows[0])

    def update_product(self, product_id: str, **values: Any) -> Product:
        """A live `price`, `sale_price` or `availability` change (retrieval/updates.py):
        the loaded catalog answers with it at once, and catalog.parquet has it on return."""
        self.save_update(self.apply_update(product_id, **values))
        return self.product(product_id)

    def apply_update(self, product_id: str, **values: Any) -> ProductChange:
        """The first half of `update_product`: the loaded catalog answers with the change
        (returned with the product's new price and stock, for the price history)."""
        from dataclasses import replace

        from .errors import UnknownProductError
        from .retrieval.updates import ProductChange

        change = ProductChange.parse(product_id, values)
        if not self.retriever.apply(product_id, change.assignments):
            raise UnknownProductError(f"no product {product_id!r} in the catalog")
        row = self.retriever.rows([product_id])[0]
        tracked = ("price", "sale_price", "currency", "availability")
        return replace(change, state={name: row.get(name) for name in tracked})

    def save_update(self, change: ProductChange) -> None:
        """The second half: `change` appended to the workspace's change log (and the price
        history) under the workspace lock. Threads may call it at once (a server does,
        outside its own lock): their changes share one append, and `refresh` does not
        mistake these writes for another process's. Past FOLD_AT logged changes a thread
        folds the log into catalog.parquet in the background."""
        from .retrieval.updates import FOLD_AT, CatalogWriter

        with self._saving_lock:
            if self._writer is None:
                self._writer = CatalogWriter(self.ws)
            writer = self._writer
        with self._own_write():
            writer.commit(change)
            fold = writer.logged() >= FOLD_AT
        if fold:
            with self._saving_lock:
                if self._folding is not None and self._folding.is_alive():
                    return
                self._folding = threading.Thread(target=self.fold_updates, daemon=True,
                                                 name="pinshop-fold")
                self._folding.start()

    def fold_updates(self) -> None:
        """Rewrite catalog.parquet with the logged live changes and empty the log (what a
        server does in the background, and when it stops); the loaded catalog is kept."""
        from .retrieval.updates import CatalogWriter

        with self._saving_lock:
            if self._writer is None:
                self._writer = CatalogWriter(self.ws)
            writer = self._writer
        with self._own_write():
            writer.fold()

    @contextmanager
    def _own_write(self) -> Iterator[None]:
        """A write of this Shop's own changes: `refresh` keeps what is loaded across it
        (unless another process wrote too, seen before the first of them began)."""
        with self._saving_lock:
            if not self._saving:
                self._own_writes_only = self.versions() == self._seen
            self._saving += 1
        try:
            yield
        finally:
            with self._saving_lock:
                self._saving -= 1
                if not self._saving and self._own_writes_only:  # keep what is loaded
                    self._seen = self.versions()

    def similar(self, reference: str, **options: Any) -> Any:
        """`pinshop similar`: LookAlikes (options: cheaper, max_price, color, category,
        top_k)."""
        from .look.similar import similar

        return similar(reference, retriever=self.retriever, models_dir=self.models_dir,
                       **options)

    def complete(self, reference: str, **options: Any) -> Any:
        """`pinshop complete`: CompleteTheLook (options: top_k, detector)."""
        from .look.complete import complete

        return complete(reference, retriever=self.retriever, models_dir=self.models_dir,
                        **options)

    def duplicates(self, **options: Any) -> Any:
        """`pinshop duplicates`: DuplicateClusters, written to duplicates.parquet."""
        from .look.duplicates import find_duplicates
        from .retrieval.retriever import Retriever

        strict = Retriever(self.ws, self.models_dir, allow_stale=False, runtime=self.runtime)
        try:
            return find_duplicates(retriever=strict, **options)
        finally:
            strict.close()

    def audit(self, **options: Any) -> Any:
        """`pinshop audit`: an AuditReport, written to audit.parquet."""
        from .look.audit import audit
        from .retrieval.retriever import Retriever

        strict = Retriever(self.ws, self.models_dir, allow_stale=False, runtime=self.runtime)
        try:
            return audit(retriever=strict, **options)
        finally:
            strict.close()

    def recommend(self, user: str | None = None, config: Any = None, session: Any = None
                  ) -> Any:
        """`pinshop recommend --user U [--session FILE]`: that user's recommendations (a
        cold user gets popular items); `session` (a file, an Arrow table or event dicts,
        as the chat and the API hold them) pulls in the neighbours of what is being looked
        at, with or without a user. With neither, every user's, into
        recommendations.parquet (returns the row count)."""
        from . import recommend, recommend_all

        if user is None and session is None:
            return recommend_all(self.ws.root, config)
        return recommend(self.ws.root, user, config, session)

    def evaluate(self, cut: Any = None, config: Any = None) -> Any:
        """`pinshop recommend --evaluate`: an Evaluation."""
        from . import evaluate

        return evaluate(self.ws.root, cut, config)

    def tune(self, config: Any = None) -> Any:
        """`pinshop recommend --tune`: the fitted blend, stored in the workspace."""
        from . import tune

        return tune(self.ws.root, config)

    def chat(self, model: str = "qwen2.5-coder-1.5b", user: str | None = None,
             n_ctx: int = 4096, threads: int | None = None,
             progress: Any = None) -> ShoppingAssistant:
        """`pinshop chat`: a new conversation on this shop's Retriever, with the chat model
        kept warm across conversations."""
        from .assistant.session import ShoppingAssistant
        from .models import get_chat_model

        key = (model, n_ctx, threads)
        if key not in self._chat_models:
            self._chat_models[key] = get_chat_model(model, self.models_dir, n_ctx=n_ctx,
                                                    n_threads=threads, progress=progress,
                                                    device=self.device)
        return ShoppingAssistant(self.ws, self._chat_models[key], models_dir=self.models_dir,
                                 retriever=self.retriever, runtime=self.runtime, user=user)

    def changes(self, since: str | None = None) -> Any:
        """`pinshop changes`: the Changes (price drops and rises, back in stock, sold out)
        since a date, else in the last snapshot."""
        from .io.history import changes

        return changes(self.ws.root, since)

    def sql(self, query: str, allow_writes: bool = False, **options: Any) -> Any:
        """`pinshop sql`: a QueryResult (options: timeout, memory_limit)."""
        from .sql import run_sql

        return run_sql(query, self.ws.root, allow_writes=allow_writes, **options)


def open(workspace: str | Path | None = None, models_dir: str | None = None,  # noqa: A001
         runtime: str = "auto", device: str = "auto") -> Shop:
    """The Shop of `workspace` (default $PINSHOP_HOME, else ./pinshop-data)."""
    return Shop(workspace, models_dir, runtime, device)
