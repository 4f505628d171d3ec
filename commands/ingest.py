from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._output import (
    DETECTOR_HELP,
    DeviceOption,
    JsonOption,
    ModelsDirOption,
    RichProgress,
    RuntimeOption,
    WorkspaceOption,
    open_shop,
    print_json,
    table,
)


def ingest(
    catalog: Annotated[Path | None, typer.Argument(
        help="Catalog file: .csv, .tsv, .jsonl or .parquet (id and title required), a "
             "Merchant Center / Pinterest feed (TSV, CSV, RSS or Atom .xml) or a Shopify "
             "product export. Photo URLs are fetched into the workspace.")] = None,
    pins: Annotated[Path | None, typer.Option(
        "--pins", help="Directory of pin photos (recursive), one photo, or a list file of "
                       "paths. Pins add to those of earlier runs.")] = None,
    replace_pins: Annotated[bool, typer.Option(
        "--replace", help="Make this run's --pins the workspace's only pins.")] = False,
    embedder: Annotated[str, typer.Option(
        help="auto | clip | offline | a registered name | clip:CONFIG.json:CHECKPOINT")] = "auto",
    detector: Annotated[str, typer.Option(
        help=DETECTOR_HELP)] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model batch.")] = 32,
    engine: Annotated[str, typer.Option(
        help="local (threads here) or ray (Ray Data: this machine or a cluster).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        envvar="RAY_ADDRESS", help="--engine ray: the cluster to join (default: start a "
                                   "local Ray).")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="--engine ray: actors per model stage (default: one per node).")] = None,
    workspace: WorkspaceOption = None,
    models_dir: ModelsDirOption = None,
    runtime: RuntimeOption = "auto",
    device: DeviceOption = "auto",
    json: JsonOption = False,
) -> None:
    """Normalize a catalog, embed product images and texts, detect and embed pin crops.

    Resumable and incremental: re-running on unchanged input does no model work.

    Example: `pinshop ingest sample_data/catalog.csv --pins sample_data/pins`
    """
    from pinshop_cli import IngestConfig

    config = IngestConfig(embedder=embedder, detector=detector, batch_size=batch_size,
                          replace_pins=replace_pins, engine=engine, ray_address=ray_address,
                          workers=workers, runtime=runtime, device=device,
                          models_dir=str(models_dir) if models_dir else None)
    try:
        with (RichProgress() as progress,
              open_shop(workspace, models_dir, runtime, device) as shop):
            summary = shop.ingest(catalog, pins, config, progress)
    except KeyboardInterrupt:
        typer.echo("Interrupted: the batches already written are kept; the same command "
                   "resumes from them.", err=True)
        raise
    if json:
        print_json(summary)
        return
    rows = [["catalog rows", summary.rows_ok, f"{summary.rows_rejected} rejected"],
            ["pins", summary.pins_ok, f"{summary.pins_rejected} rejected"
             + (f", {summary.pins_removed} removed" if summary.pins_removed else "")],
            ["detections", summary.detections, f"detector {summary.detector or '-'}"]]
    for kind, count in summary.embedded.items():
        skipped = summary.already_done.get(kind, 0)
        rows.append([f"{kind} embeddings", count,
                     f"the crops of {skipped} unchanged pins skipped" if kind == "crop"
                     else f"{skipped} unchanged, skipped"])
    rows += [[f"seconds: {stage}", seconds, ""] for stage, seconds in summary.seconds.items()]
    if summary.engine == "ray":
        rows += [[f"batches on node {node}", count, ""] for node, count in summary.nodes.items()]
    runtime = f", {summary.runtime}" if summary.runtime else ""
    table(f"ingest into {summary.workspace} ({summary.embedder}{runtime})", ["", "count", ""],
          rows)
    if summary.unchanged:
        typer.echo("Nothing changed since the last ingest: no model work done.", err=True)
    if summary.rows_rejected or summary.pins_rejected:
        typer.echo("Rejected rows and files with reasons: pinshop sql "
                   "\"SELECT * FROM rejects_catalog\" (and rejects_pins)", err=True)
