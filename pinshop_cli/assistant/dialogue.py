"""The state of one conversation, kept in code: the shopper's earlier questions, the last
resolved intent and the products shown. Replaying the model's own answers only made small
models repeat themselves, so they are not kept.

Follow-ups read against it: "now in blue" keeps the category, "cheaper" means cheaper than
the product recommended first, "#2" points at the second product shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import PinshopError
from .intent import ORDINALS, Intent, is_follow_up

if TYPE_CHECKING:
    from ..retrieval.store import Product


@dataclass
class Dialogue:
    history: list[str] = field(default_factory=list)  # earlier questions (300 chars each)
    last_intent: Intent | None = None
    last_products: list[Product] = field(default_factory=list)  # shown, recommended first

    def reset(self) -> None:
        self.history, self.last_intent, self.last_products = [], None, []

    def follows_up(self, intent: Intent, question: str) -> bool:
        """Whether the request refers to the last turn (a follow-up is judged with it, not
        on its own words)."""
        return intent.reference != "none" or (bool(self.last_products)
                                              and is_follow_up(question))

    def resolve(self, intent: Intent, question: str = "") -> Intent:
        """Carry the previous turn into follow-ups and turn references into bounds."""
        previous, shown = self.last_intent, self.last_products
        pointed = self.anchor(intent) if intent.reference == "item_number" else None
        named = intent.category
        if previous is not None and intent.category is None and (
                intent.reference != "none" or is_follow_up(question)):
            intent = replace(intent, category=previous.category,
                             query=intent.query or previous.query,
                             color=intent.color or previous.color,
                             min_price=intent.min_price or previous.min_price,
                             max_price=(previous.max_price if intent.max_price is None
                                        else intent.max_price))
        if pointed is not None and named is None and pointed.category:
            intent = replace(intent, category=pointed.category)  # "more like #2": its kind
        # "Cheaper" means cheaper than the product recommended first (and within any bound
        # still in force); "more expensive" lifts the old ceiling.
        price = shown[0].price if shown else None
        if intent.reference == "cheaper" and price is not None:
            ceiling = max(0.0, min(price - 0.01,
                                   price if intent.max_price is None else intent.max_price))
            intent = replace(intent, max_price=round(ceiling, 2), min_price=None)
        elif intent.reference == "more_expensive" and price is not None:
            floor = max(price + 0.01, intent.min_price or price)
            intent = replace(intent, min_price=round(floor, 2), max_price=None)
        return intent

    def anchor(self, intent: Intent) -> Product | None:
        """The shown product a search is "more like": the one numbered ("#2"), or the one
        recommended first ("something similar")."""
        number, shown = intent.item_number, self.last_products
        if intent.reference == "item_number" and number and 0 < number <= len(shown):
            return shown[number - 1]
        if intent.reference == "similar" and shown:
            return shown[0]
        return None

    def subjects(self, question: str, named: list[Product], category: str | None
                 ) -> list[Product]:
        """The products a compare/decide/buy request is about: the shown items it points at
        ("#1 and #3", "the second one"), the catalog products it names (`named`), else the
        shown items (of `category`, the one it names, if any). Empty: find candidates."""
        text = question.lower()
        numbers = [int(a or b) for a, b in re.findall(r"#\s?(\d+)|\bnumber (\d+)\b", text)]
        numbers += [ORDINALS[w] for w in re.findall(r"\bthe (first|second|third|fourth)\b", text)]
        shown = len(self.last_products)
        if shown and (past := [n for n in numbers if not 0 < n <= shown]):
            # "compare #1 and #2" after one product: not a one-row comparison
            raise PinshopError(f"there is no #{past[0]} to point at: the last answer showed "
                               f"{shown}")
        chosen = [self.last_products[n - 1] for n in dict.fromkeys(numbers)] if shown else []
        chosen += [p for p in named if p not in chosen]
        if chosen or numbers:  # with nothing shown, an item number points at nothing
            return chosen
        return [p for p in self.last_products if category in (None, p.category)]

    def remember(self, question: str, intent: Intent, shown: list[Product]) -> None:
        """A finished turn: its question, what it was read as, and the products shown."""
        self.history.append(question[:300])
        self.last_intent = intent
        if shown:
            self.last_products = shown
