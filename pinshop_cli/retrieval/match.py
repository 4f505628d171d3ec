"""`match`: photos (detect -> crop -> embed -> search) or a text query against the catalog,
on top of the Retriever (which also serves chat, /image and the look features)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..io.images import ImageRejected, decode_scale, load_image
from . import families
from .retriever import Retriever, SearchResult
from .store import Filters, Product

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..detection.crops import Region
    from ..models import Detector, Embedder


Match = Product  # a match is a catalog product with its similarity score


@dataclass
class MatchedObject:
    box: list[float]
    category: str | None
    class_name: str
    score: float
    matches: list[Match]
    crop: Image.Image | None = field(default=None, repr=False)
    index: str = ""  # which index answered (a category's own, or the global one)
    source: str = "detector"  # what found it: detector, regions or whole_image
    color: str | None = None  # the region's colour family (detection/colors.py)
    color_name: str | None = None  # and its nearest CSS colour name


@dataclass
class PinMatches:
    image: str
    objects: list[MatchedObject] = field(default_factory=list)
    error: str | None = None


@dataclass
class MatchResult:
    model: str
    detector: str | None  # None: no photo was matched (text only)
    pins: list[PinMatches] = field(default_factory=list)
    text: str | None = None
    text_matches: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runtime: str = ""  # where the embedder's forwards ran, e.g. "image: onnx, text: onnx"

    def to_dict(self) -> dict[str, Any]:
        """The documented --json shape (crops are left out)."""
        def obj(o: MatchedObject) -> dict[str, Any]:
            return {"box": [round(v, 1) for v in o.box], "category": o.category,
                    "class_name": o.class_name, "source": o.source, "color": o.color,
                    "color_name": o.color_name,
                    "score": round(o.score, 4), "index": o.index,
                    "matches": [m.__dict__ for m in o.matches]}

        data: dict[str, Any] = {
            "model": self.model, "detector": self.detector, "runtime": self.runtime,
            "pins": [{"image": p.image, "error": p.error, "objects": [obj(o) for o in p.objects]}
                     for p in self.pins],
            "notes": self.notes,
        }
        if self.text is not None:
            data["text"] = {"query": self.text, "matches": [m.__dict__ for m in self.text_matches]}
        return data


def matches(retriever: Retriever, result: SearchResult) -> list[list[Match]]:
    """Search hits turned into Matches (Retriever.products_per_query)."""
    return retriever.products_per_query(result.hits)


def photo_detector(retriever: Retriever, detector: str = "auto",
                   models_dir: str | None = None) -> Detector:
    """What finds the regions of a photo for this workspace (see detection/choose.py),
    built once per retriever: catalog regions calibrate on the catalog when first made."""
    from ..detection.choose import choose_detector
    from ..detection.products import ProductPhotos

    return retriever.prepared(("detector", detector, models_dir), lambda: choose_detector(
        detector, retriever.embedder, lambda: ProductPhotos.from_retriever(retriever),
        lambda: retriever.store.distinct("category"), models_dir, device=retriever.device))


def region_filters(filters: Filters, region_category: str) -> Filters:
    """A region's filters: asked for a colour and no category ("this, but in black"), the
    answer stays within the region's own category; otherwise the filters as given."""
    if filters.color and not filters.category and region_category:
        return replace(filters, category=region_category)
    return filters


def region_vectors(embedder: Embedder, regions: list[Region]) -> np.ndarray:
    """Each region's crop embedding: the one finding it made (regions), else embedded now."""
    import numpy as np

    missing = [crop for detection, crop in regions if detection.vector is None]
    fresh = iter(embedder.embed_images(missing) if missing else [])
    return np.stack([detection.vector if detection.vector is not None else next(fresh)
                     for detection, _ in regions])


def empty_because(retriever: Retriever, filters: Filters, kind: str | None = None
                  ) -> list[str]:
    """For an answer left empty: a note naming the filter that alone matches no product,
    if one does (CatalogStore.why_empty), else that none has all of them; else, for a
    photo's region (`kind` product_image), that the products passing have no photo a
    region could match."""
    if filters.empty:
        return []
    why = retriever.store.why_empty(filters)
    if why:
        return [why]
    passing = retriever.store.count(filters)
    if not passing:
        return [f"no product has all of: {filters.describe()}"]
    loaded = retriever.index(kind) if kind == "product_image" else None
    if loaded is not None and not len(retriever.allowed(loaded, filters)):
        return [f"{passing} product{'s have' if passing > 1 else ' has'} all of: "
                f"{filters.describe()}; none has a photo a region could match "
                "(`match --text` searches them)"]
    return []


def price_caveat(retriever: Retriever, filters: Filters) -> list[str]:
    """A note when price filters compare amounts across the catalog's currencies (a cap of
    4.5 let 1.30 KWD, 0 USD and 3 EUR through together)."""
    priced = filters.min_price or filters.max_price is not None
    if not priced or len(found := retriever.store.currencies) < 2:
        return []
    return [f"price limits compare amounts as numbers across the catalog's {len(found)} "
            f"currencies ({', '.join(found[:5])}{', ...' if len(found) > 5 else ''}): "
            "a product in another currency passes by its number alone"]


def match(images: Sequence[str | Path] = (), text: str | None = None,
          workspace: str | Path | None = None, top_k: int = 5, category: str | None = None,
          max_price: float | None = None, color: str | None = None, rebuild: bool = False,
          detector: str = "auto",
          models_dir: str | None = None, retriever: Retriever | None = None,
          runtime: str = "auto") -> MatchResult:
    """Top catalog matches for every detected object in `images`, and/or for `text`. Each
    object is searched in its category's own index when there is one (`index` says which
    answered). A product family (`item_group_id`) is shown once, as its best variant with
    its `family` summary (retrieval/families.py). Pass a `retriever` to reuse loaded indexes
    and models across calls."""
    from ..detection.colors import dominant_colors
    from ..detection.crops import PIN_DECODE_SIDE, detect_and_crop

    if text is not None and not text.strip():
        raise PinshopError("--text is blank: pass the words to search for")
    if not images and not text:
        raise PinshopError("nothing to match: pass IMAGE paths and/or --text QUERY")
    retriever = retriever or Retriever(workspace, models_dir, rebuild, runtime)
    filters = Filters(category=category, max_price=max_price, color=color)
    embedder = retriever.embedder
    result = MatchResult(model=f"{embedder.image_model_id} / {embedder.text_model_id}",
                         detector=None)
    if images:
        found_detector = photo_detector(retriever, detector, models_dir)
        result.detector = found_detector.model_id
        if found_detector.note:
            result.notes.append(found_detector.note)
        for path in images:
            pin = PinMatches(str(path))
            result.pins.append(pin)
            try:
                image = load_image(Path(path), min_side=PIN_DECODE_SIDE)
            except ImageRejected as exc:
                pin.error = str(exc)
                continue
            regions = detect_and_crop(found_detector, [image])[0]
            vectors = region_vectors(embedder, regions)
            # A region is searched in its category's index unless the filters name
            # another category (then that one's).
            narrowed = [region_filters(filters, detection.category)
                        for detection, _ in regions]
            searches = [families.search(retriever, vector[None, :], top_k, "product_image",
                                        own, category=own.category or detection.category
                                        or None)
                        for (detection, _), vector, own in zip(regions, vectors, narrowed,
                                                               strict=True)]
            for (detection, crop), found, products in zip(
                    regions, searches, families.products_of(retriever, searches), strict=True):
                named = dominant_colors(crop, top=1)[0]
                pin.objects.append(MatchedObject(
                    [v * decode_scale(image) for v in detection.box],
                    detection.category or None, detection.class_name, detection.score,
                    products[0], crop, found.index, detection.source, named.family,
                    named.name))
    if text:
        result.text = text
        if retriever.text_kind == "product_text":
            result.notes.append("text matched against product texts (MiniLM); cross-modal "
                                "search (text -> product photos) needs a CLIP embedder")
        texts = families.search(retriever, embedder.embed_texts([text]), top_k,
                                retriever.text_kind, filters)
        result.text_matches = texts.products(retriever)[0]
    if text and not result.text_matches:
        result.notes += empty_because(retriever, filters)
    # Each region left empty under its own filters (its category, for a colour alone).
    for wanted in dict.fromkeys(region_filters(filters, found.category or "")
                                for pin in result.pins for found in pin.objects
                                if not found.matches):
        result.notes += [note for note in empty_because(retriever, wanted, "product_image")
                         if note not in result.notes]
    result.notes += price_caveat(retriever, filters)
    result.runtime = embedder.runtime_used
    result.notes.extend(embedder.runtime_notes + retriever.notes)
    return result
