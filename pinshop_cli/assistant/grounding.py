"""Guardrails, checked in code: what the chat model writes may only state products, prices
and availability that are in the rows it was given.

The model refers to products by id ("[P001]"); code renders ids into titles and catalog
prices, so names and prices in the final answer come from the catalog. The checks below
catch what the model writes on its own: a price, a "free", an id or catalog title it was
not given, or an availability claim the rows contradict.

Ids: every "[token]" must be the id of a row shown to the model, so an id of a real catalog
row that was not retrieved is a violation too (it would reach the shopper unrendered and
unchecked). Titles: a catalog title written right next to an id ("[P002] Oslo Chair",
"Oslo Chair ([P002])", an echoed `<product id="P002">title: "Oslo Chair"`) must be that
id's own title: otherwise the rendered answer would put one product's name on another's
price. Titles separated from an id by words or a comma ("than the Oslo Chair, [P002] is")
are comparisons and allowed. Markup: the prompt's `<product>` blocks are data for the
model; an answer that echoes them is a violation.

Past prices: "down from 129.00 on 2026-11-02", "was 129.00", "reduced from $129" and any
date the answer writes must be a cited product's last price change as the price history
gives it (assistant/history.py); the model is given nothing else to date a price by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from .vocabulary import AVAILABILITY, COLOURS, DIMENSION, FAMILIES, MATERIALS, QUALITY, words

if TYPE_CHECKING:
    from .history import PriceChange

ID_PATTERN = re.compile(r"\[([^\[\]\n]{1,40})\]")  # any [token]: it must be a shown id
PRICE_PATTERN = re.compile(
    r"(?:[$€£]\s?(\d[\d,]*(?:\.\d+)?))"
    r"|(?:(\d[\d,]*(?:\.\d+)?)\s?(?:eur|euros?|usd|dollars?|gbp|pounds?|€|\$|£)\b)",
    re.IGNORECASE)
# "free" as a price ("it's free", "for free"), not "feel free to ask" or "BPA-free".
FREE_PATTERN = re.compile(r"(?<!feel )(?<!-)\b(free of charge|for free|free|no cost|"
                          r"costs nothing|for nothing|zero cost|100% off)\b(?! to\b)(?!-)",
                          re.IGNORECASE)
# An echo of the prompt's <product ...> data blocks, and the id attribute inside one.
MARKUP_PATTERN = re.compile(r"<\s*/?\s*product\b", re.IGNORECASE)
MARKUP_ID = re.compile(r"""<\s*product\b[^<>]*?\bid\s*=\s*["']?([^"'\s<>]{1,40})["']?[^<>]*>?""",
                       re.IGNORECASE)
# What may stand between an id and the title it labels: spaces, quotes, brackets, a colon or
# dash, emphasis, an echoed `title:` field. Commas and words are not: "than the Oslo Chair,
# [P2] is cheaper" compares two products and must stay allowed.
LABEL_AFTER = re.compile(r"""(?:[\s"'`*_:=()>\-\u2013\u2014]|\btitle\b)*""", re.IGNORECASE)
LABEL_BEFORE = re.compile(r"""[\s"'`*_:=(\-\u2013\u2014]*$""")
MIN_TITLE = 7  # shorter catalog titles ("Rug") are ordinary words, not names
IN_STOCK = re.compile(r"\b(in stock|available now|available|ships today)\b", re.IGNORECASE)
OUT_OF_STOCK = re.compile(r"\b(out of stock|sold out|unavailable|not available)\b",
                          re.IGNORECASE)
# A past price: "down from 129.00", "dropped from $129", "up from 99 EUR" (any number after
# "from"), or "was 129.00" / "used to cost €129" (a currency or two decimals: "was 2" is not).
_CURRENCY = r"(?:eur|euros?|usd|dollars?|gbp|pounds?)"
_AMOUNT = (rf"(?:[$€£]\s?(?P<{{n}}1>\d[\d,]*(?:\.\d+)?)|(?P<{{n}}2>\d[\d,]*(?:\.\d+)?)"
           rf"(?![\d.,]*\s?%)(?:\s?{_CURRENCY}\b|\s?[€$£])?)")  # "from 100% linen": no price
_STRICT = (rf"(?:[$€£]\s?(?P<{{n}}1>\d[\d,]*(?:\.\d+)?)|(?P<{{n}}2>\d[\d,]*\.\d\d)\b"
           rf"|(?P<{{n}}3>\d[\d,]*(?:\.\d+)?)\s?(?:{_CURRENCY}\b|[€$£]))")
FROM_CLAIM = re.compile(
    r"\b(?P<way>down|dropped|drops|reduced|cut|lowered|fell|falls|marked down|discounted|"
    r"up|raised|rose|rises|increased|went up|gone up)\b[^.!?\d\[\]]{0,24}?\bfrom\s+"
    + _AMOUNT.format(n="a"), re.IGNORECASE)
WAS_CLAIM = re.compile(
    r"\b(?:was|were|used to (?:be|cost)|previously|formerly|originally|once cost)"
    r"(?:\s+(?:priced at|at|costing|selling for|sold for|only|just))?\s+"
    + _STRICT.format(n="b"), re.IGNORECASE)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
DATE_PATTERN = re.compile(
    r"\b(?P<iso>\d{4}-\d{2}-\d{2})\b"
    rf"|\b(?P<md>{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})\b"
    rf"|\b(?P<dm>\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}})\b", re.IGNORECASE)
_DOWN_WORDS = ("down", "dropped", "drops", "reduced", "cut", "lowered", "fell", "falls",
               "marked down", "discounted")


class Row(Protocol):
    id: str
    title: str
    price: float | None
    availability: str | None


class DescribedRow(Row, Protocol):
    """A row with the columns descriptive claims are checked against."""

    category: str | None
    brand: str | None
    color: str | None
    description: str | None


@dataclass(frozen=True)
class Violation:
    kind: str  # price | id | title | markup | availability | history | claim
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def _iso_date(match: re.Match[str]) -> str | None:
    """A date the text writes, as YYYY-MM-DD (None: not a calendar date)."""
    if match.group("iso"):
        text, formats = match.group("iso"), ["%Y-%m-%d"]
    else:
        text = re.sub(r"(?<=\d)(st|nd|rd|th)\b|[.,]", "", match.group(0), flags=re.IGNORECASE)
        text = " ".join(text.split())
        formats = ["%b %d %Y", "%B %d %Y", "%d %b %Y", "%d %B %Y"]
        text = re.sub(r"\bsept\b", "sep", text, flags=re.IGNORECASE)
    for form in formats:
        try:
            return datetime.strptime(text, form).strftime("%Y-%m-%d")
        except ValueError:
            continue
    return None


def history_claims(text: str, changes: Sequence[PriceChange]) -> tuple[list[Violation], str]:
    """Past prices and dates in `text` that `changes` (the cited products' last price
    changes) do not state, and the text with the past-price phrases blanked (a supported
    "was $129" is not a current price for the price check)."""
    violations = []
    dates = [(m, _iso_date(m)) for m in DATE_PATTERN.finditer(text)]
    for match, iso in dates:
        if iso is None or not any(c.changed_on == iso for c in changes):
            violations.append(Violation("history", f"{match.group(0)!r} is not the date of a "
                                                   "price change shown"))
    said = {iso for _, iso in dates if iso}
    blanked = text
    claims = [(m, "a", m.group("way").lower()) for m in FROM_CLAIM.finditer(text)]
    claims += [(m, "b", "") for m in WAS_CLAIM.finditer(text)]
    for match, name, way in claims:
        number = next(g for g in (match.group(f"{name}{i}") for i in (1, 2, 3)
                                  if f"{name}{i}" in match.re.groupindex) if g)
        price = float(number.replace(",", ""))
        fits = [c for c in changes if abs(c.old_price - price) < 0.01
                and (not way or c.down == (way in _DOWN_WORDS))
                and (not said or c.changed_on in said)]
        if not fits:
            violations.append(Violation("history", f"{match.group(0).strip()!r} is not a price "
                                                   "change in the price history"))
        blanked = blanked[:match.start()] + " " * len(match.group(0)) + blanked[match.end():]
    return violations, blanked


def without_past_prices(text: str) -> str:
    """`text` with its past-price phrases and dates blanked: once `check` has found them
    in the history, their words ("down" from 129.00) are no descriptive claim."""
    for pattern in (FROM_CLAIM, WAS_CLAIM, DATE_PATTERN):
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def bracket_bare_ids(text: str, ids: Iterable[str]) -> str:
    """`text` with the shown `ids` it writes bare (P012, "P012") as citations ([P012]), so
    they are checked and rendered like any other: small chat models drop the brackets
    (SmolLM2 wrote '"P012"'). Only ids of 3 to 40 characters holding a letter and a digit
    (a bare number is a price or a quantity as often as an id; "3D" and "4K" are words),
    and never inside brackets already ("[P012, P013]" stays for the id check to refuse)."""
    distinct = sorted((i for i in ids if 3 <= len(i) <= 40 and re.search(r"[^\W\d_]", i)
                       and re.search(r"\d", i)), key=len, reverse=True)
    if not distinct:
        return text
    alternatives = "|".join(map(re.escape, distinct))
    bare = re.compile(r"""(?<![\w\[=\-/.])(?<!=["'])"""
                      rf"""(?:(?P<quote>["'`])(?P<quoted>{alternatives})(?P=quote)"""
                      rf"""|\u201c(?P<curly>{alternatives})\u201d|(?P<plain>{alternatives}))"""
                      r"""(?![\w\]\-/])""")

    def cite(match: re.Match[str]) -> str:
        return f"[{match.group('quoted') or match.group('curly') or match.group('plain')}]"

    # Text outside any [...] span, one piece at a time.
    pieces = re.split(r"(\[[^\[\]\n]*\])", text)
    return "".join(piece if n % 2 else bare.sub(cite, piece) for n, piece in enumerate(pieces))


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


def _citations(text: str) -> list[tuple[str, int, int]]:
    """(id, start, end) of every id the text cites: [P001] and echoed <product id="P001">."""
    found = [(m.group(1), m.start(), m.end()) for m in ID_PATTERN.finditer(text)]
    found += [(m.group(1), m.start(), m.end()) for m in MARKUP_ID.finditer(text)]
    return sorted(found, key=lambda c: c[1])


def _title_after(lower: str, pos: int, titles: set[str], lengths: list[int]) -> str | None:
    """The longest known title that starts at `pos` and ends at a word boundary."""
    for length in lengths:
        end = pos + length
        if lower[pos:end] in titles and (end == len(lower) or not lower[end].isalnum()):
            return lower[pos:end]
    return None


def _title_before(lower: str, end: int, titles: set[str], lengths: list[int]) -> str | None:
    """The longest known title that ends at `end` and starts at a word boundary."""
    for length in lengths:
        start = end - length
        if (start >= 0 and lower[start:end] in titles
                and (start == 0 or not lower[start - 1].isalnum())):
            return lower[start:end]
    return None


def _mislabelled(text: str, by_id: dict[str, Row],
                 catalog_titles: Iterable[str]) -> list[Violation]:
    """Ids written right next to a catalog title that is not theirs."""
    citations = [c for c in _citations(text) if c[0] in by_id]
    if not citations:
        return []
    titles = {row.title.lower() for row in by_id.values() if row.title}
    titles |= {t.lower() for t in catalog_titles if t and len(t) >= MIN_TITLE}
    lengths = sorted({len(t) for t in titles}, reverse=True)
    lower = text.lower()
    violations = []
    for pid, start, end in citations:
        own = (by_id[pid].title or "").lower()
        after = LABEL_AFTER.match(lower, end)
        before = LABEL_BEFORE.search(lower[:start])
        named = {_title_after(lower, after.end() if after else end, titles, lengths),
                 _title_before(lower, before.start() if before else start, titles, lengths)}
        for title in sorted(t for t in named if t and t != own):
            violations.append(Violation("title", f"[{pid}] is {by_id[pid].title!r}, not "
                                                 f"{title!r}"))
    return violations


def check(text: str, rows: Sequence[Row], catalog_titles: Iterable[str] = (),
          history: Mapping[str, PriceChange] | None = None) -> list[Violation]:
    """Everything in `text` (model output, before rendering) that the rows do not support;
    past prices and dates only from `history`, the rows' last price changes by id."""
    by_id = {row.id: row for row in rows}
    catalog_titles = list(catalog_titles)  # read twice below; may be a generator
    violations = [Violation("id", f"[{pid}] is not one of the retrieved products")
                  for pid in dict.fromkeys(c[0] for c in _citations(text)) if pid not in by_id]
    violations += _mislabelled(text, by_id, catalog_titles)
    if MARKUP_PATTERN.search(text):
        violations.append(Violation("markup", "echoes the prompt's <product> data block"))
    cited = [by_id[pid] for pid in cited_ids(text) if pid in by_id] or list(rows)
    history = history or {}
    past, current = history_claims(text, [history[r.id] for r in cited if r.id in history])
    violations += past
    known_prices = [row.price for row in rows if row.price is not None]
    for price in _prices(current):
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
    # A stock claim needs the row to state it: no availability value is no support.
    if OUT_OF_STOCK.search(text):
        if any(row.availability != "out_of_stock" for row in cited):
            violations.append(Violation("availability", "says out of stock; the catalog "
                                                        "does not"))
    elif IN_STOCK.search(text) and any(row.availability != "in_stock" for row in cited):
        violations.append(Violation("availability", "says available; the catalog does not "
                                                    "say so"))
    return violations


def row_text(row: DescribedRow) -> str:
    """Everything the catalog says about a product, as one lower-case text."""
    return " ".join(str(v) for v in (row.title, row.category, row.brand, row.color,
                                     row.description, row.availability) if v).lower()


def unsupported_claims(sentence: str, subjects: Sequence[DescribedRow],
                       catalog_words: frozenset[str] = frozenset(),
                       named_titles: Iterable[str] = ()) -> list[Violation]:
    """Descriptive claims in `sentence` that none of its subject rows supports: colour,
    material, brand and quality or condition words (the general vocabulary plus the
    catalog's own colour and brand values, `catalog_words`), sizes and stock or delivery
    phrases. A word is supported when the row's own text has it (or, for "wood" and
    "metal", one of its kinds), or when it is part of a catalog title the sentence names:
    "cheaper than the Green Velvet Sofa" compares, it does not describe the subject."""
    if not subjects:
        return []
    supported = set().union(*(words(row_text(row)) for row in subjects),
                            *(words(title) for title in named_titles))
    supported |= {family for family, kinds in FAMILIES.items() if kinds & supported}
    texts = " ".join(row_text(row) for row in subjects)
    plain = ID_PATTERN.sub(" ", sentence)
    vocabulary = COLOURS | MATERIALS | QUALITY | catalog_words
    claims = sorted(w for w in words(plain) if w in vocabulary and w not in supported
                    and not (w.rstrip("s") in supported or w + "s" in supported))
    violations = [Violation("claim", f"{w!r} is not in the catalog row") for w in claims]
    for match in DIMENSION.finditer(plain):
        if " ".join(match.group(0).lower().split()) not in texts:
            violations.append(Violation("claim", f"size {match.group(0)!r} is not in the row"))
    for match in AVAILABILITY.finditer(plain):
        phrase = match.group(0).lower()
        states = {"in stock": "in_stock", "available now": "in_stock",
                  "out of stock": "out_of_stock", "sold out": "out_of_stock"}
        if phrase in states:
            if any(row.availability != states[phrase] for row in subjects):
                violations.append(Violation("claim", f"{phrase!r}: the catalog does not say"))
        elif phrase not in texts:
            violations.append(Violation("claim", f"{phrase!r} is not in the row"))
    return violations
