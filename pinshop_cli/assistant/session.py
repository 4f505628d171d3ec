"""The shopping assistant behind `pinshop chat`: the conductor of a turn.

One turn:
1. intent (intent.py): rules read the shopper's words when they leave nothing to guess,
   else the model fills a JSON schema; the dialogue (dialogue.py) carries the previous turn
   into follow-ups ("now in blue", "cheaper", "#2");
2. retrieval (retrieval/policy.py): catalog filters + vector search among the rows that
   pass; when nothing passes, constraints are relaxed one by one and the answer says so;
3. the journey step (journey.py): a search is answered by the model through the guard
   (answer.py: every sentence checked, ids rendered into catalog titles and prices by
   code); compare, decide and buy are rendered from the rows.

`ask_stream` yields the answer's text as it is written, then the Reply; `ask` returns the
Reply alone.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PinshopError
from ..retrieval import policy
from ..retrieval.retriever import Hit, Retriever
from ..retrieval.store import Product
from .answer import Answerer, Reply
from .dialogue import Dialogue
from .intent import STOP_WORDS, Intent, IntentReader, item_reference, request_words
from .journey import QUESTION_WORDS, SHOWN, Journey
from .personal import ShopperTaste

if TYPE_CHECKING:
    from ..models import ChatModel
    from ..workspace import Workspace

__all__ = ["MAX_QUESTION_CHARS", "Intent", "Reply", "ShoppingAssistant"]

# A shopping request fits in a few sentences; a 50,000-character paste would keep a small
# CPU model busy for a minute before it could answer anything useful.
MAX_QUESTION_CHARS = 2000
Events = Generator[str | Reply, None, None]  # text pieces as they are written, then the Reply


def reply_of(events: Iterable[str | Reply]) -> Reply:
    """The Reply that ends a stream of events (the text pieces are dropped)."""
    for event in events:
        if isinstance(event, Reply):
            return event
    raise PinshopError("the answer stopped before its reply")


class ShoppingAssistant:
    """Multi-turn shopping assistant over a workspace; see the module docstring."""

    def __init__(self, workspace: str | Path | Workspace | None, chat_model: ChatModel,
                 max_answer_tokens: int = 160, models_dir: str | None = None,
                 retriever: Retriever | None = None, runtime: str = "auto",
                 user: str | None = None) -> None:
        if chat_model is not None:  # None: rule-only use, nothing to generate with
            chat_model.start()  # the weights load while the catalog does
        # One retriever for the session: typed requests and /image share its loaded
        # catalog store, embedder and indexes. Answering never writes: a stale index
        # answers as it is, and each reply's notes say so.
        self.retriever = retriever or Retriever(workspace, models_dir, runtime=runtime)
        self.ws, self.store = self.retriever.ws, self.retriever.store
        self.models_dir, self.model, self.user = models_dir, chat_model, user
        self.intents = IntentReader(self.store.distinct("category"),
                                    self.store.distinct("color"), self.store.distinct("brand"))
        self.catalog_words = self.intents.catalog_words
        self.dialogue = Dialogue()
        self.answerer = Answerer(chat_model, self.store, self.catalog_words, max_answer_tokens)
        ignore = STOP_WORDS | QUESTION_WORDS | set(self.intents.categories)
        self.journey = Journey(self.answerer, self.dialogue, self.because, ignore)
        self._taste: ShopperTaste | None = None
        self._taste_looked = False
        #: The browsing session so far, as view events of the products shown (the first
        #: shown last, so it weighs most): what `Shop.recommend(user, session=...)` takes.
        self.looked_at: list[dict[str, str]] = []

    def reset(self) -> None:
        """Forget the conversation."""
        self.dialogue.reset()
        self.looked_at = []

    # -- a whole turn ------------------------------------------------------------------------
    def ask_stream(self, question: str) -> Events:
        """One turn: yields the answer's text pieces as they are written (what passes the
        guard), then the Reply. A question too long to answer is refused here, before
        anything runs."""
        if len(question) > MAX_QUESTION_CHARS:
            raise PinshopError(f"that question is {len(question):,} characters long; ask in at "
                               f"most {MAX_QUESTION_CHARS:,} (a few sentences)")
        return self._turn(question)

    def ask(self, question: str) -> Reply:
        """One turn, returning its Reply (`ask_stream` without the text pieces)."""
        return reply_of(self.ask_stream(question))

    def _turn(self, question: str) -> Events:
        started = time.perf_counter()
        if not self.dialogue.last_products and (number := item_reference(question)) and \
                "category" not in self.intents.explicit(question) and \
                not self.store.ids_in(question):  # "what is your #1 sofa" names what it means
            raise PinshopError(f"there is no #{number} to point at: nothing has been shown "
                               "yet (ask for products first, e.g. 'a green sofa')")
        ruled = self.rule_intent(question)
        intent = self.dialogue.resolve(ruled or self.extract_intent(question), question)
        if intent.action == "search" and intent.reference == "item_number" and \
                self.dialogue.anchor(intent) is None:  # (with nothing shown there is none)
            raise PinshopError(f"there is no #{intent.item_number} to point at: the last "
                               f"answer showed {len(self.dialogue.last_products)}")
        timings = {"intent_s": round(time.perf_counter() - started, 3)}
        rows: list[Product] = []
        relaxed: list[str] = []
        named = self.retriever.products([Hit(pid, 0.0) for pid in self.store.ids_in(question)])
        variant = self.variant(intent, question) if intent.action == "search" else None
        if named and variant is None and intent.reference == "none" and intent.action in (
                "search", "out_of_scope"):
            intent.action, rows = "search", named  # "tell me about P200": that product
        elif variant is not None:  # "in a larger size", "in blue": the shown one's variant
            rows = [variant]
        elif intent.action == "search":
            rows, relaxed = self.retrieve(intent, question, self.dialogue.anchor(intent))
            if "query" in relaxed and not self.intents.shopping_words(question):
                # Matches nothing and names nothing a shop sells: not a shopping request.
                intent.action = "out_of_scope"
        elif intent.action != "out_of_scope":
            rows = self.subjects(question)
            if not rows:  # nothing shown or named yet: find candidates first
                rows, relaxed = self.retrieve(intent, question)
        reply = yield from self.journey.step(question, intent, rows, relaxed, timings)
        reply.intent_source = "rules" if ruled else "model"
        yield self._remember(question, reply)

    def shop_image_stream(self, image: str | Path, question: str = "") -> Events:
        """/image: the products in a photo (each region's best match, the surest region
        first), talked about like a search's rows: text pieces, then the Reply."""
        from ..retrieval.match import match

        result = match([image], top_k=SHOWN, models_dir=self.models_dir,
                       retriever=self.retriever)
        pin = result.pins[0]
        if pin.error:
            raise PinshopError(f"cannot read {image}: {pin.error}")
        found = {o.matches[0].id: o.matches[0].score or 0.0  # (a match always has one)
                 for o in sorted(pin.objects, key=lambda o: -o.score) if o.matches}
        products = self.retriever.products([Hit(pid, score)
                                            for pid, score in list(found.items())[:SHOWN]])
        categories = {p.category for p in products}
        intent = Intent(query="products in the photo",
                        category=categories.pop() if len(categories) == 1 else None)
        ask = question or "Which of these products match the photo?"
        reply = yield from self.journey.step(ask, intent, products, [], {})
        # A follow-up ("now in black") is about the product recommended first, so it
        # searches that product's category, not the photo's mix of them.
        lead = reply.products[0] if reply.products else None
        yield self._remember(ask, reply, Intent(category=lead.category) if lead else None)

    def shop_image(self, image: str | Path, question: str = "") -> Reply:
        """/image without the text pieces: the Reply."""
        return reply_of(self.shop_image_stream(image, question))

    def _remember(self, question: str, reply: Reply, follow: Intent | None = None) -> Reply:
        """Keep the turn for follow-ups (`follow`: the intent they carry on, if not the
        reply's own)."""
        reply.notes = self.retriever.notes
        self.dialogue.remember(question, follow or reply.intent, reply.products)
        now = datetime.now(timezone.utc).isoformat()
        self.looked_at += [{"item_id": p.id, "event": "view", "ts": now}
                           for p in reversed(reply.products)]
        return reply

    # -- the parts, bound to this conversation -----------------------------------------------
    def rule_intent(self, question: str) -> Intent | None:
        """The intent from the words alone, when they leave nothing to guess (intent.py)."""
        return self.intents.by_rules(question, bool(self.dialogue.last_products))

    def extract_intent(self, question: str) -> Intent:
        """The model's reading of the question, validated against its words."""
        return self.intents.by_model(self.model, question, self.dialogue.last_intent,
                                     bool(self.dialogue.last_products))

    def retrieve(self, intent: Intent, question: str, anchor: Product | None = None
                 ) -> policy.Retrieved:
        """The rows for an intent (retrieval/policy.py), re-ranked by the shopper's taste;
        a request that follows up the last turn is not judged on its own words."""
        request = None if self.dialogue.follows_up(intent, question) else request_words(
            question)
        return policy.retrieve(self.retriever, intent.filters(),
                               intent.search_text() or question,
                               anchor.id if anchor is not None else None, self.taste(), request)

    def variant(self, intent: Intent, question: str) -> Product | None:
        """The shown product's variant a follow-up asks for ("in a larger size", "in
        blue"; assistant/variants.py): of the numbered one ("#2 in blue"), else of the one
        recommended first. None when it asks for none or its family has none that fits."""
        from .variants import asks_for_variant, find_variant

        last = self.dialogue.last_products
        shown = self.dialogue.anchor(intent) or (last[0] if last else None)
        if shown is None or not asks_for_variant(question) or (
                intent.category and shown.category and intent.category != shown.category):
            # ("sofas in blue" after a tee asks for sofas, not the tee's blue variant)
            return None
        found = find_variant(self.store, shown.id, question)
        return self.retriever.products([Hit(found, 0.0)])[0] if found else None

    def subjects(self, question: str) -> list[Product]:
        """The products a compare/decide/buy request is about (Dialogue.subjects)."""
        named = self.retriever.products([Hit(pid, 0.0) for pid in dict.fromkeys(
            self.store.ids_in(question) + self.store.named_in(question.lower()))])
        return self.dialogue.subjects(question, named,
                                      self.intents.explicit(question).get("category"))

    def taste(self) -> ShopperTaste | None:
        """The --user shopper's taste (loaded once per session)."""
        if self.user and not self._taste_looked:
            self._taste = ShopperTaste.load(self.ws, self.user)
            self._taste_looked = True
        return self._taste

    def because(self, shown: list[Product]) -> str:
        """'Because you saved the Oslo Chair.' for the first product, from the shopper's
        own events only."""
        taste = self.taste()
        if taste is None or not shown:
            return ""
        found = taste.because(shown[0].id)
        rows = self.retriever.products([Hit(found[0], 0.0)]) if found else []
        return f"Because you {found[1]} the {rows[0].title}." if found and rows else ""

    def _messages(self, question: str, products: list[Product], note: str
                  ) -> list[dict[str, str]]:
        """The answer's prompt for these rows now (bench/eval_chat.py records a few)."""
        return self.answerer.messages(question, products, note, self.dialogue.history,
                                      self.answerer.price_changes(products))
