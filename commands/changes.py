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
    """List price drops and rises, products back in stock, sold out, removed and back.

    Every `pinshop ingest` of a catalog is a snapshot; what changed is kept in the
    price_history view (`pinshop sql "SELECT * FROM price_history"`); a product that left
    the feed has a row with availability 'removed'.

    Example: `pinshop changes --since 2026-11-01 --limit 20`
    """
    with open_shop(workspace) as shop:
        found = shop.changes(since, limit)
    for text in found.notes:  # damaged history parts: what this answer may miss
        note(text)
    if found.total > len(found):
        note(f"showing {len(found)} of {found.total} changes (--limit)")
    if json:
        print_json(found)
    elif not found:
        echo("no price or stock changes")
    else:
        # Six columns, not nine, so that a row fits 80 columns (--json has every field);
        # the change column says what changed, so stock shows what it is now.
        currencies = {c.currency for c in found}
        one = currencies.pop() if len(currencies) == 1 else None
        table(None, ["id", "title", "change", "seen on", f"price ({one})" if one else "price",
                     "stock"],
              [[c.id, c.title, c.kind, c.seen_at[:10],
                _was_now(c.old_price, c.new_price, None if one else c.currency),
                c.new_availability or c.old_availability] for c in found],
              wrap="title")


def _was_now(old: float | None, new: float | None, unit: str | None = None) -> str:
    """"149.00 → 129.00 EUR" for a change, "129.00 EUR" for none, the known side when the
    other is missing (two decimals, as every other table shows prices)."""
    if old is not None and new is not None and old != new:
        shown = f"{old:.2f} → {new:.2f}"
    else:
        known = new if new is not None else old
        shown = "" if known is None else f"{known:.2f}"
    return f"{shown} {unit}" if unit and shown else shown
