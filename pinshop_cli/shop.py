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

A Shop is used by one thread at a time (a server holds a lock around each call), except
`save_update`, which threads call at once (retrieval/updates.py's group commit).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PinshopError, UnknownProductError
from .workspace.layout import Workspace

if TYPE_CHECKING:
    from .assistant.session import ShoppingAssistant
    from .models.base import ChatModel
    from .retrieval.retriever import Retriever
    from .retrieval.store import Product
    from .retrieval.updates import CatalogWriter, ProductChange

log = logging.getLogger("pinshop.shop")


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
        self._saving, self._saving_lock = 0, threading.Lock()  # own writes under way
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
        changes this Shop logged are folded into catalog.parquet first (a failed fold is
        logged and lets go all the same: see `_fold_behind`)."""
        try:
            if self._writer is not None:
                self._fold_behind()
        finally:
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
            self._seen = self.versions()  # before reading: a write after it is noticed
            # (Its catalog store applies the live changes not yet folded.)
            self._retriever = Retriever(self.ws, self.models_dir, runtime=self.runtime,
                                        device=self.device)
        return self._retriever

    @property
    def generation(self) -> int:
        """Changes each time the Retriever is let go of (a conversation moves to the new one)."""
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
        """Let go of the loaded catalog and indexes if another process rewrote them since (the
        next answer loads the new state): True when it did; for `pinshop serve`, before each
        answer. Not for this Shop's own saves (`_own_write`), nor while one is under way."""
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
        from .recommendation.api import refresh_styles

        self._forget()
        built = build_indexes(self.ws.root, **options)
        refresh_styles(self.ws.root, options.get("notes"))  # a kept style cache: refitted
        return built

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
        from .retrieval.store import Product

        rows = self.retriever.rows([product_id])
        if not rows:
            raise UnknownProductError(f"no product {product_id!r} in the catalog")
        return Product.from_row(rows[0])

    def update_product(self, product_id: str, /, **values: Any) -> Product:
        """A live `price`, `sale_price` or `availability` change (retrieval/updates.py):
        in the workspace's change log on return, and in the loaded catalog's answers."""
        self.save_update(self.prepare_update(product_id, **values))
        self.apply_saved()
        return self.product(product_id)

    def prepare_update(self, product_id: str, /, **values: Any) -> ProductChange:
        """The change `values` make to a product of the loaded catalog, checked (a
        PinshopError names a bad value; UnknownProductError when there is no such
        product); nothing is changed yet."""
        from .retrieval.updates import ProductChange

        change = ProductChange.parse(product_id, values)
        rows = self.retriever.rows([product_id])
        if not rows:
            raise UnknownProductError(f"no product {product_id!r} in the catalog")
        change.check_sale(rows[0])
        return change

    def save_update(self, change: ProductChange) -> None:
        """Append `change` to the workspace's change log under the workspace lock; then it
        waits for `apply_saved`. Threads may call this at once (a server does, outside its
        own lock): their changes share one append, in the order they came, and `refresh`
        does not mistake these writes for another process's. When the append fails (e.g.
        WorkspaceLockedError: another process holds the lock) the change is nowhere.
        Past FOLD_AT logged changes a thread folds the log into catalog.parquet in the
        background."""
        from .retrieval.updates import FOLD_AT

        writer = self._catalog_writer()
        writer.save(change)
        if writer.logged() >= FOLD_AT:
            with self._saving_lock:
                if self._folding is not None and self._folding.is_alive():
                    return
                self._folding = threading.Thread(target=self._fold_behind, daemon=True,
                                                 name="pinshop-fold")
                self._folding.start()

    def apply_saved(self) -> list[ProductChange]:
        """Apply every saved change not applied yet to the loaded catalog, in the order the
        log has them (so concurrent changes to one product end the same in memory as on
        disk), and queue their price history rows. Returns them, each with the product's
        tracked columns after it (`state`)."""
        from dataclasses import replace

        if self._writer is None:
            return []
        saved = self._writer.take_saved()
        if not saved:
            return []
        retriever = self.retriever
        for change in saved:
            retriever.apply(change.id, change.assignments)
        rows = {row["id"]: row for row in retriever.rows(sorted({c.id for c in saved}))}
        kept = ("price", "sale_price", "currency", "availability", "title")  # history's
        applied = [replace(change, state={name: rows[change.id].get(name) for name in kept})
                   for change in saved if change.id in rows]
        self._writer.queue_history(applied)
        return applied

    def fold_updates(self) -> None:
        """Rewrite catalog.parquet with the logged live changes, and any still queued, and
        empty the log (what a server does in the background, and when it stops); the loaded
        catalog is kept."""
        self._catalog_writer().fold()

    def _fold_behind(self) -> None:
        """A fold no caller waits for (in the background, on close): a failure is logged;
        the log stays on disk, and whatever loads the catalog next applies it."""
        try:
            self.fold_updates()
        except PinshopError as exc:  # e.g. an ingest holds the lock
            log.warning("live changes not folded into catalog.parquet yet: %s", exc)
        except Exception:  # noqa: BLE001 - a fold nobody waits for must not be lost silently
            log.warning("live changes not folded into catalog.parquet", exc_info=True)

    def _catalog_writer(self) -> CatalogWriter:
        from .retrieval.updates import CatalogWriter

        with self._saving_lock:
            if self._writer is None:
                self._writer = CatalogWriter(self.ws, inside=self._own_write)
            return self._writer

    @contextmanager
    def _own_write(self) -> Iterator[None]:
        """Around each write of this Shop's live changes, under the workspace lock: if no
        other process wrote since this Shop last looked (an ingest between two saves
        included), `refresh` keeps what is loaded across the write; else it reloads."""
        with self._saving_lock:
            self._saving += 1
            ours = self.versions() == self._seen
        try:
            yield
        finally:
            with self._saving_lock:
                if ours:
                    self._seen = self.versions()
                self._saving -= 1

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

    def recommend(self, user: str | None = None, config: Any = None, session: Any = None,
                  notes: list[str] | None = None) -> Any:
        """`pinshop recommend --user U [--session FILE]`: that user's recommendations (a
        cold user gets popular items); `session` (a file, an Arrow table or event dicts,
        as the chat and the API hold them) pulls in the neighbours of what is being looked
        at, with or without a user (its ids not in the catalog are said in `notes`). With
        neither, every user's, into recommendations.parquet (returns the row count)."""
        from . import recommend, recommend_all

        if user is None and session is None:
            return recommend_all(self.ws.root, config)
        return recommend(self.ws.root, user, config, session, notes)

    def evaluate(self, cut: Any = None, config: Any = None, progress: Any = None) -> Any:
        """`pinshop recommend --evaluate`: an Evaluation."""
        from . import evaluate

        return evaluate(self.ws.root, cut, config, progress)

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

        workspace = self.ws  # a missing workspace is said before a missing model
        key = (model, n_ctx, threads)
        if key not in self._chat_models:
            self._chat_models[key] = get_chat_model(model, self.models_dir, n_ctx=n_ctx,
                                                    n_threads=threads, progress=progress,
                                                    device=self.device)
        return ShoppingAssistant(workspace, self._chat_models[key], models_dir=self.models_dir,
                                 retriever=self.retriever, runtime=self.runtime, user=user)

    def changes(self, since: str | None = None, limit: int | None = None) -> Any:
        """`pinshop changes`: the Changes (drops, rises, back in stock, sold out, removed,
        back in the feed) since a date, else in the last snapshot; at most `limit`."""
        from .io.history import changes

        return changes(self.ws.root, since, limit)

    def sql(self, query: str, allow_writes: bool = False, **options: Any) -> Any:
        """`pinshop sql`: a QueryResult (options: timeout, memory_limit, max_rows)."""
        from .sql import run_sql

        return run_sql(query, self.ws.root, allow_writes=allow_writes, **options)


def open(workspace: str | Path | None = None, models_dir: str | None = None,  # noqa: A001
         runtime: str = "auto", device: str = "auto") -> Shop:
    """The Shop of `workspace` (default $PINSHOP_HOME, else ./pinshop-data)."""
    return Shop(workspace, models_dir, runtime, device)
