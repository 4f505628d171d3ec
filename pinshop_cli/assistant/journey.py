"""The steps of the shopping journey: search, compare, decide, buy, and out-of-scope
requests; `Journey.step` takes the one the intent names.

Everything said here is rendered by code from catalog rows: the comparison table, the pick
and its reasons, the stock and link of the product to buy. The model writes the answer to a
search and a short summary of a comparison, and both go through the same guard
(answer.py).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING

from ..retrieval.policy import SHOWN
from .answer import Answerer, Reply, relaxed_prefix
from .grounding import row_text
from .vocabulary import DIMENSION, MATERIALS, words

if TYPE_CHECKING:
    from ..retrieval.store import Product
    from .dialogue import Dialogue
    from .intent import Intent

REFUSAL = ("I can only help with shopping in this catalog: ask me for a product (\"a cream "
           "armchair under 600\"), to compare or pick between the ones I showed, or how to "
           "buy one.")
NOTHING = "I couldn't find anything in the catalog for that."
RELAXED_NOTE = ("None of the products meets every request; present them honestly as the "
                "closest alternatives.")
COMPARE_NOTE = ("The shopper sees a table of these products. In two sentences, say how they "
                "differ and which suits what kind of shopper, citing each by its [id].")
# Words of the asking itself, never a need a product should meet.
QUESTION_WORDS = frozenset({"which", "should", "would", "pick", "choose", "decide", "help",
                            "best", "better", "these", "those", "them", "between", "what",
                            "your", "prefer", "recommend", "think", "ones", "take", "there",
                            "compare", "buy", "where", "order", "more", "most", "like"})
TABLE_COLUMNS = ("product", "price", "colour", "material", "dimensions", "availability",
                 "link")
NOT_STATED = "not stated"


class Journey:
    """Takes one step of the journey for a turn whose rows are found: streams its text and
    returns its Reply. `because` names the shopper's own event behind the first product
    ("Because you saved ..."; "" when none); `ignore` are words no pick should weigh."""

    def __init__(self, answerer: Answerer, dialogue: Dialogue,
                 because: Callable[[list[Product]], str], ignore: set[str]) -> None:
        self.answerer, self.dialogue = answerer, dialogue
        self.because, self.ignore = because, ignore

    def step(self, question: str, intent: Intent, rows: list[Product], relaxed: list[str],
             timings: dict[str, float]) -> Generator[str, None, Reply]:
        if intent.action == "out_of_scope":
            yield REFUSAL
            return Reply(REFUSAL, intent, [], timings=timings)
        if not rows:
            yield NOTHING
            return Reply(NOTHING, intent, [], [], False, relaxed, timings=timings)
        prefix = relaxed_prefix(intent, relaxed)
        if prefix:  # say so before any answer, table, pick or link
            yield prefix
        if intent.action == "compare":
            return (yield from self.compare(question, intent, rows, relaxed, timings))
        if intent.action == "decide":
            best, reasons = pick(rows, question, self.ignore, intent.max_price)
            because = self.because([best])
            text = " ".join(filter(None, [decision_text(best, reasons), because]))
            yield text
            return Reply(prefix + text, intent, [best], rows, exact=not relaxed,
                         relaxed=relaxed, timings=timings, because=because)
        if intent.action == "buy":
            row = rows[0]  # the one pointed at, else the one recommended first
            text = buy_text(row)
            yield text
            return Reply(prefix + text, intent, [row], rows, exact=not relaxed,
                         relaxed=relaxed, timings=timings)
        said = yield from self.answerer.stream(question, rows, RELAXED_NOTE if relaxed else "",
                                               self.dialogue)
        because = self.because(said.cited)
        if because:
            yield " " + because
        return Reply(" ".join(filter(None, [prefix + said.text, because])), intent,
                     said.cited, rows, not relaxed, relaxed, not said.violations,
                     [str(v) for v in said.violations], {**timings, **said.timings},
                     removed=said.removed, because=because)

    def compare(self, question: str, intent: Intent, rows: list[Product], relaxed: list[str],
                timings: dict[str, float]) -> Generator[str, None, Reply]:
        """A table rendered from the rows, and the model's guarded two-sentence summary."""
        rows = rows[:SHOWN]
        table = comparison_table(rows)
        text = render_table(table) + "\n"
        yield text
        said = yield from self.answerer.stream(question, rows, COMPARE_NOTE, self.dialogue)
        return Reply(relaxed_prefix(intent, relaxed) + text + said.text, intent, rows, rows,
                     exact=not relaxed, relaxed=relaxed, grounded=not said.violations,
                     violations=[str(v) for v in said.violations],
                     timings={**timings, **said.timings}, table=table, removed=said.removed)


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
