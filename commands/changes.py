from __future__ import annotations

from typing import Annotated

import typer

from ._output import JsonOption, WorkspaceOption, echo, open_shop, print_json, table


def changes(
    since: Annotated[str | None, typer.Option(
        "--since", help="Compare each product's last price and stock before this date "
                        "(YYYY-MM-DD) with its latest (default: the last two snapshots).")
    ] = None,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """List price drops and rises, products back in stock and products sold out.

    Every `pinshop ingest` of a catalog is a snapshot; what changed is kept in the
    price_history view (`pinshop sql "SELECT * FROM price_history"`).

    Example: `pinshop changes --since 2026-11-01`
    """
    with open_shop(workspace) as shop:
        found = shop.changes(since=since)
    if json:
        print_json(found)
    elif not found:
        echo("no price or stock changes")
    else:
        table(None, ["id", "title", "change", "seen at", "was", "now", "currency",
                     "stock was", "stock now"],
              [[c.id, c.title, c.kind, c.seen_at, c.old_price, c.new_price, c.currency,
                c.old_availability, c.new_availability] for c in found])
