"""The look features: `similar`, `complete`, `duplicates`, `audit` (parse and print only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ._output import (
    DETECTOR_HELP,
    DeviceOption,
    JsonOption,
    ModelsDirOption,
    RuntimeOption,
    WorkspaceOption,
    check_report,
    note,
    open_shop,
    print_json,
    table,
    write_report_page,
)

ReferenceArgument = Annotated[str, typer.Argument(
    help="A product id from the catalog, or the path of a photo.")]
ReportOption = Annotated[Path | None, typer.Option(
    help="Write a self-contained HTML report to this file.")]
TopKOption = Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many products.")]


def _report_or_json(result: Any, render: Callable[[Any], str], report: Path | None,
                    json: bool, data: Any = None) -> bool:
    """Write the HTML report when asked; then print the JSON (`data`, else the result's
    own; True: done) or the notes (False: the caller prints its table)."""
    if report:
        write_report_page(render(result), report)
    if json:
        print_json(result if data is None else data)
        return True
    for message in getattr(result, "notes", []):
        note(message)
    return False


def similar(
    reference: ReferenceArgument,
    cheaper: Annotated[bool, typer.Option(
        "--cheaper", help="Only products strictly cheaper than the reference.")] = False,
    max_price: Annotated[float | None, typer.Option(help="Only products at or below.")] = None,
    color: Annotated[str | None, typer.Option(
        help="The look in another colour: only products of this colour (catalog colour, "
             "title or photo).")] = None,
    category: Annotated[str | None, typer.Option(
        help="The category to search (default: the product's, or a photo's nearest "
             "products' vote).")] = None,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", "-k", min=1, help="How many products (default 5).")] = None,
    offers: Annotated[bool, typer.Option(
        "--offers", help="Instead of look-alikes: the same product at other merchants (its "
                         "`pinshop duplicates` cluster), with price and stock, cheapest "
                         "first; every listing, so it takes none of the filters above.")
    ] = False,
    report: ReportOption = None,
    workspace: WorkspaceOption = None,
    models_dir: ModelsDirOption = None,
    runtime: RuntimeOption = "auto",
    device: DeviceOption = "auto",
    json: JsonOption = False,
) -> None:
    """Look-alikes of a product or a photo in the same category, most similar first.

    Similarity is shown as a percentile: "92% similar" means more alike than 92% of pairs
    of products in the same category of this catalog. With --offers, the same product's
    listings at other merchants instead.

    Example: `pinshop similar P005 --cheaper`, `pinshop similar P005 --color green`,
    `pinshop similar P005 --offers`
    """
    from pinshop_cli import PinshopError
    from pinshop_cli.report.look import render_similar

    if offers:
        given = [flag for flag, value in (("--cheaper", cheaper or None),
                                          ("--max-price", max_price), ("--color", color),
                                          ("--category", category), ("--top-k", top_k),
                                          ("--report", report)) if value is not None]
        if given:
            raise PinshopError(f"--offers lists every listing of the product itself: "
                               f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} "
                               "not apply to it")
        return _offers(reference, workspace, json)
    check_report(report)
    with open_shop(workspace, models_dir, runtime, device) as shop:
        result = shop.similar(reference, cheaper=cheaper, max_price=max_price, color=color,
                              top_k=5 if top_k is None else top_k, category=category)
    if _report_or_json(result, render_similar, report, json):
        return
    if not result.items:
        return  # the notes (printed) say why
    title = (result.reference_product.render() if result.reference_product
             else result.reference)
    table(f"like {title} · {result.category or 'any category'} ({result.index}; similarity "
          f"ranks among {result.scale})",
          ["id", "title", "price", "similarity"],
          [[i.product.id, i.product.titled(), i.product.price_text(), i.caption()]
           for i in result.items])


def _offers(reference: str, workspace: Path | None, json: bool) -> None:
    from pinshop_cli.look.offers import offers

    with open_shop(workspace) as shop:
        result = offers(shop.retriever, reference)
    if json:
        print_json(result)
        return
    for message in result.notes:
        note(message)
    if not result.offers:  # the note says why
        return
    table(f"offers for {reference}" + (f" · duplicates cluster {result.cluster}"
                                       if result.cluster is not None else ""),
          ["id", "merchant", "title", "price", "stock", ""],
          [[o.id, o.merchant or "?", o.title, o.price_text(), o.availability or "",
            "this one" if o.reference else ""] for o in result.offers])


def complete(
    reference: ReferenceArgument,
    top_k: TopKOption = 5,
    detector: Annotated[str, typer.Option(help=DETECTOR_HELP)] = "auto",
    report: ReportOption = None,
    workspace: WorkspaceOption = None,
    models_dir: ModelsDirOption = None,
    runtime: RuntimeOption = "auto",
    device: DeviceOption = "auto",
    json: JsonOption = False,
) -> None:
    """Complete the look: products from other categories that go with a scene or product.

    Categories that go together are learned from the workspace (objects detected in the
    same pin; items saved or bought together); products are ranked by style similarity.

    Example: `pinshop complete sample_data/pins/7303782.jpg`
    """
    from pinshop_cli.report.look import render_complete

    check_report(report)
    with open_shop(workspace, models_dir, runtime, device) as shop:
        result = shop.complete(reference, top_k=top_k, detector=detector)
    if _report_or_json(result, render_complete, report, json):
        return
    table(f"goes with {reference} (in it: {', '.join(result.scene_categories) or 'unknown'})",
          ["id", "title", "category", "price", "why"],
          [[p.product.id, p.product.title, p.product.category, p.product.price_text(),
            p.reason] for p in result.picks])


def duplicates(
    threshold: Annotated[float | None, typer.Option(
        help="Pair score (a cosine, -1 to 1) needed to link two products (default: the best "
             "F1 on planted duplicates, see the report's curve).")] = None,
    limit: Annotated[int, typer.Option(
        min=1, help="Clusters shown, largest first, in the table and --json (each with its "
                    "20 nearest members); duplicates.parquet has them all.")] = 50,
    report: ReportOption = None,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Cluster near-duplicate products (image and text similarity); writes
    duplicates.parquet in the workspace.

    Example: `pinshop duplicates --report duplicates.html`
    """
    from pinshop_cli.look.duplicates import measured_curve
    from pinshop_cli.report.look import render_duplicates

    check_report(report)
    with open_shop(workspace) as shop:
        result = shop.duplicates(threshold=threshold)
    shown = result.to_dict(limit=limit)
    if _report_or_json(result, lambda r: render_duplicates(r, measured_curve()), report, json,
                       shown):
        return
    if not result.clusters:
        note(f"no near-duplicate products at threshold {result.threshold:g}")
        return
    largest = f"the {limit} largest shown, " if result.clusters > limit else ""
    note(f"{result.clusters:,} cluster(s) of {result.table.num_rows:,} products at threshold "
         f"{result.threshold:g}; {largest}all in duplicates.parquet")
    table(None, ["cluster", "id", "title", "brand", "price", "nearest", "score"],
          [[m["cluster"], m["id"], m["title"], m["brand"],
            "" if m["price"] is None else f"{m['price']:.2f}", m["nearest"], f"{m['score']:.3f}"]
           for c in shown["shown"] for m in c["members"]])


def audit(
    report: ReportOption = None,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Catalog quality: photos that disagree with their category, missing, tiny or shared
    images, price outliers, repeated titles, and what ingest rejected; writes audit.parquet.

    Example: `pinshop audit --report audit.html`
    """
    from pinshop_cli.report.look import render_audit

    check_report(report)
    with open_shop(workspace) as shop:
        result = shop.audit()
    if _report_or_json(result, render_audit, report, json):
        return
    table(f"audit of {result.products} products (all findings in audit.parquet)",
          ["check", "findings"],
          [[c, "not checked" if n is None else n] for c, n in result.counts.items()]
          + [["rejected at ingest", sum(r["rows"] for r in result.rejects.to_pylist())]])
    shown = result.to_dict(limit=5)["findings"]
    table("first findings", ["check", "id", "title", "detail"],
          [[check, f["id"], f["title"], f["detail"]] for check, rows in shown.items()
           for f in rows])
