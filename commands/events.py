from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._output import JsonOption, WorkspaceOption, echo, note, open_shop, print_json, table


def ingest_events(
    events: Annotated[Path, typer.Argument(
        help="CSV or Parquet with user_id, item_id, event (view|click|save|cart|purchase), "
             "ts, optional weight.")],
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Validate user interactions and add them to events.parquet (idempotent).

    Rows with unknown item ids, bad timestamps or unknown event types go to
    rejects/events.parquet with their line number and reason.

    Example: `pinshop ingest-events events.csv`
    """
    with open_shop(workspace) as shop:
        summary = shop.ingest_events(events)
    if json:
        print_json(summary)
        return
    for message in summary.notes:
        note(message)
    table(f"events from {events}", ["ok", "rejected", "new", "total in workspace"],
          [[summary.rows_ok, summary.rows_rejected, summary.added, summary.total]])
    if summary.rows_rejected:
        echo('Reasons: pinshop sql "SELECT * FROM rejects_events"', err=True)


def generate_events(
    out: Annotated[Path, typer.Argument(help="Where to write the events (.parquet or .csv).")],
    users: Annotated[int, typer.Option(
        min=1, help="Number of shoppers (at most one per event).")] = 500,
    events: Annotated[int, typer.Option(
        min=1, help="Events to write: at most this many, short by less than one "
                    "browsing session.")] = 50_000,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 180,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    workspace: WorkspaceOption = None,
) -> None:
    """Generate realistic synthetic shoppers' events for the workspace catalog.

    Users with latent category and style preferences, sessions, a view -> click -> save ->
    cart -> purchase funnel and seasonality; styles come from the product embeddings.

    Example: `pinshop generate-events events.parquet --users 300`, then
    `pinshop ingest-events events.parquet`
    """
    from pinshop_cli.synth.events import SynthConfig, generate_for_workspace

    count = generate_for_workspace(out, SynthConfig(users=users, events=events, days=days,
                                                    seed=seed), workspace)
    echo(f"{count} events written to {out}", err=True)
