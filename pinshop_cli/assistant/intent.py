"""Reading what the shopper wants: an Intent.

The shopper's own words are read first: when they leave nothing to guess (a catalog
category named, or a follow-up that only changes colour or price or points at a shown item;
no negation), rules alone read them. Otherwise the model fills a JSON schema (categories and
references are enums built from the catalog), and code keeps only what the words support:
explicit prices, colours, "cheaper" and "#2" win over the model's reading.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..retrieval.store import Filters
from .prompt import fit
from .vocabulary import COLOURS, MATERIALS, QUALITY, SHOPPING_WORDS, words

if TYPE_CHECKING:
    from ..models import ChatModel

REFERENCES = ("none", "cheaper", "more_expensive", "similar", "item_number")
ACTIONS = ("search", "compare", "decide", "buy", "out_of_scope")
COMPARE = re.compile(r"\b(compare|comparison|versus|vs\.?|difference|differences|"
                     r"side by side|which is better)\b", re.IGNORECASE)
DECIDE = re.compile(r"\b(which (one|should|would|do you)|should i (pick|choose|get|buy|go)|"
                    r"pick (one|for me)|choose for me|help me (decide|choose|pick)|"
                    r"what would you (pick|choose|get)|your pick|decide)\b", re.IGNORECASE)
BUY = re.compile(r"\b(i'?ll take|i will take|i'?ll get|buy|purchase|order (it|this|that|one)|"
                 r"add (it )?to (my )?(cart|basket)|check ?out|where (can|do) i (get|buy|order)|"
                 r"how (can|do) i (get|buy|order)|is it in stock|in stock)\b", re.IGNORECASE)
STOP_WORDS = {"under", "below", "above", "over", "between", "than", "with", "something",
              "show", "want", "need", "looking", "please", "cheaper", "that", "this"}
# Words that point back or join ("now in blue", "that one in oak"): never what is wanted.
REFERRING_WORDS = frozenset({"now", "in", "that", "it", "this", "those", "them", "one", "ones",
                             "instead", "also", "too", "same", "again", "another", "other",
                             "of", "with", "to", "on", "at", "by", "from", "please"})
# Words that turn a request around ("not leather", "anything but a sofa"): rules cannot
# read them, the model must.
NEGATION = re.compile(r"\b(not|no|without|except|but|instead of|rather than|avoid|"
                      r"don'?t|isn'?t|never)\b", re.IGNORECASE)
FILLER = re.compile(r"\b(and|a|an|the|for|my|me|show|some|something|i|want|need|please|"
                    r"looking|room|living|guest|hallway|bedroom|kitchen's)\b", re.IGNORECASE)
PRICE_PHRASE = re.compile(r"(under|below|over|above|between|less than|up to|at most|from)?\s*"
                          r"[$€£]?\d[\d,.]*\s*(eur|euros?|usd|dollars?)?", re.IGNORECASE)
FOLLOW_UP_WORDS = re.compile(r"\b(that|it|this|those|them|one|ones|instead|now|also|too|same|"
                             r"again|another|other|cheaper|pricier)\b", re.IGNORECASE)
CONSTRAINT_ONLY = re.compile(r"^\s*(?:(?:in|under|below|over|above|for|at most|less than|"
                             r"up to)\s+)?[$€£]?[\w,.-]{1,12}\s*[?.!]?\s*$", re.IGNORECASE)
#: Words that point at a thing rather than name it: "like this", "the same as that one".
POINTING = re.compile(r"\b(?:like|as|than)\s+(?:this|that|these|those|it)\b", re.IGNORECASE)
#: A shown item pointed at: "#2", "number 2", "the second one".
ITEM_REFERENCE = re.compile(r"#\s?(\d{1,2})\b|\bnumber (\d{1,2})\b|"
                            r"\bthe (first|second|third|fourth) one\b", re.IGNORECASE)
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4}
INTENT_TOKENS = 160

INTENT_PROMPT = """Extract the shopper's request as JSON.
category: one of the listed categories, or "any".
query: a few words describing the product (type, material, style); "" if none.
color: a colour the shopper asked for, or "".
style: style words the shopper used (e.g. modern, cosy), possibly empty.
min_price / max_price: numbers the shopper gave, else 0.
reference: "cheaper" / "more_expensive" if they want a cheaper or pricier version of what
was shown, "similar" for something like it, "item_number" if they point at a shown item
(then item_number is its position, 1-based), else "none".
action: "compare" to compare products, "decide" to have one picked for them, "buy" to buy
one, "out_of_scope" if the message is not a request about products (the weather, a poem,
news, code, maths), else "search"."""


@dataclass
class Intent:
    query: str = ""
    category: str | None = None
    color: str | None = None
    style: list[str] = field(default_factory=list)
    min_price: float | None = None
    max_price: float | None = None
    reference: str = "none"
    item_number: int | None = None
    action: str = "search"  # search | compare | decide | buy | out_of_scope

    def filters(self) -> Filters:
        """The intent's constraints as catalog filters."""
        return Filters(category=self.category, min_price=self.min_price,
                       max_price=self.max_price, color=self.color)

    def search_text(self) -> str:
        """The words a search embeds: colour, style, query and category ("" when none)."""
        return " ".join(filter(None, [self.color, " ".join(self.style), self.query,
                                      self.category]))


def action_in_words(question: str) -> str:
    """The journey step the shopper's words name; "search" when they name none."""
    for action, pattern in (("compare", COMPARE), ("buy", BUY), ("decide", DECIDE)):
        if pattern.search(question):
            return action
    return "search"


def request_words(question: str) -> str:
    """What the shopper asks for, without prices and filler: 'a sofa under 1500' -> 'sofa'."""
    found = " ".join(FILLER.sub(" ", PRICE_PHRASE.sub(" ", question)).split())
    return found or question


def is_follow_up(question: str) -> bool:
    """'now in blue', 'cheaper?', 'that one in oak', 'under 300', 'more like #2': refers to
    the last turn."""
    return bool(FOLLOW_UP_WORDS.search(question) or CONSTRAINT_ONLY.match(question)
                or ITEM_REFERENCE.search(question))


def item_reference(question: str) -> int | None:
    """The shown item a question points at: "#2", "number 2", "the second one" -> 2."""
    m = ITEM_REFERENCE.search(question.lower())
    return None if m is None else int(m.group(1) or m.group(2) or ORDINALS[m.group(3)])


#: A negation just before a word, through filler only: "not green", "without any green",
#: "non-green" ("no frills white sofa" and "a chair without arms in black" negate no colour).
NEGATED = re.compile(r"\b(?:not|no|without|except|never|non)[\s-]+"
                     r"(?:(?:any|a|an|the|in|so|too|anything|something)\s+)*$")


def negated(text: str, word: str) -> bool:
    """Whether every mention of `word` is asked against ("a blue rug, not navy blue" asks
    for blue)."""
    found = list(re.finditer(rf"\b{re.escape(word)}\b", text))
    return bool(found) and all(NEGATED.search(text[:m.start()]) for m in found)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _positive(value: Any) -> bool:
    try:
        return value is not None and float(value) > 0
    except (TypeError, ValueError):
        return False


def explicit_constraints(question: str, categories: list[str], colors: list[str]
                         ) -> dict[str, Any]:
    """What the user's own words say unambiguously; it wins over the model's reading."""
    text = question.lower()
    found: dict[str, Any] = {}
    money = r"[$€£]?\s?(\d[\d,]*(?:\.\d+)?)\s?(?:eur|euros?|usd|dollars?|€|\$)?"
    if m := re.search(rf"between {money} and {money}", text):
        found["min_price"], found["max_price"] = _number(m.group(1)), _number(m.group(2))
    else:
        if m := re.search(rf"(?:under|below|less than|cheaper than|max(?:imum)?|up to|at most|"
                          rf"no more than|within)\s+{money}", text):
            found["max_price"] = _number(m.group(1))
        if m := re.search(rf"(?:over|above|more than|at least|from)\s+{money}", text):
            found["min_price"] = _number(m.group(1))
    if re.search(r"\b(cheaper|less expensive|lower price|more affordable|budget)\b", text):
        found["reference"] = "cheaper"
    elif re.search(r"\b(more expensive|pricier|higher end|fancier)\b", text):
        found["reference"] = "more_expensive"
    if (number := item_reference(text)) is not None:
        found["reference"], found["item_number"] = "item_number", number
    elif re.search(r"\b(like (that|this|it)|similar)\b", text) and "reference" not in found:
        found["reference"] = "similar"
    for color in sorted(set(colors) | COLOURS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(color)}\b", text) and not negated(text, color):
            found["color"] = color
            break
    for category in sorted(categories, key=len, reverse=True):
        if re.search(rf"\b{re.escape(category)}(e?s)?\b", text):
            found["category"] = category
            break
    return found


class IntentReader:
    """Reads intents against one catalog's categories, colours and brands. `shown` says
    whether products were shown earlier in the conversation (a follow-up can point at
    them); `previous` is the last turn's intent."""

    def __init__(self, categories: list[str], colors: list[str], brands: list[str]) -> None:
        self.categories, self.colors = categories, colors
        # The catalog's own descriptive values, checked like the general vocabulary.
        self.catalog_words = frozenset(set().union(*(words(v) for v in colors + brands)))

    def explicit(self, question: str) -> dict[str, Any]:
        return explicit_constraints(question, self.categories, self.colors)

    def schema(self) -> dict[str, Any]:
        """The JSON schema the model's reading is constrained to."""
        return {
            "type": "object",
            "properties": {
                "category": {"enum": [*self.categories, "any"]},
                "query": {"type": "string", "maxLength": 60},
                "color": {"type": "string", "maxLength": 20},
                "style": {"type": "array", "items": {"type": "string", "maxLength": 20},
                          "maxItems": 3},
                "min_price": {"type": "number"},
                "max_price": {"type": "number"},
                "reference": {"enum": list(REFERENCES)},
                "item_number": {"type": "integer"},
                "action": {"enum": list(ACTIONS)},
            },
            "required": ["category", "query", "color", "style", "min_price", "max_price",
                         "reference", "item_number", "action"],
        }

    def by_rules(self, question: str, shown: bool) -> Intent | None:
        """The intent from the shopper's words alone when they leave nothing to guess: a
        catalog category named, or a follow-up that only changes colour or price or points
        at a shown item; no negation. None: the model must read it."""
        if NEGATION.search(question):
            return None
        explicit = self.explicit(question)
        action = action_in_words(question)
        refines = shown and (action != "search" or (
            is_follow_up(question) and bool(
                explicit.keys() & {"color", "min_price", "max_price", "reference"})))
        if "category" not in explicit and not refines:
            return None
        named = {explicit.get("category"), explicit.get("color")} - {None}
        leftover = [w for w in re.findall(r"[\w'-]+", request_words(question).lower())
                    if w not in STOP_WORDS and w not in REFERRING_WORDS
                    and w.rstrip("s") not in named and w not in named]
        return self.validated(Intent(query=" ".join(leftover)[:60], action=action), question,
                              shown)

    def by_model(self, model: ChatModel, question: str, previous: Intent | None,
                 shown: bool) -> Intent:
        """The model's reading of the question (JSON constrained to `schema`), validated."""
        context = ""
        if previous is not None:
            context = f"\nPrevious request: {json.dumps(asdict(previous))}"
        system = f"{INTENT_PROMPT}\nCategories: {', '.join(self.categories)}.{context}"
        messages = fit(model, system, [], question, INTENT_TOKENS)
        raw = model.generate(messages, max_tokens=INTENT_TOKENS, temperature=0.0,
                             json_schema=self.schema())
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            data = {}
        intent = Intent(
            query=str(data.get("query") or "").strip()[:60],
            category=data.get("category") if data.get("category") in self.categories else None,
            color=str(data.get("color") or "").strip().lower() or None,
            style=[str(s) for s in data.get("style") or []][:3],
            min_price=float(data["min_price"]) if _positive(data.get("min_price")) else None,
            max_price=float(data["max_price"]) if _positive(data.get("max_price")) else None,
            reference=data.get("reference") if data.get("reference") in REFERENCES else "none",
            item_number=int(data["item_number"]) if _positive(data.get("item_number")) else None,
            action=data.get("action") if data.get("action") in ACTIONS else "search",
        )
        return self.validated(intent, question, shown)

    def validated(self, intent: Intent, question: str, shown: bool) -> Intent:
        """Keep only what the user's words support; explicit words win over the model.
        Small models invent bounds, colours and references; these rules remove them."""
        text = question.lower()
        # "#2" points at an item: its number is no price.
        numbers = {float(n.replace(",", "")) for n in re.findall(
            r"\d[\d,]*(?:\.\d+)?", ITEM_REFERENCE.sub(" ", text))}
        said = set(re.findall(r"[a-z]+", text))
        intent = replace(
            intent,
            color=(intent.color if intent.color and intent.color in text
                   and not negated(text, intent.color) else None),
            style=[s for s in intent.style if s.lower() in said and s.lower() not in
                   STOP_WORDS and len(s) > 3],
            min_price=intent.min_price if intent.min_price in numbers else None,
            max_price=intent.max_price if intent.max_price in numbers else None,
            reference=intent.reference if shown else "none",
        )
        explicit = self.explicit(question)
        # A journey step the words do not name is the model's guess: small models pick
        # "buy" for the weather. Out of scope needs no category in the words.
        named = action_in_words(question)
        if intent.action not in ("search", "out_of_scope", named) or (
                intent.action == "out_of_scope" and "category" in explicit):
            intent.action = named
        if "category" not in explicit and (
                (shown and is_follow_up(question)) or POINTING.search(question)):
            # "in cream" refines the last request and names no category; with nothing
            # shown, "like this but in blue" points at nothing: a category is a guess.
            intent.category = None
        copied = intent.query.lower().strip(" ,.;")
        if len(copied.split()) >= 3 and copied in INTENT_PROMPT.lower():
            intent.query = ""  # the schema's own wording copied back ("a few words ...")
        if "max_price" in explicit and "min_price" not in explicit:
            intent.min_price = None  # "under 600" never means "from 600"
        if "min_price" in explicit and "max_price" not in explicit:
            intent.max_price = None
        intent = replace(intent, **explicit)
        if intent.reference == "item_number" and not shown:
            intent.reference = "none"  # "what is your #1 sofa": nothing to point at yet
        if intent.reference != "item_number":
            intent.item_number = None
        return intent

    def shopping_words(self, question: str) -> set[str]:
        """Words that make a message a shopping request: a catalog category, a colour,
        material or quality word, a room, or a shopping verb."""
        said = words(question)
        categories = {c.lower() for c in self.categories}
        return said & (categories | {c + "s" for c in categories} | COLOURS | MATERIALS
                       | QUALITY | self.catalog_words | SHOPPING_WORDS)
