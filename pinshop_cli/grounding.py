"""Guardrails, checked in code: what the chat model writes may only state products, prices
and availability that are in the rows it was given.

The model refers to products by id ("[P001]"); code renders ids into titles and catalog
prices, so names and prices in the final answer come from the catalog. The checks below
catch what the model writes on its own: a price, a "free", an id or catalog title it was
not given, or an availability claim the rows contradict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

ID_PATTERN = re.compile(r"\[([^\[\]\n]{1,40})\]")  # any [token]: it must be a shown id
PRICE_PATTERN = re.compile(
    r"(?:[$€£]\s?(\d[\d,]*(?:\.\d+)?))"
    r"|(?:(\d[\d,]*(?:\.\d+)?)\s?(?:eur|euros?|usd|dollars?|gbp|pounds?|€|\$|£)\b)",
    re.IGNORECASE)
# "free" as a price ("it's free", "for free"), not "feel free to ask" or "BPA-free".
FREE_PATTERN = re.compile(r"(?<!feel )(?<!-)\b(free of charge|for free|free|no cost|"
                          r"costs nothing|for nothing|zero cost|100% off)\b(?! to\b)(?!-)",
                          re.IGNORECASE)
IN_STOCK = re.compile(r"\b(in stock|available now|available|ships today)\b", re.IGNORECASE)
OUT_OF_STOCK = re.compile(r"\b(out of stock|sold out|unavailable|not available)\b",
                          re.IGNORECASE)


class Row(Protocol):
    id: str
    title: str
    price: float | None
    availability: str | None


@dataclass(frozen=True)
class Violation:
    kind: str  # price | id | title | availability
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def cited_ids(text: str) -> list[str]:
    return list(dict.fromkeys(ID_PATTERN.findall(text)))


def _prices(text: str) -> list[float]:
    found = []
    for match in PRICE_PATTERN.finditer(ID_PATTERN.sub(" ", text)):
        number = (match.group(1) or match.group(2)).replace(",", "")
        found.append(float(number))
    if FREE_PATTERN.search(text):
        found.append(0.0)
    return found


def check(text: str, rows: Sequence[Row], catalog_titles: Iterable[str] = ()) -> list[Violation]:
    """Everything in `text` (model output, before rendering) that the rows do not support."""
    by_id = {row.id: row for row in rows}
    violations = [Violation("id", f"[{pid}] is not one of the retrieved products")
                  for pid in cited_ids(text) if pid not in by_id]
    known_prices = [row.price for row in rows if row.price is not None]
    for price in _prices(text):
        if not any(abs(price - known) < 0.01 for known in known_prices):
            violations.append(Violation("price", f"{price:g} is not the price of any product "
                                                 "shown"))
    # Remove the allowed titles first (longest first): another product's title may be a
    # prefix of an allowed one ("Oslo Chair" inside "Oslo Chair Black").
    remainder = text.lower()
    for title in sorted({row.title.lower() for row in rows}, key=len, reverse=True):
        remainder = remainder.replace(title, " ")
    for title in catalog_titles:
        if len(title) > 6 and title.lower() in remainder:
            violations.append(Violation("title", f"{title!r} was not retrieved"))
    cited = [by_id[pid] for pid in cited_ids(text) if pid in by_id] or list(rows)
    if OUT_OF_STOCK.search(text):
        if any((row.availability or "in_stock") == "in_stock" for row in cited):
            violations.append(Violation("availability", "says out of stock; the catalog "
                                                        "says in stock"))
    elif IN_STOCK.search(text) and any(
            (row.availability or "in_stock") != "in_stock" for row in cited):
        violations.append(Violation("availability", "says available; the catalog says "
                                                    "otherwise"))
    return violations
