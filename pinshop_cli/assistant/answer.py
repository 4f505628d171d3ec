"""The guarded answer, and the Reply a turn ends with.

The model writes a few sentences about the retrieved rows only, citing them as [id]. Every
sentence is checked (grounding.check) before it is shown, and ids are rendered into catalog
titles and prices by code; a sentence making a descriptive claim its rows do not support is
cut. A failing sentence stops the model and a truthful templated answer takes over. The
rows' last price changes (assistant/history.py, one query for the rows of the turn) are
given to the model and are all the guard lets it say about past prices.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .grounding import (
    ID_PATTERN,
    Violation,
    bracket_bare_ids,
    check,
    cited_ids,
    unsupported_claims,
    without_past_prices,
)
from .prompt import answer_messages

if TYPE_CHECKING:
    from ..models import ChatModel
    from ..retrieval.store import CatalogStore, Product
    from .dialogue import Dialogue
    from .history import PriceChange
    from .intent import Intent

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class Answer:
    """What the model's answer became after the guard."""

    text: str
    cited: list[Product]
    violations: list[Violation]  # a hard violation: the templated answer took over
    timings: dict[str, float]
    removed: list[str]  # sentences cut for descriptive claims their rows do not support


@dataclass
class Reply:
    answer: str
    intent: Intent
    products: list[Product]  # the catalog rows the answer cites
    candidates: list[Product] = field(default_factory=list)  # rows retrieved for this turn
    exact: bool = True  # False: nothing met every constraint; closest alternatives shown
    relaxed: list[str] = field(default_factory=list)  # constraints dropped to find them
    grounded: bool = True  # False: the model's text failed a check and a template replaced it
    violations: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    intent_source: str = ""  # "rules" (the words were unambiguous) or "model"
    table: list[dict[str, str]] = field(default_factory=list)  # compare: rendered by code
    removed: list[str] = field(default_factory=list)  # sentences cut for unsupported claims
    because: str = ""  # "because you saved ..." (only when the shopper's events show it)
    notes: list[str] = field(default_factory=list)  # e.g. answered from a stale index

    def to_dict(self) -> dict[str, Any]:
        """The documented --json shape plus a few extras."""
        return {"answer": self.answer, "intent": asdict(self.intent),
                "intent_source": self.intent_source, "action": self.intent.action,
                "table": self.table, "removed_claims": self.removed,
                "because": self.because,
                "products": [{"id": p.id, "title": p.title, "price": p.price}
                             for p in self.products],
                "exact": self.exact, "relaxed": self.relaxed, "grounded": self.grounded,
                "violations": self.violations, "timings": self.timings, "notes": self.notes}


def render(text: str, products: list[Product]) -> str:
    """[id] citations replaced by the rows' titles and prices."""
    by_id = {p.id: p for p in products}
    return ID_PATTERN.sub(lambda m: by_id[m.group(1)].render() if m.group(1) in by_id
                          else m.group(0), text)


def template(products: list[Product]) -> str:
    """The truthful answer that takes over from a failing one: the rows as they are."""
    def line(p: Product) -> str:
        stock = p.availability or "in_stock"
        return p.render() + ("" if stock == "in_stock" else f" - {stock.replace('_', ' ')}")

    return "Here is what the catalog has: " + "; ".join(line(p) for p in products) + "."


def relaxed_prefix(intent: Intent, relaxed: list[str]) -> str:
    """'Nothing in the catalog matches the colour purple; the closest alternatives: '."""
    if not relaxed:
        return ""
    wanted = ", ".join(_describe(intent, r) for r in relaxed)
    return f"Nothing in the catalog matches {wanted}; the closest alternatives: "


def _describe(intent: Intent, constraint: str) -> str:
    if constraint == "query":
        return "that request"
    if constraint == "color":
        return f"the colour {intent.color}"
    if constraint == "category":
        return f"the category {intent.category}"
    bounds = []
    if intent.min_price:
        bounds.append(f"from {intent.min_price:g}")
    if intent.max_price is not None:  # "under 0" is a bound too
        bounds.append(f"up to {intent.max_price:g}")
    return "a price " + " ".join(bounds)


class Answerer:
    """Streams the model's answer about some rows through the guard."""

    def __init__(self, model: ChatModel, store: CatalogStore, catalog_words: frozenset[str],
                 max_tokens: int = 160) -> None:
        self.model, self.store = model, store
        self.catalog_words, self.max_tokens = catalog_words, max_tokens

    def messages(self, question: str, products: list[Product], note: str,
                 history: list[str], changes: Mapping[str, PriceChange] | None = None
                 ) -> list[dict[str, str]]:
        return answer_messages(self.model, question, products, note, history, self.max_tokens,
                               changes)

    def price_changes(self, products: list[Product]) -> dict[str, PriceChange]:
        """The last price change of each of `products` (only these ids are read)."""
        from .history import last_price_changes

        return last_price_changes(self.store.ws.root, products, self.store.con)

    def stream(self, question: str, products: list[Product], note: str, dialogue: Dialogue
               ) -> Generator[str, None, Answer]:
        """Yields the sentences that pass the guard (rendered) as they are written, and
        returns the Answer; the template, when it takes over, is the last piece."""
        # Products shown earlier in the conversation are catalog rows too: the model may
        # refer back to them ("cheaper than the armchair"), rendered from the catalog.
        known = products + [p for p in dialogue.last_products if p not in products]
        known_ids = [p.id for p in known]
        shown: list[str] = []
        removed: list[str] = []
        violations: list[Violation] = []
        lead_cut = False  # the first sentence naming a product, the recommendation, was cut
        named_yet = False  # a sentence shown so far names a product
        buffer = ""
        started = time.perf_counter()
        changes = self.price_changes(known)
        timings: dict[str, float] = {"history_s": round(time.perf_counter() - started, 4)}
        started = time.perf_counter()
        tokens = 0
        subjects = products  # what a sentence citing no product talks about: the last cited

        def accept(sentence: str) -> str | None:
            """The sentence as shown; "" when cut for an unsupported claim; None when it
            fails a hard check or is the lead and cut (the answer stops there)."""
            nonlocal violations, subjects, lead_cut, named_yet
            sentence = bracket_bare_ids(sentence, known_ids)
            titles = self.store.titles_in(sentence)
            problems = check(sentence, known, titles, changes)
            if problems:
                violations = problems
                return None
            ids = cited_ids(sentence)
            subjects = [p for p in known if p.id in ids] or subjects
            claims = unsupported_claims(without_past_prices(sentence), subjects,
                                        self.catalog_words, titles)
            if claims:  # cut the sentence, never show it; the rest of the answer goes on
                removed.append(f"{sentence} ({'; '.join(str(c) for c in claims)})")
                # ... unless it was the lead, the first to name a product: what follows it
                # ("X is a nice alternative") reads wrong without it, so the answer stops
                # and the template leads.
                lead_cut = bool(ids) and not named_yet
                return None if lead_cut else ""
            named_yet = named_yet or bool(ids)
            shown.append(render(sentence, known))
            return shown[-1]

        introduction = ""  # a shown sentence ending in ":", held until what it introduces

        def release(said: str) -> Iterator[str]:
            nonlocal introduction
            if introduction:
                yield introduction + " "
            introduction = said if said.endswith(":") else ""
            if not introduction:
                yield said + " "

        for piece in self.model.stream(self.messages(question, products, note,
                                                     dialogue.history, changes),
                                       max_tokens=self.max_tokens, temperature=0.3,
                                       repeat_penalty=1.1):
            tokens += 1
            timings.setdefault("first_token_s", round(time.perf_counter() - started, 3))
            buffer += piece
            parts = SENTENCE_END.split(buffer)
            buffer = parts.pop()
            failed = False
            for sentence in filter(None, (s.strip() for s in parts)):
                said = accept(sentence)
                if said is None:
                    failed = True
                    break
                if said:
                    yield from release(said)
            if failed:
                break
        else:  # the model's last words, unless cut off by max_tokens mid-sentence
            if buffer.strip() and tokens < self.max_tokens and (said := accept(buffer.strip())):
                yield from release(said)
        if introduction:  # what it introduced never came: "here is a breakdown:" alone
            shown.remove(introduction)
        timings["generate_s"] = round(time.perf_counter() - started, 3)
        timings["tokens"] = tokens
        # The rows the answer names, in the order it names them: the first is the one the
        # shopper reads as the recommendation ("something cheaper" means cheaper than it).
        said_text = " ".join(shown).lower()
        position: dict[str, int] = {}
        for p in sorted(known, key=lambda p: len(p.title), reverse=True):
            at = said_text.find(p.title.lower())
            if at >= 0:  # mask it: a shorter title inside it is not a mention
                position[p.id] = at
                said_text = said_text.replace(p.title.lower(), " " * len(p.title))
        cited = sorted((p for p in known if p.id in position), key=lambda p: position[p.id])
        if violations or lead_cut or not cited:
            shown.append(template(products))
            yield shown[-1]
            cited = products
        return Answer(" ".join(shown).strip(), cited, violations, timings, removed)
