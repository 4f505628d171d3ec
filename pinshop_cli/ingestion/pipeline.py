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

from ..errors import PinshopError
from ..io.catalog import normalize_catalog, rejects_schema
from ..io.images import DEFAULT_MAX_PIXELS, ImageRejected, decode_scale, load_image
from ..io.pins import PinFile, scan_pins
from ..progress import NullProgress, Progress
from ..workspace.embeddings import SOURCE_HASH, part_key, parts_sql, write_part
from ..workspace.layout import Workspace
from ..workspace.models import record_embedder, workspace_embedder
from ..workspace.parts import PartStore
from ..workspace.storage import (
    copy_to_parquet,
    query_arrow,
    rows_version_sql,
    sql_path,
    write_parquet,
)
from .detect import PIN_DECODE_SIDE, detect_and_crop

if TYPE_CHECKING:
    import pyarrow as pa

    from ..models import Detector, Embedder

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
    #: Pins of earlier runs are kept and new ones added; True makes this run's set the only one.
    replace_pins: bool = False


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


def row_batches(table: pa.Table, size: int) -> Iterator[list[dict[str, Any]]]:
    """A table as lists of row dicts, one batch at a time (never the whole table)."""
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size).to_pylist()


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


class _Run:
    """One ingest run's state: the workspace, the config, the counters."""

    def __init__(self, ws: Workspace, config: IngestConfig, progress: Progress) -> None:
        self.ws, self.config, self.progress = ws, config, progress
        self.summary = IngestSummary(str(ws.root))
        self.pool = ThreadPoolExecutor(max_workers=config.reader_threads)
        self.image_rejects: list[dict[str, Any]] = []
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = workspace_embedder(self.ws, self.config.embedder,
                                                self.config.models_dir)
            record_embedder(self.ws, self._embedder)
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
    def catalog(self, path: Path) -> None:
        started = time.perf_counter()
        self.progress.note(f"reading catalog {path}")
        loaded = normalize_catalog(path, self.ws.catalog, self.ws.rejects_dir / "catalog.parquet",
                                   self.config.max_pixels)
        self.summary.rows_ok, self.summary.rows_rejected = loaded.rows_ok, loaded.rows_rejected
        for message in loaded.notes:
            self.summary.notes.append(message)
            self.progress.note(message)
        self.timed("catalog", started)

    def pending(self, kind: str, model_id: str, columns: str) -> tuple[pa.Table, int]:
        """Catalog rows of `kind` not yet embedded by `model_id` (an anti-join in DuckDB),
        and how many are already done."""
        hash_column = SOURCE_HASH[kind]
        rows = (f"SELECT id, {columns}, {hash_column} AS h FROM read_parquet("
                f"{sql_path(self.ws.catalog)}) WHERE {hash_column} IS NOT NULL")
        parts = parts_sql(self.ws, kind)
        done = (f"(SELECT id, source_hash AS h FROM {parts} WHERE model_id = $model)"
                if parts else "(SELECT NULL AS id, NULL AS h WHERE false)")
        table = query_arrow(f"SELECT c.*, (SELECT count(*) FROM ({rows})) AS total "
                            f"FROM ({rows}) c ANTI JOIN {done} d ON c.id = d.id AND c.h = d.h "
                            "ORDER BY c.id", {"model": model_id} if parts else None)
        total = int(table.column("total")[0].as_py()) if table.num_rows else int(query_arrow(
            f"SELECT count(*) AS n FROM ({rows})").column("n")[0].as_py())
        return table.drop_columns(["total"]), total

    def product_images(self) -> None:
        started = time.perf_counter()
        model_id = self.embedder.image_model_id
        pending, total = self.pending("product_image", model_id, "image")
        self.summary.already_done["product_image"] = total - pending.num_rows
        self.progress.start("product images", pending.num_rows)

        min_side = 2 * self.embedder.input_size  # headroom for a good-quality resize

        def load(row: dict[str, Any]) -> Any:
            try:
                image = load_image(Path(row["image"]), self.config.max_pixels, min_side)
                return self.embedder.preprocess_image(image)
            except ImageRejected as exc:  # e.g. the file changed since the catalog check
                return exc

        count = 0
        for batch, tensors in prefetch(row_batches(pending, self.config.batch_size), load,
                                       self.pool):
            good = [(row, t) for row, t in zip(batch, tensors, strict=True)
                    if not isinstance(t, ImageRejected)]
            for row, t in zip(batch, tensors, strict=True):
                if isinstance(t, ImageRejected):
                    self.image_rejects.append({"source": "product images", "line": None,
                                               "id": row["id"], "reason": str(t),
                                               "raw": row["image"]})
            if good:
                import torch

                vectors = self.embedder.embed_image_tensors(torch.stack([t for _, t in good]))
                ids = [r["id"] for r, _ in good]
                hashes = [r["h"] for r, _ in good]
                write_part(self.ws, "product_image", model_id, ids, hashes, vectors,
                           part_key(model_id, *(i + h for i, h in zip(ids, hashes,
                                                                      strict=True))))
                count += len(good)
            self.progress.advance(len(batch))
        self.summary.embedded["product_image"] = count
        self.timed("product images", started)

    def product_texts(self) -> None:
        started = time.perf_counter()
        model_id = self.embedder.text_model_id
        pending, total = self.pending("product_text", model_id, "product_text")
        self.summary.already_done["product_text"] = total - pending.num_rows
        self.progress.start("product texts", pending.num_rows)
        for start in range(0, pending.num_rows, TEXT_BATCH):
            batch = pending.slice(start, TEXT_BATCH)
            vectors = self.embedder.embed_texts(batch.column("product_text").to_pylist())
            # The batch's key: its first and last (id, hash) and its size identify it.
            ids, hashes = batch.column("id"), batch.column("h")
            key = part_key(model_id, str(batch.num_rows), *(str(c[i]) for c in (ids, hashes)
                                                            for i in (0, -1)))
            write_part(self.ws, "product_text", model_id, ids, hashes, vectors, key)
            self.progress.advance(batch.num_rows)
        self.summary.embedded["product_text"] = pending.num_rows
        self.timed("product texts", started)

    # -- pins --------------------------------------------------------------------------------
    def pins(self, source: Path, detector: Detector) -> None:
        started = time.perf_counter()
        self.progress.note(f"scanning pins in {source}")
        pins = scan_pins(source, self.config.max_pixels)
        ok = [p for p in pins if p.status == "ok"]
        done = _detected_pin_ids(self.ws, detector.model_id, [p.pin_id for p in ok])
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
        if not self.config.replace_pins and self.ws.pins.exists():
            # Earlier runs' pins stay; a path scanned again takes this run's row.
            pins_table = query_arrow(
                f"SELECT * FROM read_parquet({sql_path(self.ws.pins)}) ANTI JOIN new USING "
                "(path) UNION ALL BY NAME SELECT * FROM new ORDER BY path",
                tables={"new": pins_table}).cast(pins_table.schema)
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
        PartStore(self.ws.detection_parts_dir).append(_detections_table(rows), key)
        return len(rows)

    def finish(self, detector_id: str | None) -> None:
        if self.image_rejects:
            import pyarrow as pa

            write_parquet(pa.Table.from_pylist(self.image_rejects, rejects_schema()),
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


def _detected_pin_ids(ws: Workspace, detector_id: str, pin_ids: list[str]) -> set[str]:
    """Which of `pin_ids` the detector already finished (a semi-join in DuckDB)."""
    import pyarrow as pa

    files = PartStore(ws.detection_parts_dir).files()
    if not files or not pin_ids:
        return set()
    done = query_arrow(
        f"SELECT DISTINCT pin_id FROM read_parquet([{', '.join(sql_path(f) for f in files)}]) "
        "SEMI JOIN wanted USING (pin_id) WHERE detector = $detector",
        {"detector": detector_id}, tables={"wanted": pa.table({"pin_id": pin_ids})})
    return set(done.column("pin_id").to_pylist())


def consolidate_detections(ws: Workspace, detector_id: str) -> int:
    """detections.parquet = the committed per-batch parts for the current pins and detector."""
    import duckdb

    files = PartStore(ws.detection_parts_dir).files()
    if not files or not ws.pins.exists():
        return 0
    query = (f"SELECT d.* FROM read_parquet([{', '.join(sql_path(f) for f in files)}]) d "
             f"JOIN read_parquet({sql_path(ws.pins)}) p ON p.pin_id = d.pin_id "
             "AND p.status = 'ok' WHERE d.detector = $detector "
             "QUALIFY row_number() OVER (PARTITION BY d.det_id) = 1 "
             "ORDER BY d.pin_id, d.det_id")
    params = {"detector": detector_id}
    with duckdb.connect() as con:
        copy_to_parquet(con, query, ws.detections, {"crop": rows_version_sql("det_id")}, params)
        return int(con.execute(f"SELECT count(*) FROM ({query})", params).fetchall()[0][0])


def ingest(workspace: str | Path | None = None, catalog: str | Path | None = None,
           pins: str | Path | None = None, config: IngestConfig | None = None,
           progress: Progress | None = None) -> IngestSummary:
    """Ingest a catalog and/or a folder of pins into a workspace (created if needed)."""
    from ..models import get_detector

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
                run.catalog(Path(catalog))
            elif not ws.catalog.exists():
                raise PinshopError("no catalog yet: pass a CATALOG file with the first ingest")
            run.product_images()
            run.product_texts()
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
