"""A self-contained HTML page for `match --report`: each pin with its boxes, each crop beside
its matched product thumbnails. Images are inlined as data URIs, so it opens with no server."""

from __future__ import annotations

import base64
import contextlib
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

from ..io.images import ImageRejected, load_image
from ..workspace.storage import atomic_path

if TYPE_CHECKING:
    from PIL import Image

    from ..retrieval.match import MatchResult
    from ..retrieval.store import Product

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px} h2{font-size:16px;margin-top:32px} .note{color:#8a5a00}
.pin{position:relative;display:inline-block}
.pin img{max-width:640px;max-height:520px;display:block}
.pin svg{position:absolute;left:0;top:0;width:100%;height:100%}
.object{display:flex;gap:12px;align-items:flex-start;margin:12px 0;padding:8px;background:#fff;
border:1px solid #ddd;border-radius:6px} .crop img{width:140px;height:140px;object-fit:contain}
.match{width:150px;font-size:12px} .match img{width:140px;height:140px;object-fit:contain;
background:#eee} .score{color:#555} .price{font-weight:600}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #999;vertical-align:middle}
"""


def data_uri(image: Image.Image, side: int) -> str:
    thumb = image.convert("RGB").copy()
    thumb.thumbnail((side, side))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def product_card(product: Product, caption: str | None = None) -> str:
    """A product thumbnail with title, price and a caption (default: id and score, where a
    search gave one)."""
    thumb = "<div style='width:140px;height:140px;background:#eee'></div>"
    if product.image:
        with contextlib.suppress(ImageRejected):
            thumb = f"<img src='{data_uri(load_image(Path(product.image)), 200)}' alt=''>"
    caption = caption or product.id + ("" if product.score is None
                                       else f" · score {product.score:.3f}")
    return (f"<div class='match'>{thumb}<div>{html.escape(product.title)}</div>"
            f"<div class='price'>{html.escape(product.price_text())}</div>"
            f"<div class='score'>{html.escape(caption)}</div></div>")


def page(title: str, body: list[str]) -> str:
    """A self-contained HTML page in the reports' style."""
    return "\n".join([f"<!doctype html><html><head><meta charset='utf-8'><title>"
                      f"{html.escape(title)}</title><style>{STYLE}</style></head><body>"
                      f"<h1>{html.escape(title)}</h1>", *body, "</body></html>"])


def write_page(text: str, target: str | Path) -> Path:
    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def render_report(result: MatchResult) -> str:
    detector = html.escape(result.detector or "none")
    parts = [f"<p>embedder {html.escape(result.model)} · detector {detector}</p>"]
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in result.notes]
    for pin in result.pins:
        parts.append(f"<h2>{html.escape(pin.image)}</h2>")
        if pin.error:
            parts.append(f"<p class='note'>skipped: {html.escape(pin.error)}</p>")
            continue
        image = load_image(Path(pin.image))
        width, height = image.size
        boxes = "".join(
            f"<rect x='{o.box[0]:.0f}' y='{o.box[1]:.0f}' width='{o.box[2] - o.box[0]:.0f}' "
            f"height='{o.box[3] - o.box[1]:.0f}' fill='none' stroke='#e0245e' stroke-width="
            f"'{max(2, width // 200)}'/>" for o in pin.objects)
        parts.append(f"<div class='pin'><img src='{data_uri(image, 1024)}' alt=''>"
                     f"<svg viewBox='0 0 {width} {height}' preserveAspectRatio='none'>{boxes}"
                     "</svg></div>")
        for number, obj in enumerate(pin.objects, start=1):
            crop = f"<img src='{data_uri(obj.crop, 280)}' alt=''>" if obj.crop else ""
            label = html.escape(obj.category or obj.class_name)
            cards = "".join(product_card(m) for m in obj.matches) or "<p>no match</p>"
            parts.append(f"<div class='object'><div class='crop'>{crop}<div>#{number} {label}"
                         f" ({obj.score:.2f}){colour_label(obj.color, obj.color_name)}</div>"
                         f"</div>{cards}</div>")
    if result.text is not None:
        parts.append(f"<h2>text: {html.escape(result.text)}</h2><div class='object'>")
        parts += [product_card(m) for m in result.text_matches]
        parts.append("</div>")
    return page("pinshop match", parts)


def colour_label(family: str | None, name: str | None) -> str:
    """A region's colour: its family in words and a swatch of its nearest CSS colour."""
    if not family:
        return ""
    swatch = (f"<span class='swatch' style='background:{html.escape(name)}' title="
              f"'{html.escape(name)}'></span>" if name else "")
    return f" · {html.escape(family)} {swatch}"


def write_report(result: MatchResult, target: str | Path) -> Path:
    return write_page(render_report(result), target)
