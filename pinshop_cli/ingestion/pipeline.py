"""`ingest`: catalog -> product embeddings; pins -> detections -> crops -> crop embeddings.

The driver: it normalizes the catalog, plans what is not done yet (plan.py), hands the plan
and the stages (stages.py) to an engine (../engines.py: local threads, or Ray), and commits
each batch's receipt as it comes back: parts listed in the manifests, rejects recorded,
progress advanced. Work is keyed by content hashes, so a killed run resumes where it
stopped and an unchanged re-run does no model work at all.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..detection.crops import PIN_DECODE_SIDE
from ..engines import Engine, Stage, get_engine
from ..errors import DamagedFileError, PinshopError, WorkspaceLockedError
from ..io.catalog import normalize_catalog, refuse_url, rejects_schema, report_delivered
from ..io.history import record_snapshot
from ..io.photo_fetch import PhotoStore
from ..io.pins import check_pins_source, scan_pins
from ..models.recorded import record_embedder, workspace_embedder
from ..progress import NullProgress, Progress
from ..retrieval.updates import ChangeLog, fold_log
from ..workspace.embeddings import repair_stores, store
from ..workspace.integrity import parquet_problem, require_catalog
from ..workspace.layout import Workspace
from ..workspace.parts import MANIFEST, PartStore
from ..workspace.storage import (
    query_arrow,
    sql_path,
    write_parquet,
)
from . import shared_photos as shared
from .config import IngestConfig, IngestSummary
from .pin_rows import consolidate_detections, duplicates_of_earlier, pins_table, with_rejects
from .plan import pending_pins, pending_products
from .stages import (
    DecodeImages,
    DetectAndCrop,
    EmbedImages,
    EmbedTexts,
    NameColors,
    WriteColors,
    WriteParts,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from ..models import Detector, Embedder


class _Run:
    """One ingest run's driver state: the workspace, the config, the counters."""

    def __init__(self, ws: Workspace, config: IngestConfig, progress: Progress,
                 engine: Engine) -> None:
        self.ws, self.config, self.progress, self.engine = ws, config, progress, engine
        self.summary = IngestSummary(str(ws.root), engine=config.engine)
        self.image_rejects: list[dict[str, Any]] = []
        self.catalog_written = self.recoloured = False
        self.photo_rejects: pa.Table | None = None  # this run's unfetched photo URLs
        self._embedder: Embedder | None = None
        self.stage_runtimes: set[str] = set()  # "image: onnx", ... as the stages reported

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = workspace_embedder(self.ws, self.config.embedder,
                                                self.config.models_dir, self.config.runtime,
                                                self.config.device)
            record_embedder(self.ws, self._embedder)
            self.summary.embedder = f"{self._embedder.image_model_id} / " \
                                    f"{self._embedder.text_model_id}"
            if self._embedder.note:
                self.summary.notes.append(self._embedder.note)
                self.progress.note(self._embedder.note)
            if exports := self._embedder.exports_to_make():  # said now: only a wait follows
                self.progress.note(f"first use of {' and '.join(exports)}: exporting to ONNX "
                                   "Runtime and checking it against torch, once (about 30 s "
                                   "a model); later runs load the export")
        return self._embedder

    def note(self, message: str) -> None:
        self.summary.notes.append(message)
        self.progress.note(message)

    def timed(self, stage: str, started: float) -> None:
        self.summary.seconds[stage] = round(self.summary.seconds.get(stage, 0.0)
                                            + time.perf_counter() - started, 3)

    def embed_stage(self, model_id: str, factory: type) -> Stage:
        return Stage(factory, {"embedder": self.embedder.source,
                               "models_dir": self.config.models_dir, "expect": model_id,
                               "runtime": self.config.runtime, "device": self.config.device},
                     model=True)

    def execute(self, plan: pa.Table, stages: list[Stage], batch_size: int) -> dict[str, list]:
        """Run `stages` over `plan` on the configured engine, committing each receipt as it
        arrives; returns the rejects (id, reason, path) the stages reported."""
        rejects: dict[str, list] = {"id": [], "reason": [], "path": []}
        for receipts in self.engine.stream(plan, stages,
                                           self.config.engine_options(batch_size)):
            for receipt in receipts.to_pylist():  # one row per batch
                if receipt["part"]:
                    store(self.ws, receipt["kind"]).commit(receipt["part"], receipt["rows"])
                    self.summary.embedded[receipt["kind"]] = (
                        self.summary.embedded.get(receipt["kind"], 0) + receipt["rows"])
                if receipt["side_part"]:  # after the vectors: detections mark pins done
                    side = (self.ws.detection_parts_dir if receipt["kind"] == "crop"
                            else self.ws.color_parts_dir)
                    PartStore(side).commit(receipt["side_part"], receipt["rows"])
                for node in receipt["nodes"]:
                    self.summary.nodes[node] = self.summary.nodes.get(node, 0) + 1
                self.stage_runtimes.update(receipt["runtimes"])
                for column in rejects:
                    rejects[column].extend(receipt[f"reject_{column}s"])
                self.progress.advance(receipt["items"])
        return rejects

    # -- catalog ---------------------------------------------------------------------------
    def catalog(self, path: Path) -> None:
        started = time.perf_counter()
        refuse_url(path)  # before "reading catalog http:/host/...", with one slash lost
        self.progress.note(f"reading catalog {path}")
        photos = PhotoStore(self.ws.root / "photos", progress=self.progress)
        loaded = normalize_catalog(path, self.ws.catalog, self.ws.rejects_dir / "catalog.parquet",
                                   self.config.max_pixels, photos)
        self.catalog_written = True
        history = record_snapshot(self.ws.root, self.ws.catalog, _utc_now())
        loaded.notes.append(f"price history: {history} new or changed "
                            f"row{'' if history == 1 else 's'}")
        self.photo_rejects = loaded.photo_rejects
        if loaded.photo_rejects is not None and loaded.photo_rejects.num_rows:
            loaded.notes.append(f"{loaded.photo_rejects.num_rows} photo URLs not fetched: the "
                                "products stay, text-only (see rejects_product_images)")
        self.summary.rows_ok, self.summary.rows_rejected = loaded.rows_ok, loaded.rows_rejected
        self.summary.rows_added, self.summary.rows_removed, self.summary.rows_changed = (
            loaded.rows_added, loaded.rows_removed, loaded.rows_changed)
        if loaded.rows_removed or loaded.rows_changed:
            loaded.notes.append(f"catalog rows since the last ingest: {loaded.rows_added} "
                                f"added, {loaded.rows_removed} removed, "
                                f"{loaded.rows_changed} changed")
        for message in loaded.notes:
            self.summary.notes.append(message)
            self.progress.note(message)
        self.timed("catalog", started)

    def product_images(self) -> None:
        started = time.perf_counter()
        model_id = self.embedder.image_model_id
        plan, total = pending_products(self.ws, "product_image", model_id)
        self.summary.already_done["product_image"] = total - plan.num_rows
        # A photo embedded before (for another product) is copied; the rest once each.
        leaders, followers = shared.split_shared(shared.copy_shared(self.ws, model_id, plan))
        self.summary.embedded["product_image"] = 0
        self.progress.start("product images", leaders.num_rows)
        # 2x the model input: headroom for a good-quality resize.
        decode = Stage(DecodeImages, {"max_pixels": self.config.max_pixels,
                                      "min_side": 2 * self.embedder.input_size})
        write = Stage(WriteParts, {"workspace": str(self.ws.root), "kind": "product_image",
                                   "model_id": model_id})
        stages = [decode, Stage(NameColors, {}), self.embed_stage(model_id, EmbedImages), write]
        rejects = self.execute(leaders, stages, self.config.batch_size)
        embedded = leaders.num_rows
        left = shared.copy_shared(self.ws, model_id, followers)  # their photo's was refused
        # ... at its first product's path, the file changed since the check: the same bytes
        # at another path are tried, until one is embedded or no other path is left.
        refused = shared.refused_leaders(leaders, rejects["id"])
        while (retry := shared.worth_retrying(left, refused)).num_rows:
            leaders, _ = shared.split_shared(retry)
            self.progress.note(f"{leaders.num_rows} refused photo"
                               f"{'s' if leaders.num_rows > 1 else ''} tried at another path")
            more = self.execute(leaders, stages, self.config.batch_size)
            for column, values in more.items():
                rejects[column] += values
            embedded += leaders.num_rows
            refused = shared.refused_leaders(leaders, more["id"], refused)
            left = shared.copy_shared(self.ws, model_id, shared.leave_out(left, leaders))
        copied = plan.num_rows - embedded - left.num_rows
        if copied:
            self.summary.embedded["product_image"] += copied
            self.note(f"{copied} product photo{'s' if copied > 1 else ''} shared with "
                      "another product: the vector copied, not embedded again")
        for pid, reason, image in zip(rejects["id"] + left.column("id").to_pylist(),
                                      rejects["reason"] + ["its photo, shared with another "
                                                           "product, was refused"] * len(left),
                                      rejects["path"] + left.column("path").to_pylist(),
                                      strict=True):  # e.g. the file changed since the check
            self.image_rejects.append({"source": "product images", "line": None, "id": pid,
                                       "reason": reason, "raw": image})
        # Photos embedded before whose colours were named under older rules: named again.
        if (stale := shared.stale_colours(self.ws, model_id)).num_rows:
            self.progress.start("photo colours, named again", stale.num_rows)
            unread = self.execute(stale, [decode, Stage(NameColors, {}), Stage(
                WriteColors, {"workspace": str(self.ws.root)})], self.config.batch_size)
            named = stale.num_rows - len(unread["id"])
            self.recoloured = named > 0
            self.note(f"{named} product photo colours named again: the colour-naming rules "
                      "changed (the photos were not embedded again)" + (
                          f"; {len(unread['id'])} photos could not be read, first "
                          f"{unread['id'][0]}: {unread['reason'][0]}" if unread["id"] else ""))
        self.timed("product images", started)

    def product_texts(self) -> None:
        started = time.perf_counter()
        model_id = self.embedder.text_model_id
        plan, total = pending_products(self.ws, "product_text", model_id)
        self.summary.already_done["product_text"] = total - plan.num_rows
        self.summary.embedded["product_text"] = 0
        self.progress.start("product texts", plan.num_rows)
        write = Stage(WriteParts, {"workspace": str(self.ws.root), "kind": "product_text",
                                   "model_id": model_id})
        self.execute(plan, [self.embed_stage(model_id, EmbedTexts), write],
                     self.config.text_batch_size)
        self.timed("product texts", started)

    # -- pins --------------------------------------------------------------------------------
    def pins(self, source: Path, detector: Detector) -> None:
        started = time.perf_counter()
        self.progress.note(f"scanning pins in {source}")
        scanned = pins_table(scan_pins(source, self.config.max_pixels))
        problem = parquet_problem(self.ws.pins) if self.ws.pins.exists() else None
        if self.ws.pins.exists() and problem is None and not self.config.replace_pins:
            scanned = duplicates_of_earlier(self.ws.pins, scanned)  # before any model work
        plan = pending_pins(self.ws, detector.model_id, scanned)
        ok = scanned.filter(_eq(scanned, "status", "ok")).num_rows
        self.summary.already_done["crop"] = ok - plan.num_rows
        self.summary.embedded["crop"] = 0
        self.timed("scan pins", started)
        started = time.perf_counter()
        self.progress.start("pins", plan.num_rows)
        model_id = self.embedder.image_model_id
        stages = [
            Stage(DecodeImages, {"max_pixels": self.config.max_pixels,
                                 "min_side": PIN_DECODE_SIDE}),
            Stage(DetectAndCrop, {"detector": self.config.detector,
                                  "workspace": str(self.ws.root),
                                  "embedder": self.embedder.source,
                                  "runtime": self.config.runtime,
                                  "device": self.config.device,
                                  "models_dir": self.config.models_dir,
                                  "min_score": self.config.min_score,
                                  "expect": detector.model_id}, model=True),
            Stage(NameColors, {}),
            self.embed_stage(model_id, EmbedImages),
            Stage(WriteParts, {"workspace": str(self.ws.root), "kind": "crop",
                               "model_id": model_id}),
        ]
        rejects = self.execute(plan, stages, self.config.batch_size)
        pins = with_rejects(scanned, rejects["id"], rejects["reason"])
        if problem:
            self.note(f"{self.ws.pins} was damaged ({problem}): rewritten from this run's "
                      "pins (pins of earlier runs not scanned again are left out)")
        self.summary.pins_ok = pins.filter(_eq(pins, "status", "ok")).num_rows
        self.summary.pins_rejected = pins.num_rows - self.summary.pins_ok
        if self.config.replace_pins and self.ws.pins.exists() and problem is None:
            self.summary.pins_removed = int(query_arrow(
                f"SELECT count(*) AS n FROM read_parquet({sql_path(self.ws.pins)}) ANTI JOIN "
                "new USING (path)", tables={"new": pins}).column("n")[0].as_py())
        elif self.ws.pins.exists() and problem is None:
            # Earlier runs' pins stay; a path scanned again takes this run's row.
            pins = query_arrow(
                f"SELECT * FROM read_parquet({sql_path(self.ws.pins)}) ANTI JOIN new USING "
                "(path) UNION ALL BY NAME SELECT * FROM new ORDER BY path",
                tables={"new": pins}).cast(pins.schema)
        write_parquet(pins, self.ws.pins, checked=True)
        write_parquet(pins.filter(_eq(pins, "status", "rejected")),
                      self.ws.rejects_dir / "pins.parquet")
        self.timed("pins", started)

    def finish(self, detector_id: str | None) -> None:
        if self._embedder is not None:
            # The stages' own word where they ran forwards (Ray workers: the driver's
            # embedder never runs one), else this process's embedder's.
            ran = sorted(label for label in self.stage_runtimes
                         if not label.endswith(": unused"))
            self.summary.runtime = ", ".join(ran) or self._embedder.runtime_used
            for message in self._embedder.runtime_notes:
                self.summary.notes.append(message)
                self.progress.note(message)
        if self.image_rejects or self.photo_rejects is not None:
            import pyarrow as pa

            rejects = pa.Table.from_pylist(self.image_rejects, rejects_schema())
            if self.photo_rejects is not None:
                rejects = pa.concat_tables([self.photo_rejects.cast(rejects_schema()), rejects])
            write_parquet(rejects, self.ws.rejects_dir / "product_images.parquet")
            self.summary.rows_rejected += len(self.image_rejects)
        if detector_id is not None:
            self.summary.detections = consolidate_detections(self.ws, detector_id)
        if self.catalog_written or self.recoloured or self.summary.embedded.get(
                "product_image"):
            if not self.catalog_written:  # live changes name this catalog.parquet: first in
                fold_log(self.ws)
            shared.consolidate_colors(self.ws)


def _utc_now() -> datetime:
    """Now as naive UTC, the way the workspace stores timestamps."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _eq(table: pa.Table, column: str, value: str) -> Any:
    import pyarrow.compute as pc

    return pc.equal(table.column(column), value)


def ingest(workspace: str | Path | None = None, catalog: str | Path | None = None,
           pins: str | Path | None = None, config: IngestConfig | None = None,
           progress: Progress | None = None) -> IngestSummary:
    """Ingest a catalog and/or a folder of pins into a workspace (created if needed)."""
    if catalog is None and pins is None:
        raise PinshopError("nothing to ingest: pass a CATALOG file and/or --pins DIR")
    if pins is not None:  # a mistyped folder: said before any work on the workspace
        check_pins_source(Path(pins))
    config = config or IngestConfig()
    engine = get_engine(config.engine, config.ray_address)  # before the workspace is made
    progress = progress or NullProgress()
    fresh = not Workspace.where(workspace).exists()
    ws = Workspace.open(workspace, create=True)
    try:
        return _ingest(ws, catalog, pins, config, progress, engine)
    except PinshopError as exc:  # a lock refusal: another writer's workspace, maybe new too
        if fresh and not isinstance(exc, WorkspaceLockedError):
            _remove_skeleton(ws)
        raise


def _remove_skeleton(ws: Workspace) -> None:
    """A refused first ingest's workspace, unless it holds anything to resume from (fetched
    photos, embedded parts) or another writer has it now."""
    with contextlib.suppress(WorkspaceLockedError), ws.lock(sweep=False):
        made = (p for p in ws.root.rglob("*") if p.is_file() and p.parent != ws.rejects_dir
                and p.name not in (".lock", MANIFEST))  # parts' lists, not parts
        if next(made, None) is None:
            shutil.rmtree(ws.root, ignore_errors=True)


def _ingest(ws: Workspace, catalog: str | Path | None, pins: str | Path | None,
            config: IngestConfig, progress: Progress, engine: Engine) -> IngestSummary:
    from ..detection.choose import choose_detector
    from ..detection.products import ProductPhotos, catalog_categories

    with ws.lock(), engine.session():
        run = _Run(ws, config, progress, engine)
        # Pins hold two models at once (detector, embedder): --workers must fit them now,
        # not after the products are embedded.
        engine.check_workers(2 if pins is not None else 1, config.workers)
        # Lost or damaged parts: dropped now, so the plans below embed their rows again.
        writing = ("product_image", "product_text", *(("crop",) if pins is not None else ()))
        for message in repair_stores(ws, writing=writing):
            run.note(message)
        try:
            ws.settings()
        except DamagedFileError as exc:
            run.note(f"{exc.path} was damaged ({exc.reason}): recorded again from this run")
        detector_id = None
        try:
            if catalog is not None:
                # Live changes a server logged (and maybe could not fold: killed) reach
                # the price history before the new catalog replaces the one they name;
                # a damaged catalog has nothing to fold into, and the feed is the newer word.
                if ws.catalog.exists() and parquet_problem(ws.catalog) is None:
                    fold_log(ws)
                else:
                    ChangeLog(ws).clear()
                run.catalog(Path(catalog))
            elif not ws.catalog.exists():
                raise PinshopError("no catalog yet: pass a CATALOG file with the first ingest")
            else:
                require_catalog(ws.catalog)
            run.product_images()
            run.product_texts()
            if pins is not None:
                embedder = run.embedder
                detector = choose_detector(
                    config.detector, embedder,
                    lambda: ProductPhotos.from_workspace(ws, embedder.image_model_id),
                    lambda: catalog_categories(ws), config.models_dir, config.min_score,
                    config.device)
                detector_id = run.summary.detector = detector.model_id
                if detector.note:
                    run.summary.notes.append(detector.note)
                    progress.note(detector.note)
                ws.update_settings(detector=detector.model_id)
                run.pins(Path(pins), detector)
        finally:
            run.finish(detector_id)
        if catalog is not None:
            report_delivered(ws.catalog)  # this summary holds the catalog's changes
    return run.summary
