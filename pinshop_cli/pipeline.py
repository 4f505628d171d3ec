"""`ingest`: catalog -> product embeddings; pins -> detections -> crops -> crop embeddings.

Shape (after clip-retrieval): a reader decodes and preprocesses the next batch in threads
while the model runs on the current one; a mapper holds the model; a writer writes one
Parquet part per batch atomically. Work is keyed by content hashes, so a killed run resumes
where it stopped and an unchanged re-run does no model work at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .catalog import Reject, load_catalog, rejects_table
from .detect import PIN_DECODE_SIDE, detect_and_crop
from .embeddings import done_keys, part_key, write_part
from .errors import ModelMismatchError, PinshopError
from .images import DEFAULT_MAX_PIXELS, ImageRejected, decode_scale, load_image
from .pins import PinFile, scan_pins
from .progress import NullProgress, Progress
from .storage import query_arrow, read_parquet, sql_path, write_parquet
from .workspace import Workspace

if TYPE_CHECKING:
    import pyarrow as pa

    from .models import Detector, Embedder

T = TypeVar("T")
R = TypeVar("R")
TEXT_BATCH = 128


@dataclass(frozen=True)
class IngestConfig:
    """Everything a run needs; travels whole (use dataclasses.replace for overrides)."""

    embedder: str = "auto"
    detector: str = "auto"
    batch_size: int = 32
    reader_threads: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_score: float = 0.25
    models_dir: str | None = None


@dataclass
class IngestSummary:
    workspace: str
    embedder: str = ""
    detector: str = ""
    notes: list[str] = field(default_factory=list)
    rows_ok: int = 0
    rows_rejected: int = 0
    pins_ok: int = 0
    pins_rejected: int = 0
    detections: int = 0
    embedded: dict[str, int] = field(default_factory=dict)  # new vectors per kind
    already_done: dict[str, int] = field(default_factory=dict)  # skipped, hash unchanged
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model_work_done(self) -> bool:
        return any(self.embedded.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_work_done": self.model_work_done}


def batched(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def prefetch(batches: Iterable[list[T]], load: Callable[[T], R],
             pool: ThreadPoolExecutor) -> Iterator[tuple[list[T], list[R]]]:
    """Yield (batch, loaded) while the next batch is already loading in `pool`."""
    pending: tuple[list[T], list[Future[R]]] | None = None
    for batch in batches:
        futures = [pool.submit(load, item) for item in batch]
        if pending is not None:
            yield pending[0], [f.result() for f in pending[1]]
        pending = (batch, futures)
    if pending is not None:
        yield pending[0], [f.result() for f in pending[1]]


def _choose_embedder(ws: Workspace, config: IngestConfig) -> Embedder:
    from .models import get_embedder

    recorded = ws.settings().get("embedder")
    if recorded and config.embedder not in ("auto", recorded):
        raise ModelMismatchError(
            f"workspace {ws.root} was built with embedder {recorded!r}; mixing models is "
            f"refused. Use a new workspace (-w) for {config.embedder!r}, or drop --embedder"
        )
    embedder = get_embedder(recorded or config.embedder, config.models_dir)
    ws.update_settings(embedder=embedder.source, image_model_id=embedder.image_model_id,
                       text_model_id=embedder.text_model_id, shared_space=embedder.shared_space)
    return embedder


class _Run:
    """One ingest run's state: the workspace, the config, the counters."""

    def __init__(self, ws: Workspace, config: IngestConfig, progress: Progress) -> None:
        self.ws, self.config, self.progress = ws, config, progress
        self.summary = IngestSummary(str(ws.root))
        self.pool = ThreadPoolExecutor(max_workers=config.reader_threads)
        self.image_rejects: list[Reject] = []
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = _choose_embedder(self.ws, self.config)
            self.summary.embedder = f"{self._embedder.image_model_id} / " \
                                    f"{self._embedder.text_model_id}"
            if self._embedder.note:
                self.summary.notes.append(self._embedder.note)
                self.progress.note(self._embedder.note)
        return self._embedder

    def timed(self, stage: str, started: float) -> None:
        self.summary.seconds[stage] = round(self.summary.seconds.get(stage, 0.0)
                                            + time.perf_counter() - started, 3)

    # -- catalog ---------------------------------------------------------------------------
    def catalog(self, path: Path) -> pa.Table:
        started = time.perf_counter()
        self.progress.note(f"reading catalog {path}")
        loaded = load_catalog(path, self.config.max_pixels)
        write_parquet(loaded.table, self.ws.catalog)
        write_parquet(rejects_table(loaded.rejects), self.ws.rejects_dir / "catalog.parquet")
        self.summary.rows_ok, self.summary.rows_rejected = loaded.rows_ok, len(loaded.rejects)
        self.timed("catalog", started)
        return loaded.table

    def product_images(self, catalog: pa.Table) -> None:
        started = time.perf_counter()
        rows = [r for r in catalog.select(["id", "image", "image_sha256"]).to_pylist()
                if r["image"]]
        model_id = self.embedder.image_model_id
        done = done_keys(self.ws, "product_image", model_id)
        pending = [r for r in rows if (r["id"], r["image_sha256"]) not in done]
        self.summary.already_done["product_image"] = len(rows) - len(pending)
        self.progress.start("product images", len(pending))

        min_side = 2 * self.embedder.input_size  # headroom for a good-quality resize

        def load(row: dict[str, Any]) -> Any:
            try:
                image = load_image(Path(row["image"]), self.config.max_pixels, min_side)
                return self.embedder.preprocess_image(image)
            except ImageRejected as exc:
                return exc

        count = 0
        for batch, tensors in prefetch(batched(pending, self.config.batch_size), load,
                                       self.pool):
            good = [(row, t) for row, t in zip(batch, tensors, strict=True)
                    if not isinstance(t, ImageRejected)]
            for row, t in zip(batch, tensors, strict=True):
                if isinstance(t, ImageRejected):
                    self.image_rejects.append(Reject("product images", 0, str(t), row["id"]))
            if good:
                import torch

                vectors = self.embedder.embed_image_tensors(torch.stack([t for _, t in good]))
                ids = [r["id"] for r, _ in good]
                hashes = [r["image_sha256"] for r, _ in good]
                write_part(self.ws, "product_image", model_id, ids, hashes, vectors,
                           part_key(model_id, *(i + h for i, h in zip(ids, hashes,
                                                                      strict=True))))
                count += len(good)
            self.progress.advance(len(batch))
        self.summary.embedded["product_image"] = count
        self.timed("product images", started)

    def product_texts(self, catalog: pa.Table) -> None:
        started = time.perf_counter()
        rows = catalog.select(["id", "text", "text_hash"]).to_pylist()
        model_id = self.embedder.text_model_id
        done = done_keys(self.ws, "product_text", model_id)
        pending = [r for r in rows if (r["id"], r["text_hash"]) not in done]
        self.summary.already_done["product_text"] = len(rows) - len(pending)
        self.progress.start("product texts", len(pending))
        for batch in batched(pending, TEXT_BATCH):
            vectors = self.embedder.embed_texts([r["text"] for r in batch])
            ids, hashes = [r["id"] for r in batch], [r["text_hash"] for r in batch]
            write_part(self.ws, "product_text", model_id, ids, hashes, vectors,
                       part_key(model_id, *(i + h for i, h in zip(ids, hashes, strict=True))))
            self.progress.advance(len(batch))
        self.summary.embedded["product_text"] = len(pending)
        self.timed("product texts", started)

    # -- pins --------------------------------------------------------------------------------
    def pins(self, source: Path, detector: Detector) -> None:
        started = time.perf_counter()
        self.progress.note(f"scanning pins in {source}")
        pins = scan_pins(source, self.config.max_pixels)
        ok = [p for p in pins if p.status == "ok"]
        done = _detected_pin_ids(self.ws, detector.model_id)
        pending = [p for p in ok if p.pin_id not in done]
        self.summary.already_done["crop"] = len(ok) - len(pending)
        self.timed("scan pins", started)
        started = time.perf_counter()
        self.progress.start("pins", len(pending))

        def load(pin: PinFile) -> Any:
            try:
                return load_image(Path(pin.path), self.config.max_pixels, PIN_DECODE_SIDE)
            except ImageRejected as exc:
                return exc

        crops = 0
        for batch, images in prefetch(batched(pending, self.config.batch_size), load, self.pool):
            good = []
            for pin, image in zip(batch, images, strict=True):
                if isinstance(image, ImageRejected):
                    pin.status, pin.reason = "rejected", str(image)
                else:
                    good.append((pin, image))
            if good:
                crops += self._detect_batch(good, detector)
            self.progress.advance(len(batch))
        self.summary.embedded["crop"] = crops
        pins_table = _pins_table(pins)
        write_parquet(pins_table, self.ws.pins)
        write_parquet(pins_table.filter(_eq(pins_table, "status", "rejected")),
                      self.ws.rejects_dir / "pins.parquet")
        self.summary.pins_ok = sum(p.status == "ok" for p in pins)
        self.summary.pins_rejected = len(pins) - self.summary.pins_ok
        self.timed("pins", started)

    def _detect_batch(self, good: list[tuple[PinFile, Any]], detector: Detector) -> int:
        import torch

        images = [image for _, image in good]
        regions = detect_and_crop(detector, images)
        rows: list[dict[str, Any]] = []
        tensors, ids, hashes = [], [], []
        for (pin, image), pin_regions in zip(good, regions, strict=True):
            scale = decode_scale(image)
            for number, (detection, crop) in enumerate(pin_regions):
                det_id = f"{pin.pin_id}-{detector.model_id}-{number}"
                x1, y1, x2, y2 = (v * scale for v in detection.box)
                rows.append({"det_id": det_id, "pin_id": pin.pin_id, "path": pin.path,
                             "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                             "class_name": detection.class_name,
                             "category": detection.category or None,
                             "score": detection.score, "detector": detector.model_id,
                             "fallback": detector.is_fallback})
                tensors.append(self.embedder.preprocess_image(crop))
                ids.append(det_id)
                hashes.append(pin.sha256)
        model_id = self.embedder.image_model_id
        key = part_key(detector.model_id, model_id, *(p.pin_id for p, _ in good))
        vectors = self.embedder.embed_image_tensors(torch.stack(tensors))
        write_part(self.ws, "crop", model_id, ids, hashes, vectors, key)
        # The detections part lands last: it is the marker that this batch is done.
        write_parquet(_detections_table(rows), self.ws.detection_parts_dir / f"{key}.parquet")
        return len(rows)

    def finish(self, detector_id: str | None) -> None:
        if self.image_rejects:
            write_parquet(rejects_table(self.image_rejects),
                          self.ws.rejects_dir / "product_images.parquet")
            self.summary.rows_rejected += len(self.image_rejects)
        if detector_id is not None:
            self.summary.detections = consolidate_detections(self.ws, detector_id)
        self.pool.shutdown()


def _eq(table: pa.Table, column: str, value: str) -> Any:
    import pyarrow.compute as pc

    return pc.equal(table.column(column), value)


def _pins_table(pins: list[PinFile]) -> pa.Table:
    import pyarrow as pa

    schema = pa.schema([("pin_id", pa.string()), ("path", pa.string()),
                        ("sha256", pa.string()), ("bytes", pa.int64()), ("width", pa.int32()),
                        ("height", pa.int32()), ("status", pa.string()), ("reason", pa.string())])
    return pa.Table.from_pylist([asdict(p) for p in pins], schema)


def _detections_table(rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    schema = pa.schema([
        ("det_id", pa.string()), ("pin_id", pa.string()), ("path", pa.string()),
        ("x1", pa.float32()), ("y1", pa.float32()), ("x2", pa.float32()), ("y2", pa.float32()),
        ("class_name", pa.string()), ("category", pa.string()), ("score", pa.float32()),
        ("detector", pa.string()), ("fallback", pa.bool_()),
    ])
    return pa.Table.from_pylist(rows, schema)


def _detected_pin_ids(ws: Workspace, detector_id: str) -> set[str]:
    import pyarrow.parquet as pq

    done: set[str] = set()
    for part in sorted(ws.detection_parts_dir.glob("*.parquet")):
        table = pq.read_table(part, columns=["pin_id", "detector"])
        done.update(p for p, d in zip(table.column("pin_id").to_pylist(),
                                      table.column("detector").to_pylist(), strict=True)
                    if d == detector_id)
    return done


def consolidate_detections(ws: Workspace, detector_id: str) -> int:
    """detections.parquet = the committed per-batch parts for the current pins and detector."""
    parts = sorted(ws.detection_parts_dir.glob("*.parquet"))
    pins = read_parquet(ws.pins)
    if not parts or pins is None:
        return 0
    files = ", ".join(sql_path(p) for p in parts)
    table = query_arrow(
        f"SELECT d.* FROM read_parquet([{files}]) d "
        "JOIN pins p ON p.pin_id = d.pin_id AND p.status = 'ok' "
        "WHERE d.detector = $detector "
        "QUALIFY row_number() OVER (PARTITION BY d.det_id) = 1 ORDER BY d.pin_id, d.det_id",
        {"detector": detector_id}, tables={"pins": pins},
    )
    write_parquet(table, ws.detections)
    return int(table.num_rows)


def ingest(workspace: str | Path | None = None, catalog: str | Path | None = None,
           pins: str | Path | None = None, config: IngestConfig | None = None,
           progress: Progress | None = None) -> IngestSummary:
    """Ingest a catalog and/or a folder of pins into a workspace (created if needed)."""
    from .models import get_detector

    if catalog is None and pins is None:
        raise PinshopError("nothing to ingest: pass a CATALOG file and/or --pins DIR")
    config = config or IngestConfig()
    progress = progress or NullProgress()
    ws = Workspace.open(workspace, create=True)
    with ws.lock():
        run = _Run(ws, config, progress)
        detector_id = None
        try:
            if catalog is not None:
                table = run.catalog(Path(catalog))
            elif (existing := read_parquet(ws.catalog)) is not None:
                table = existing
            else:
                raise PinshopError("no catalog yet: pass a CATALOG file with the first ingest")
            run.product_images(table)
            run.product_texts(table)
            if pins is not None:
                detector = get_detector(config.detector, config.models_dir, config.min_score)
                detector_id = run.summary.detector = detector.model_id
                if detector.note:
                    run.summary.notes.append(detector.note)
                    progress.note(detector.note)
                ws.update_settings(detector=detector.model_id)
                run.pins(Path(pins), detector)
        finally:
            run.finish(detector_id)
    return run.summary
