"""What an ingest run is asked to do (`IngestConfig`) and what it reports (`IngestSummary`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..engines import EngineOptions, engine_options
from ..io.images import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class IngestConfig:
    """Everything a run needs; travels whole (use dataclasses.replace for overrides)."""

    embedder: str = "auto"
    #: Where the embedder's forwards run: auto (ONNX Runtime when an export exists or can
    #: be made), torch, onnx, onnx-int8.
    runtime: str = "auto"
    #: auto (a GPU when one is visible), cpu, cuda or cuda:N (models/device.py).
    device: str = "auto"
    detector: str = "auto"
    batch_size: int = 32
    text_batch_size: int = 128
    reader_threads: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_score: float = 0.25
    models_dir: str | None = None
    #: Pins of earlier runs are kept and new ones added; True makes this run's set the only one.
    replace_pins: bool = False
    #: local (threads in this process) or ray (Ray Data, on one machine or a cluster).
    engine: str = "local"
    ray_address: str | None = None
    #: Ray actors per model stage; None: one per node.
    workers: int | None = None

    def engine_options(self, batch_size: int) -> EngineOptions:
        return engine_options(self.device, batch_size, self.reader_threads, self.workers)


@dataclass
class IngestSummary:
    workspace: str
    engine: str = "local"
    embedder: str = ""
    #: Where the embedder ran in this process, e.g. "image: onnx, text: onnx" (the local
    #: engine; Ray actors choose alike, by the same --runtime).
    runtime: str = ""
    detector: str = ""
    notes: list[str] = field(default_factory=list)
    rows_ok: int = 0
    rows_rejected: int = 0
    #: Against the catalog this ingest replaced: ids new, ids gone, ids with other values.
    rows_added: int = 0
    rows_removed: int = 0
    rows_changed: int = 0
    pins_ok: int = 0
    pins_rejected: int = 0
    pins_removed: int = 0  # with replace_pins: earlier pins this run's folder no longer has
    detections: int = 0
    embedded: dict[str, int] = field(default_factory=dict)  # new vectors per kind
    #: Skipped, their hash unchanged: products per product kind, pins (not crops) for crop.
    already_done: dict[str, int] = field(default_factory=dict)
    #: Batches of model work per node that ran them (a host name, or a Ray node id).
    nodes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model_work_done(self) -> bool:
        return any(self.embedded.values())

    @property
    def unchanged(self) -> bool:
        """Nothing new: no model work, the catalog kept every row as it was and no pin
        was dropped."""
        return not (self.model_work_done or self.rows_added or self.rows_removed
                    or self.rows_changed or self.pins_removed)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_work_done": self.model_work_done,
                "unchanged": self.unchanged}
