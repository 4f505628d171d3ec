"""HTML pages for the look features: look-alikes, complete the look, duplicate clusters (with
the threshold curve) and the catalog audit. Self-contained like the match report."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io.images import ImageRejected, load_image
from ..retrieval.store import Product
from .html import data_uri, page, product_card

if TYPE_CHECKING:
    from ..look.audit import AuditReport
    from ..look.complete import CompleteTheLook
    from ..look.duplicates import DuplicateClusters
    from ..look.similar import LookAlikes

SHOWN = 60  # clusters or findings per section: a report is for looking, the Parquet for all


def _reference(label: str, product: Product | None, caption: str) -> str:
    if product is not None:
        return product_card(product, caption)
    try:
        image = f"<img src='{data_uri(load_image(Path(label)), 280)}' alt=''>"
    except ImageRejected:
        image = ""
    return f"<div class='crop'>{image}<div>{html.escape(caption)}</div></div>"


def _row(cards: list[str]) -> str:
    return f"<div class='object'>{''.join(cards) or '<p>none</p>'}</div>"


def _notes(notes: list[str]) -> list[str]:
    return [f"<p class='note'>{html.escape(n)}</p>" for n in notes]


def render_similar(result: LookAlikes) -> str:
    reference = _reference(result.reference, result.reference_product,
                           f"{result.reference} · {result.category or 'any category'}")
    body = [f"<p>category {html.escape(str(result.category))} ({result.category_source}) · "
            f"index {html.escape(result.index)} · similarity ranks among "
            f"{html.escape(result.scale)}</p>", *_notes(result.notes),
            "<div class='object'>", reference, "<div style='width:24px'>→</div>",
            *[product_card(i.product, f"{i.product.id} · {i.caption()}") for i in result.items],
            "</div>"]
    return page("pinshop similar", body)


def render_complete(result: CompleteTheLook) -> str:
    scene = ", ".join(result.scene_categories) or "unknown"
    body = [f"<p>in the scene: {html.escape(scene)}</p>", *_notes(result.notes),
            "<div class='object'>",
            _reference(result.reference, result.reference_product, result.reference),
            "<div style='width:24px'>+</div>",
            *[product_card(p.product, p.reason) for p in result.picks], "</div>"]
    return page("pinshop complete", body)


def curve_svg(points: list[dict[str, Any]], threshold: float) -> str:
    """Precision (blue) and recall (orange) against the threshold, a line at `threshold`."""
    width, height, pad = 480, 220, 30
    low, high = points[0]["threshold"], points[-1]["threshold"]

    def x(t: float) -> float:
        return pad + (t - low) / (high - low) * (width - 2 * pad)

    def y(v: float) -> float:
        return height - pad - v * (height - 2 * pad)

    lines = "".join(
        f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='"
        + " ".join(f"{x(p['threshold']):.0f},{y(p[key]):.0f}" for p in points) + "'/>"
        f"<text x='{width - pad - 60}' y='{18 + 14 * n}' fill='{colour}' font-size='12'>"
        f"{key}</text>"
        for n, (key, colour) in enumerate((("precision", "#1f6feb"), ("recall", "#d9730d"))))
    return (f"<svg width='{width}' height='{height}' style='background:#fff;border:1px solid "
            f"#ddd'>{lines}<line x1='{x(threshold):.0f}' x2='{x(threshold):.0f}' y1='{pad}' "
            f"y2='{height - pad}' stroke='#e0245e' stroke-dasharray='4'/>"
            f"<text x='{pad}' y='{height - 8}' font-size='12'>threshold {low:g} → {high:g} "
            f"(dashed: {threshold:g})</text></svg>")


def render_duplicates(result: DuplicateClusters, curve: dict[str, Any]) -> str:
    body = [f"<p>{result.clusters} clusters, {result.table.num_rows} products, threshold "
            f"{result.threshold:g} ({result.pairs_checked} candidate pairs checked)</p>",
            f"<h2>Threshold curve: planted duplicates of the sample photos "
            f"({html.escape(curve['embedder'])})</h2>", curve_svg(curve["curve"],
                                                                   result.threshold)]
    for cluster in result.to_dict(limit=SHOWN)["shown"]:
        body.append(f"<h2>cluster {cluster['cluster']}</h2>")
        body.append(_row([product_card(
            Product.from_row(m), f"{m['id']} · {m['brand'] or ''} · score {m['score']:.3f} "
            f"to {m['nearest']}") for m in cluster["members"]]))
    return page("pinshop duplicates", body)


def _heading(check: str, found: int | None, shown: int) -> str:
    """A check's heading: not checked, or how many of its findings the page shows."""
    if found is None:
        return f"<h2>{check}</h2><p>not checked (see the notes above)</p>"
    more = f"<p>the first {shown} of {found:,} (audit.parquet has all)</p>"
    return f"<h2>{check}</h2>{more if found > shown else ''}"


def render_audit(report: AuditReport) -> str:
    summary = report.to_dict(limit=SHOWN)
    body = [f"<p>{report.products} products · " + " · ".join(
        f"{check}: {'not checked' if count is None else count}"
        for check, count in report.counts.items()) + "</p>", *_notes(report.notes)]
    for check in ("category", "image"):
        body.append(_heading(check, report.counts.get(check), len(summary["findings"][check])))
        if report.counts.get(check) is not None:  # "none" said a check not run found nothing
            body.append(_row([product_card(Product.from_row(f), f"{f['id']} · {f['detail']}")
                              for f in summary["findings"][check]]))
    for check in ("price", "title"):
        body.append(_heading(check, report.counts.get(check),
                             len(summary["findings"][check])) + "<table>" + "".join(
            f"<tr><td>{html.escape(f['id'])}</td><td>{html.escape(f['title'])}</td>"
            f"<td>{html.escape(f['detail'])}</td></tr>" for f in summary["findings"][check])
            + "</table>")
    body.append("<h2>rejected at ingest</h2><table>" + "".join(
        f"<tr><td>{r['rows']}</td><td>{html.escape(r['reason'])}</td>"
        f"<td>{html.escape(r['example'])}</td></tr>" for r in summary["rejects"]) + "</table>")
    return page("pinshop audit", body)
