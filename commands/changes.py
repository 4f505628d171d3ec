from __future__ import annotations

from typing import Annotated

import typer

from ._output import JsonOption, WorkspaceOption, echo, note, open_shop, print_json, table


def changes(
    since: Annotated[str | None, typer.Option(
        "--since", help="Compare each product's last price and stock before this date "
                        "(YYYY-MM-DD) with its latest (default: the last two snapshots).")
    ] = None,
    limit: Annotated[int, typer.Option(
        "--limit", "-n", min=1, help="Show at most this many changes (the largest drops "
                                     "first within each kind).")] = 50,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """List price drops and rises, products back in stock, sold out and removed.

    Every `pinshop ingest` of a catalog is a snapshot; what changed is kept in the
    price_history view (`pinshop sql "SELECT * FROM price_history"`); a product that left
    the feed has a row with availability 'removed'.

    Example: `pinshop changes --since 2026-11-01 --limit 20`
    """
    with open_shop(workspace) as shop:
        found = shop.changes(since, limit)
    if found.total > len(found):
        note(f"showing {len(found)} of {found.total} changes (--limit)")
    if json:
        print_json(found)
    elif not found:
        echo("no price or stock changes")
    else:
        table(None, ["id", "title", "change", "seen at", "was", "now", "currency",
                     "stock was", "stock now"],
              [[c.id, c.title, c.kind, c.seen_at, c.old_price, c.new_price, c.currency,
                c.old_availability, c.new_availability] for c in found])
