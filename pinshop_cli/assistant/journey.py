"""The shopping journey beyond search: compare, decide, buy, and out-of-scope requests.

Everything said here is rendered by code from catalog rows: the comparison table, the pick
and its reasons, the stock and link of the product to buy. The model only adds a short
summary to a comparison, and that goes through the same guard as every answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .grounding import row_text
from .vocabulary import DIMENSION, MATERIALS, words

if TYPE_CHECKING:
    from ..retrieval.store import Product

ACTIONS = ("search", "compare", "decide", "buy", "out_of_scope")
COMPARE = re.compile(r"\b(compare|comparison|versus|vs\.?|difference|differences|"
                     r"side by side|which is better)\b", re.IGNORECASE)
DECIDE = re.compile(r"\b(which (one|should|would|do you)|should i (pick|choose|get|buy|go)|"
                    r"pick (one|for me)|choose for me|help me (decide|choose|pick)|"
                    r"what would you (pick|choose|get)|your pick|decide)\b", re.IGNORECASE)
BUY = re.compile(r"\b(i'?ll take|i will take|i'?ll get|buy|purchase|order (it|this|that|one)|"
                 r"add (it )?to (my )?(cart|basket)|check ?out|where (can|do) i (get|buy|order)|"
                 r"how (can|do) i (get|buy|order)|is it in stock|in stock)\b", re.IGNORECASE)
REFUSAL = ("I can only help with shopping in this catalog: ask me for a product (\"a cream "
           "armchair under 600\"), to compare or pick between the ones I showed, or how to "
           "buy one.")
# Words of the asking itself, never a need a product should meet.
QUESTION_WORDS = frozenset({"which", "should", "would", "pick", "choose", "decide", "help",
                            "best", "better", "these", "those", "them", "between", "what",
                            "your", "prefer", "recommend", "think", "ones", "take", "there",
                            "compare", "buy", "where", "order", "more", "most", "like"})
TABLE_COLUMNS = ("product", "price", "colour", "material", "dimensions", "availability",
                 "link")
NOT_STATED = "not stated"


def action_in_words(question: str) -> str:
    """The journey step the shopper's words name; "search" when they name none."""
    for action, pattern in (("compare", COMPARE), ("buy", BUY), ("decide", DECIDE)):
        if pattern.search(question):
            return action
    return "search"


def materials(row: Product) -> str:
    found = sorted(words(row_text(row)) & MATERIALS)
    return ", ".join(found) or NOT_STATED


def dimensions(row: Product) -> str:
    found = DIMENSION.findall(f"{row.title} {row.description or ''}")
    return ", ".join(dict.fromkeys(" ".join(m.split()) for m in found)) or NOT_STATED


def availability(row: Product) -> str:
    return row.availability.replace("_", " ") if row.availability else NOT_STATED


def comparison_table(rows: Sequence[Product]) -> list[dict[str, str]]:
    """One dict per product, the TABLE_COLUMNS, every cell from the row."""
    return [{"id": row.id, "product": row.title, "price": row.price_text(),
             "colour": row.color or NOT_STATED, "material": materials(row),
             "dimensions": dimensions(row), "availability": availability(row),
             "link": row.url or "none in the catalog"} for row in rows]


def render_table(table: list[dict[str, str]]) -> str:
    """A plain-text table (the terminal and --once); --json gets the list itself."""
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in TABLE_COLUMNS}
    lines = [" | ".join(c.ljust(widths[c]) for c in TABLE_COLUMNS),
             "-+-".join("-" * widths[c] for c in TABLE_COLUMNS)]
    lines += [" | ".join(r[c].ljust(widths[c]) for c in TABLE_COLUMNS) for r in table]
    return "\n".join(lines)


def needs_in(question: str, ignore: set[str]) -> set[str]:
    """The shopper's content words ("small", "flat", "kids"): what a pick should answer."""
    return {w for w in words(question) if len(w) > 3 and w not in ignore}


def pick(rows: Sequence[Product], question: str, ignore: set[str],
         max_price: float | None = None) -> tuple[Product, list[str]]:
    """The row that meets most of the shopper's stated needs (ties: the better-ranked one),
    with reasons quoted from that row."""
    needs = needs_in(question, ignore)
    affordable = [r for r in rows if max_price is None or (r.price or 0) <= max_price] or rows
    best = max(affordable, key=lambda r: (len(needs & words(row_text(r))),
                                          -affordable.index(r)))
    matched = sorted(needs & words(row_text(best)))
    reasons = []
    if matched:
        reasons.append("it matches what you asked for (" + ", ".join(matched) + ")")
    if best.description:
        reasons.append(f"the catalog describes it as \u201c{best.description.strip()}\u201d")
    if max_price is not None and best.price is not None:
        reasons.append(f"it is within your {max_price:g} budget" if best.price <= max_price
                       else f"none of these is within your {max_price:g} budget")
    if not matched:
        reasons.append("it is the closest match to your request among these")
    return best, reasons


def decision_text(best: Product, reasons: list[str]) -> str:
    return f"My pick: {best.render()}, because " + "; ".join(reasons) + "."


def buy_text(row: Product) -> str:
    """Stock and link exactly as the row has them; never invented."""
    if row.availability:
        stock = f"the catalog lists it as {availability(row)}"
    else:
        stock = "the catalog does not say whether it is in stock"
    link = (f"Buy it here: {row.url}" if row.url else
            "The catalog has no link for it; ask the shop directly.")
    return f"{row.render()}: {stock}. {link}"
