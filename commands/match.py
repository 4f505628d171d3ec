from __future__ import annotations

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


def _row(m: Any) -> list[str]:
    """A match's table row; a family's best variant says what else it comes in."""
    return [m.id, m.titled(), m.price_text(), m.category, f"{m.score:.3f}"]


def match(
    images: Annotated[list[Path] | None, typer.Argument(
        help="Pin photos to shop (a folder: the photos in it).")] = None,
    text: Annotated[str | None, typer.Option(
        help="A text query, e.g. 'green velvet sofa'.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Matches per object.")] = 5,
    category: Annotated[str | None, typer.Option(help="Only products in this category.")] = None,
    max_price: Annotated[float | None, typer.Option(help="Only products at or below.")] = None,
    color: Annotated[str | None, typer.Option(
        help="Only products of this colour (catalog colour, title, or the photo's colour: "
             "'blue' finds navy too).")] = None,
    report: Annotated[Path | None, typer.Option(
        help="Write a self-contained HTML report (pins, boxes, matched products).")] = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Update a stale index first (without it, a stale index answers, "
                          "with a note).")] = False,
    detector: Annotated[str, typer.Option(
        help=DETECTOR_HELP)] = "auto",
    workspace: WorkspaceOption = None,
    models_dir: ModelsDirOption = None,
    runtime: RuntimeOption = "auto",
    device: DeviceOption = "auto",
    json: JsonOption = False,
) -> None:
    """Find the catalog products that match each object in the photos (or a text query).

    Example: `pinshop match sample_data/pins/7303782.jpg --top-k 3 --report out.html`
    """
    from pinshop_cli import PinshopError
    from pinshop_cli.io.pins import photos_in
    from pinshop_cli.report.html import render_report

    check_report(report)
    photos: list[Path] = []
    for path in images or []:  # folders opened; what they hold that is no photo is said
        found, left_out = photos_in(path)
        photos += found
        if left_out:
            first, why = left_out[0]
            note(f"{path}: {len(left_out)} file(s) left out ({first.name}: {why}"
                 f"{', ...' if len(left_out) > 1 else ''})")
        if not found:
            note(f"{path}: a folder with no JPEG, PNG or WebP photo in it")
    if images and not photos and text is None:
        raise PinshopError(f"no photo to match in {', '.join(map(str, images))}")
    with open_shop(workspace, models_dir, runtime, device) as shop:
        result = shop.match(photos, text=text, top_k=top_k, category=category,
                            max_price=max_price, color=color, rebuild=rebuild,
                            detector=detector)
    if report:
        write_report_page(render_report(result), report)
    unread = [pin for pin in result.pins if pin.error]
    nothing_read = bool(photos) and len(unread) == len(result.pins) and result.text is None
    if json:
        print_json(result)
    elif not nothing_read:  # else the error alone says it, once
        for message in result.notes:
            note(message)
        for pin in result.pins:
            if pin.error:
                typer.echo(f"{pin.image}: skipped ({pin.error})", err=True)
            for number, obj in enumerate(pin.objects, start=1):
                label = ("the whole photo" if obj.source == "whole_image" else
                         " ".join(filter(None, [obj.color, obj.category or obj.class_name])))
                table(f"{pin.image} · object {number}: {label} ({obj.source}, "
                      f"{obj.score:.2f})", ["id", "title", "price", "category", "score"],
                      [_row(m) for m in obj.matches])
        if result.text is not None:
            table(f"text: {result.text}", ["id", "title", "price", "category", "score"],
                  [_row(m) for m in result.text_matches])
    if nothing_read:
        more = f"; and {len(unread) - 1} more" if len(unread) > 1 else ""
        raise PinshopError(f"no image could be read ({unread[0].image}: {unread[0].error}"
                           f"{more})")
