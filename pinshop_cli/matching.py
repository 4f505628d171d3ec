"""`match`: photos (detect -> crop -> embed -> search) or a text query against the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PinshopError, StaleIndexError
from .images import ImageRejected, decode_scale, load_image
from .index import LoadedIndex, build_indexes, load_index
from .storage import query_arrow, read_parquet, sql_path
from .workspace import Workspace

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .models import Embedder

# Below this many allowed products a filtered query is answered exactly (fast and perfect);
# above it hnswlib searches with a label filter, so filters never truncate a short list.
EXACT_FILTER_LIMIT = 5000


@dataclass
class Match:
    id: str
    title: str
    price: float | None
    category: str | None
    score: float
    currency: str | None = None
    brand: str | None = None
    color: str | None = None
    image: str | None = None
    url: str | None = None


@dataclass
class MatchedObject:
    box: list[float]
    category: str | None
    class_name: str
    score: float
    matches: list[Match]
    crop: Image.Image | None = field(default=None, repr=False)


@dataclass
class PinMatches:
    image: str
    objects: list[MatchedObject] = field(default_factory=list)
    error: str | None = None


@dataclass
class MatchResult:
    model: str
    detector: str
    pins: list[PinMatches] = field(default_factory=list)
    text: str | None = None
    text_matches: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The documented --json shape (crops are left out)."""
        def obj(o: MatchedObject) -> dict[str, Any]:
            return {"box": [round(v, 1) for v in o.box], "category": o.category,
                    "class_name": o.class_name, "score": round(o.score, 4),
                    "matches": [m.__dict__ for m in o.matches]}

        data: dict[str, Any] = {
            "model": self.model, "detector": self.detector,
            "pins": [{"image": p.image, "error": p.error, "objects": [obj(o) for o in p.objects]}
                     for p in self.pins],
            "notes": self.notes,
        }
        if self.text is not None:
            data["text"] = {"query": self.text, "matches": [m.__dict__ for m in self.text_matches]}
        return data


def catalog_ids(ws: Workspace, category: str | None = None, min_price: float | None = None,
                max_price: float | None = None, color: str | None = None) -> set[str] | None:
    """Ids of the catalog rows meeting every given constraint, filtered by DuckDB; None when
    no constraint is given (everything passes). A colour matches the colour or the title."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if category:
        clauses.append("category = $category")
        params["category"] = category.lower()
    if min_price:
        clauses.append("price >= $min_price")
        params["min_price"] = min_price
    if max_price is not None:
        clauses.append("price <= $max_price")
        params["max_price"] = max_price
    if color:
        clauses.append("contains(lower(coalesce(color, '') || ' ' || title), $color)")
        params["color"] = color.lower()
    if not clauses:
        return None
    ids = query_arrow(f"SELECT id FROM read_parquet({sql_path(ws.catalog)}) "
                      f"WHERE {' AND '.join(clauses)}", params)
    return set(ids.column("id").to_pylist())


class _Catalog:
    """Product rows by id, to turn search hits into Matches."""

    def __init__(self, ws: Workspace) -> None:
        table = read_parquet(ws.catalog)
        if table is None:
            raise PinshopError(f"no catalog in {ws.root}: run `pinshop ingest CATALOG` first")
        self.rows = {r["id"]: r for r in table.to_pylist()}

    def match(self, pid: str, score: float) -> Match:
        r = self.rows[pid]
        price = float(r["price"]) if r["price"] is not None else None
        return Match(pid, r["title"], price, r["category"], round(score, 4), r["currency"],
                     r["brand"], r["color"], r["image"], r["url"])


def search(loaded: LoadedIndex, queries: np.ndarray, k: int,
           allowed: set[str] | None = None) -> list[list[tuple[str, float]]]:
    """Top-k (id, cosine score) per query, with `allowed` applied inside the search."""
    import numpy as np

    ids = loaded.ids
    if allowed is None:
        labels = np.arange(len(ids))
    else:
        labels = np.array([i for i, pid in enumerate(ids) if pid in allowed], dtype=np.int64)
    k = min(k, len(labels))
    if k == 0:
        return [[] for _ in range(len(queries))]
    if allowed is not None and len(labels) <= EXACT_FILTER_LIMIT:
        vectors = np.asarray(loaded.index.get_items(labels), dtype=np.float32)
        scores = queries @ vectors.T
        order = np.argsort(-scores, axis=1)[:, :k]
        return [[(ids[labels[j]], float(scores[q, j])) for j in row]
                for q, row in enumerate(order)]
    label_set = set(labels.tolist())
    loaded.index.set_ef(max(64, 4 * k))
    found, distances = loaded.index.knn_query(
        queries, k=k, filter=(lambda label: label in label_set) if allowed is not None else None
    )
    return [[(ids[int(label)], 1.0 - float(d)) for label, d in zip(row, drow, strict=True)]
            for row, drow in zip(found, distances, strict=True)]


def open_index(ws: Workspace, kind: str, rebuild: bool) -> LoadedIndex:
    """The current index of `kind`; a stale one is refused, or rebuilt with `rebuild`."""
    try:
        return load_index(ws, kind)
    except StaleIndexError:
        if not rebuild:
            raise
        build_indexes(ws.root, kinds=(kind,))
        return load_index(ws, kind)


def workspace_embedder(ws: Workspace, models_dir: str | None = None) -> Embedder:
    from .models import get_embedder

    recorded = ws.settings().get("embedder")
    if not recorded:
        raise PinshopError(f"workspace {ws.root} has no embeddings yet: run `pinshop ingest`")
    return get_embedder(recorded, models_dir)


def match(images: Sequence[str | Path] = (), text: str | None = None,
          workspace: str | Path | None = None, top_k: int = 5, category: str | None = None,
          max_price: float | None = None, rebuild: bool = False, detector: str = "auto",
          models_dir: str | None = None) -> MatchResult:
    """Top catalog matches for every detected object in `images`, and/or for `text`."""
    from .detect import PIN_DECODE_SIDE, detect_and_crop
    from .models import get_detector

    if not images and not text:
        raise PinshopError("nothing to match: pass IMAGE paths and/or --text QUERY")
    ws = Workspace.open(workspace)
    catalog = _Catalog(ws)
    embedder = workspace_embedder(ws, models_dir)
    allowed = catalog_ids(ws, category=category, max_price=max_price)
    result = MatchResult(model=f"{embedder.image_model_id} / {embedder.text_model_id}",
                         detector="")
    if images:
        found_detector = get_detector(detector, models_dir)
        result.detector = found_detector.model_id
        if found_detector.note:
            result.notes.append(found_detector.note)
        index = open_index(ws, "product_image", rebuild)
        for path in images:
            pin = PinMatches(str(path))
            result.pins.append(pin)
            try:
                image = load_image(Path(path), min_side=PIN_DECODE_SIDE)
            except ImageRejected as exc:
                pin.error = str(exc)
                continue
            regions = detect_and_crop(found_detector, [image])[0]
            vectors = embedder.embed_images([crop for _, crop in regions])
            for (detection, crop), hits in zip(regions, search(index, vectors, top_k, allowed),
                                               strict=True):
                pin.objects.append(MatchedObject(
                    [v * decode_scale(image) for v in detection.box],
                    detection.category or None, detection.class_name,
                    detection.score, [catalog.match(pid, s) for pid, s in hits], crop))
    if text:
        result.text = text
        kind = "product_image" if embedder.shared_space else "product_text"
        if not embedder.shared_space:
            result.notes.append("text matched against product texts (MiniLM); cross-modal "
                                "search (text -> product photos) needs a CLIP embedder")
        vector = embedder.embed_texts([text])
        hits = search(open_index(ws, kind, rebuild), vector, top_k, allowed)[0]
        result.text_matches = [catalog.match(pid, s) for pid, s in hits]
    return result
