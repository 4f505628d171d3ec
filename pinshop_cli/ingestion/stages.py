"""Ingest stages: plain picklable callables over Arrow tables, one set for both engines.

    plan.py         which rows are not done yet (DuckDB anti-joins) -> a plan table
    DecodeImages    path -> RGB pixels                      light: reader threads / Ray tasks
    DetectAndCrop   a pin's pixels -> one row per region    a model
    EmbedImages     pixels -> vector                        a model
    EmbedTexts      text -> vector                          a model
    WriteParts      vectors (+ detections) -> unlisted Parquet parts, and a receipt

A model stage builds its model once, in __init__, from names (the workspace's recorded
embedder, the detector's name), never from loaded objects, so an engine may construct it in
another process or on another machine; it checks that the name resolved there to the model
the driver chose. Images travel between stages as raw RGB bytes. A row that fails (a file
that changed since the scan) keeps flowing with `reject` set, so the receipt carries it
back to the driver, which records rejects and lists the parts in the manifests.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..io.images import ImageRejected, load_image
from ..workspace.embeddings import part_key, store, vectors_table
from ..workspace.layout import Workspace
from ..workspace.parts import PartStore

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from PIL import Image



def node_name() -> str:
    """Where this batch ran: the Ray node inside a Ray worker, else the host."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())[:12]
    return socket.gethostname()


def _valid(batch: pa.Table) -> Any:
    import pyarrow.compute as pc

    return pc.is_null(batch.column("reject"))


def _images(batch: pa.Table) -> list[Image.Image]:
    """The RGB images a batch carries as `pixels`, `width`, `height`."""
    from PIL import Image

    return [Image.frombytes("RGB", (w, h), p) for p, w, h in zip(
        batch.column("pixels").to_pylist(), batch.column("width").to_pylist(),
        batch.column("height").to_pylist(), strict=True)]


def _with_columns(batch: pa.Table, columns: dict[str, Any]) -> pa.Table:
    for name, values in columns.items():
        if name in batch.column_names:
            batch = batch.drop_columns([name])
        batch = batch.append_column(name, values)
    return batch


class DecodeImages:
    """`path` -> `pixels`, `width`, `height`, `scale` (back to the photo's pixels), or a
    `reject` reason. JPEGs decode at the smallest scale keeping `min_side` pixels."""

    def __init__(self, max_pixels: int, min_side: int) -> None:
        self.max_pixels, self.min_side = max_pixels, min_side

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        from ..io.images import decode_scale

        pixels: list[bytes | None] = []
        sizes: list[tuple[int, int]] = []
        scales: list[float] = []
        rejects: list[str | None] = []
        for path in batch.column("path").to_pylist():  # one decode per file, by nature
            try:
                image = load_image(Path(path), self.max_pixels, self.min_side)
            except ImageRejected as exc:
                pixels.append(None)
                sizes.append((0, 0))
                scales.append(1.0)
                rejects.append(str(exc))
                continue
            pixels.append(image.tobytes())
            sizes.append(image.size)
            scales.append(decode_scale(image))
            rejects.append(None)
        return _with_columns(batch, {
            "pixels": pa.array(pixels, pa.large_binary()),
            "width": pa.array([w for w, _ in sizes], pa.int32()),
            "height": pa.array([h for _, h in sizes], pa.int32()),
            "scale": pa.array(scales, pa.float64()),
            "reject": pa.array(rejects, pa.string()),
        })


class DetectAndCrop:
    """A pin's `pixels` -> one row per detected region (the whole photo when nothing is
    found), with the crop's pixels and its box in the original photo's pixels."""

    def __init__(self, detector: str, workspace: str, embedder: str, runtime: str,
                 models_dir: str | None, min_score: float, expect: str,
                 threads: int | None = None, device: str = "auto") -> None:
        from ..detection.choose import choose_detector
        from ..detection.products import ProductPhotos, catalog_categories
        from ..models import get_embedder

        # `threads`: this worker's share of its node's cores (the engine knows how many
        # workers share it); `device`: resolved here, on the worker's own machine.
        images = get_embedder(embedder, models_dir, runtime, device, threads)
        ws = Workspace(Path(workspace))
        self.detector = choose_detector(
            detector, images, lambda: ProductPhotos.from_workspace(ws, images.image_model_id),
            lambda: catalog_categories(ws), models_dir, min_score, device)
        if self.detector.model_id != expect:
            raise PinshopError(f"detector {detector!r} resolved to {self.detector.model_id} "
                               f"on {node_name()}, not {expect} as on the driver")

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa
        import pyarrow.compute as pc

        from ..detection.crops import detect_and_crop

        valid = _valid(batch)
        good = batch.filter(valid)
        found = detect_and_crop(self.detector, _images(good))
        pins = good.select(["pin_id", "path", "h", "scale"]).to_pylist()  # no pixels
        rows: list[dict[str, Any]] = []
        for pin, regions in zip(pins, found, strict=True):  # one row per region found
            for number, (detection, crop) in enumerate(regions):
                x1, y1, x2, y2 = (v * pin["scale"] for v in detection.box)
                rows.append({"id": f"{pin['pin_id']}-{self.detector.model_id}-{number}",
                             "pin_id": pin["pin_id"], "path": pin["path"], "h": pin["h"],
                             "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                             "class_name": detection.class_name,
                             "source": detection.source,
                             "category": detection.category or None,
                             "score": detection.score, "detector": self.detector.model_id,
                             "fallback": detection.source == "whole_image",
                             "region": number,
                             "regions": len(regions), "pixels": crop.tobytes(),
                             "width": crop.width, "height": crop.height, "reject": None,
                             "vector": None if detection.vector is None
                             else detection.vector.tolist()})
        # Rejected pins flow on as one row each, so the receipt carries their reasons.
        rejected = batch.filter(pc.invert(valid)).select(["pin_id", "path", "h", "reject"])
        rejected = rejected.append_column("id", rejected.column("pin_id"))
        return pa.concat_tables([pa.Table.from_pylist(rows, region_schema()),
                                 _as_regions(rejected)])


def _as_regions(rejected: pa.Table) -> pa.Table:
    """Rejected pins in the region schema (their region columns null)."""
    import pyarrow as pa

    schema = region_schema()
    return pa.table([rejected.column(f.name).cast(f.type) if f.name in rejected.column_names
                     else pa.nulls(rejected.num_rows, f.type) for f in schema], schema=schema)


def region_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("pin_id", pa.string()), ("path", pa.string()),
        ("h", pa.string()), ("x1", pa.float32()), ("y1", pa.float32()), ("x2", pa.float32()),
        ("y2", pa.float32()), ("class_name", pa.string()), ("source", pa.string()),
        ("category", pa.string()),
        ("score", pa.float32()), ("detector", pa.string()), ("fallback", pa.bool_()),
        ("region", pa.int32()), ("regions", pa.int32()), ("pixels", pa.large_binary()),
        ("width", pa.int32()), ("height", pa.int32()), ("reject", pa.string()),
        ("vector", pa.list_(pa.float32())),
    ])


def _vector_column(vectors: np.ndarray, valid: np.ndarray) -> pa.Array:
    """The good rows' vectors spread over the batch as list<float32>; rejected rows hold
    empty lists and are never written. Variable-size lists, so a batch with no good row
    (no vector, no dimension) has the same schema as every other batch."""
    import numpy as np
    import pyarrow as pa

    lengths = np.where(valid, vectors.shape[1] if len(vectors) else 0, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets),
                                    pa.array(vectors.ravel(), pa.float32()))


class _Embed:
    """A model stage holding the workspace's embedder, built by name on the worker; it
    refuses to run when the name resolves to another model than the driver's."""

    image: bool  # which of the embedder's two models this stage runs

    def __init__(self, embedder: str, models_dir: str | None, expect: str,
                 runtime: str = "auto", threads: int | None = None,
                 device: str = "auto") -> None:
        from ..models import get_embedder

        self.embedder = get_embedder(embedder, models_dir, runtime, device, threads)
        got = self.embedder.image_model_id if self.image else self.embedder.text_model_id
        self.node = node_name()
        if got != expect:
            raise PinshopError(f"embedder {embedder!r} resolved to {got} on {self.node}, not "
                               f"{expect} as on the driver: install the same models on every "
                               "node")

    @property
    def runtime(self) -> str:
        """Where this stage's model ran, e.g. "image: onnx" (after its first forward)."""
        side = "image" if self.image else "text"
        label = self.embedder.runtime_used
        return next((piece for piece in label.split(", ") if piece.startswith(f"{side}: ")),
                    label)


class NameColors:
    """`pixels` -> `color` (a family: blue, beige ...) and `color_name` (the nearest CSS
    name) of each image's dominant colour, background discounted (detection/colors.py)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        from ..detection.colors import RULES, dominant_colors

        valid = _valid(batch).to_numpy(zero_copy_only=False)
        found = iter([dominant_colors(image, top=1)[0]
                      for image in _images(batch.filter(valid))])
        named = [next(found) if ok else None for ok in valid]
        return _with_columns(batch, {
            "color": pa.array([c.family if c else None for c in named], pa.string()),
            "color_name": pa.array([c.name if c else None for c in named], pa.string()),
            "color_rules": pa.array([RULES if c else None for c in named], pa.int16())})


COLOR_COLUMNS = ["id", "h", "color", "color_name", "color_rules"]


class WriteColors:
    """A batch's photo colours alone (photos embedded before, named under older rules) as
    an unlisted colour part, and the receipt WriteParts gives."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        from ..detection.colors import RULES

        valid = _valid(batch)
        good, bad = batch.filter(valid), batch.filter(pc.invert(valid))
        side_part = None
        if good.num_rows:  # (the rules in the name: a later version never overwrites it)
            key = part_key("colors", str(RULES), *pc.binary_join_element_wise(
                good.column("id"), good.column("h"), "/").to_pylist())
            side_part = PartStore(Workspace(Path(self.workspace)).color_parts_dir).write(
                good.select(COLOR_COLUMNS), key)
        return receipt("product_color", None, side_part, good, bad, batch.num_rows,
                       [node_name()] if good.num_rows else [], [])


class EmbedImages(_Embed):
    """`pixels` -> `vector` (the embedder's own preprocessing, then one forward per batch)."""

    image = True

    def __call__(self, batch: pa.Table) -> pa.Table:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from ..workspace.embeddings import to_matrix

        valid = _valid(batch).to_numpy(zero_copy_only=False)
        # Regions arrive with their crop's vector (finding them embedded the crop).
        known = (pc.is_valid(batch.column("vector")).to_numpy(zero_copy_only=False) & valid
                 if "vector" in batch.column_names else np.zeros(len(valid), bool))
        tensors = [self.embedder.preprocess_image(image)
                   for image in _images(batch.filter(valid & ~known))]
        vectors = (self.embedder.embed_image_tensors(np.stack(tensors)) if tensors
                   else np.zeros((0, 0), np.float32))
        if known.any():
            given = to_matrix(batch.column("vector").filter(known))
            merged = np.zeros((int(valid.sum()), given.shape[1]), np.float32)
            in_valid = known[valid]  # which of the valid rows came with a vector
            merged[in_valid] = given
            if len(vectors):
                merged[~in_valid] = vectors
            vectors = merged
        batch = batch.drop_columns([c for c in ("pixels", "width", "height")
                                    if c in batch.column_names])
        return _with_columns(batch, {"vector": _vector_column(vectors, valid),
                                     "node": pa.array([self.node] * batch.num_rows),
                                     "runtime": pa.array([self.runtime] * batch.num_rows)})


class EmbedTexts(_Embed):
    """`product_text` -> `vector`."""

    image = False

    def __call__(self, batch: pa.Table) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        vectors = self.embedder.embed_texts(batch.column("product_text").to_pylist())
        valid = np.ones(batch.num_rows, bool)
        return _with_columns(batch, {
            "reject": pa.nulls(batch.num_rows, pa.string()),
            "vector": _vector_column(vectors, valid),
            "node": pa.array([self.node] * batch.num_rows),
            "runtime": pa.array([self.runtime] * batch.num_rows)})


DETECTION_COLUMNS = ("det_id", "pin_id", "path", "x1", "y1", "x2", "y2", "class_name",
                     "source", "category", "score", "detector", "fallback", "regions",
                     "color", "color_name", "color_rules")


class WriteParts:
    """Write a batch's vectors (and, for crops, its detections: the marker that its pins are
    done) as unlisted parts, and return a one-row receipt for the driver to commit."""

    def __init__(self, workspace: str, kind: str, model_id: str) -> None:
        self.workspace, self.kind, self.model_id = workspace, kind, model_id

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        from ..workspace.embeddings import to_matrix

        ws = Workspace(Path(self.workspace))
        valid = _valid(batch)
        good, bad = batch.filter(valid), batch.filter(pc.invert(valid))
        part = side_part = None
        if good.num_rows:
            ids, hashes = good.column("id"), good.column("h")
            key = part_key(self.model_id, self.kind, *pc.binary_join_element_wise(
                ids, hashes, "/").to_pylist())
            part = store(ws, self.kind).write(vectors_table(
                self.kind, self.model_id, ids, hashes, to_matrix(good.column("vector"))), key)
            if self.kind == "crop":
                detections = good.rename_columns(
                    ["det_id" if c == "id" else c for c in good.column_names])
                side_part = PartStore(ws.detection_parts_dir).write(
                    detections.select(list(DETECTION_COLUMNS)), key)
            elif "color" in good.column_names:  # product photos' colours
                side_part = PartStore(ws.color_parts_dir).write(good.select(COLOR_COLUMNS),
                                                                key)
        # Items finished: products one per row; pins once, at their first region.
        items = (good.num_rows if self.kind != "crop"
                 else pc.sum(pc.equal(good.column("region"), 0)).as_py() or 0)
        return receipt(
            self.kind, part, side_part, good, bad, items + bad.num_rows,
            sorted(set(good.column("node").to_pylist())) if good.num_rows else [],
            sorted(set(good.column("runtime").to_pylist())) if good.num_rows else [])


def receipt(kind: str, part: str | None, side_part: str | None, good: pa.Table,
            bad: pa.Table, items: int, nodes: list[str], runtimes: list[str]) -> pa.Table:
    """The one-row receipt of a written batch: its parts, and the rows it rejected."""
    import pyarrow as pa

    return pa.Table.from_pylist([{
        "kind": kind, "part": part, "side_part": side_part, "rows": good.num_rows,
        "items": items, "nodes": nodes, "runtimes": runtimes,
        "reject_ids": bad.column("id").to_pylist(),
        "reject_reasons": bad.column("reject").to_pylist(),
        "reject_paths": (bad.column("path").to_pylist() if "path" in bad.column_names
                         else [None] * bad.num_rows),
    }], receipt_schema())


def receipt_schema() -> pa.Schema:
    """One row per written batch, the same for every batch and engine."""
    import pyarrow as pa

    names = pa.list_(pa.string())
    return pa.schema([("kind", pa.string()), ("part", pa.string()),
                      ("side_part", pa.string()), ("rows", pa.int64()),
                      ("items", pa.int64()), ("nodes", names), ("runtimes", names),
                      ("reject_ids", names),
                      ("reject_reasons", names), ("reject_paths", names)])
