"""Plumbing tests of the assistant with a fake chat model (pinshop_cli.testing's
ScriptedChatModel, which answers from a script): intent reading, the dialogue state across
follow-ups, and the wiring of a turn (the stream of text pieces, the guard stopping the
model). They test code paths, never a model's quality: tests/test_chat.py runs the real
SmolLM2 through the same paths."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.assistant.answer import Reply
from pinshop_cli.assistant.dialogue import Dialogue
from pinshop_cli.assistant.intent import Intent, IntentReader
from pinshop_cli.retrieval.store import Product
from pinshop_cli.testing import ScriptedChatModel

CATEGORIES = ["armchair", "lamp", "rug", "sofa"]
LAMPS = [Product("L1", "Wire Cage Pendant Lamp", 79.0, "lamp", color="black"),
         Product("L2", "Brass Table Lamp with Black Shade", 89.0, "lamp", color="black"),
         Product("L3", "Rattan Pendant Lamp", 119.0, "lamp", color="natural")]


@pytest.fixture
def reader() -> IntentReader:
    return IntentReader(CATEGORIES, ["black", "cream", "natural"], ["Lumo"])


def turn(reader: IntentReader, dialogue: Dialogue, question: str,
         model: ScriptedChatModel | None = None) -> Intent:
    """One turn's intent as the assistant reads it: rules, else the (fake) model; then the
    dialogue resolves it."""
    shown = bool(dialogue.last_products)
    ruled = reader.by_rules(question, shown)
    if ruled is None:
        assert model is not None, f"{question!r} needs the model"
        ruled = reader.by_model(model, question, dialogue.last_intent, shown)
    return dialogue.resolve(ruled, question)


def test_the_fake_streams_pieces_counts_tokens_and_honours_the_schema():
    schema = {"properties": {"category": {"enum": ["lamp", "any"]},
                             "reference": {"enum": ["none", "cheaper"]},
                             "max_price": {"type": "number"}, "query": {"type": "string"}},
              "required": ["category", "reference", "max_price", "query"]}
    model = ScriptedChatModel(["The lamp fits. It is black.", {"category": "lamp"},
                               lambda messages: f"You said: {messages[-1]['content']}",
                               {"category": "chair"}])
    pieces = list(model.stream([{"role": "user", "content": "hi"}]))
    assert "".join(pieces) == "The lamp fits. It is black." and len(pieces) > 3
    assert model.count_tokens("abcdefghi") == 3 and model.count_tokens("") == 0
    assert json.loads(model.generate([], json_schema=schema)) == {
        "category": "lamp", "reference": "none", "max_price": 0, "query": ""}
    assert model.generate([{"role": "user", "content": "hi"}]) == "You said: hi"
    assert model.constrained == [False, True, False]
    with pytest.raises(ValueError, match="chair"):  # a constrained model could not write it
        model.generate([], json_schema=schema)
    with pytest.raises(AssertionError, match="no scripted reply"):
        model.generate([])
    cut = ScriptedChatModel(["one two three four five"])
    assert "".join(cut.stream([], max_tokens=2)) == "one two "
    early = ScriptedChatModel(["First. Second."])
    stream = early.stream([])
    next(stream)
    stream.close()  # the caller stopped reading: the fake records it
    assert early.calls[0].stopped and early.calls[0].text == "Firs"


def test_unambiguous_words_are_read_by_rules_without_the_model(reader):
    intent = reader.by_rules("a black lamp under 150", shown=False)
    assert intent is not None
    assert (intent.category, intent.color, intent.max_price, intent.action) == (
        "lamp", "black", 150.0, "search")
    assert reader.by_rules("a lamp that is not black", shown=False) is None  # negation
    # A colour asked against is no colour filter (it filtered for black).
    from pinshop_cli.assistant.intent import Intent

    for question in ("a lamp that is not black", "a lamp, not black", "a non-black lamp"):
        assert "color" not in reader.explicit(question), question
        read = reader.validated(Intent(category="lamp", color="black"), question, shown=False)
        assert read.color is None, question
    assert reader.explicit("a black lamp, not brass")["color"] == "black"
    for question, colour in (("a black lamp, not dark black", "black"),  # one mention asks
                             ("a lamp without frills in black", "black"),
                             ("a no frills white lamp", "white")):
        assert reader.explicit(question).get("color") == colour, question
    assert reader.by_rules("something cosy for reading", shown=False) is None  # no category
    assert reader.by_rules("now in cream", shown=False) is None  # nothing shown to refine
    compare = reader.by_rules("compare #1 and #3", shown=True)
    assert compare is not None and compare.action == "compare"


def test_the_models_reading_keeps_only_what_the_words_support(reader):
    """Small models invent bounds, colours and references: the words decide."""
    model = ScriptedChatModel([{"category": "sofa", "query": "cosy reading chair",
                                "color": "red", "min_price": 150, "max_price": 999,
                                "reference": "cheaper", "style": ["cosy", "modern"],
                                "action": "buy"}])
    intent = reader.by_model(model, "something cosy for reading under 150", None, shown=False)
    assert model.constrained == [True] and model.calls[0].json_schema == reader.schema()
    assert intent.category == "sofa" and intent.query == "cosy reading chair"
    assert intent.color is None  # "red" is not in the words
    assert (intent.min_price, intent.max_price) == (None, 150.0)  # "under 150" is a ceiling
    assert intent.reference == "none"  # nothing was shown to be cheaper than
    assert intent.style == ["cosy"] and intent.action == "search"  # no buying words
    # A tiny model copied the schema's wording into the query, and gave "like this but in
    # blue", with nothing shown, a category from nowhere (it searched beds).
    copied = ScriptedChatModel([{"category": "rug", "color": "blue", "reference": "similar",
                                 "query": "a few words describing the product (type, "
                                          "material, style),"}])
    intent = reader.by_model(copied, "like this but in blue", None, shown=False)
    assert (intent.category, intent.query, intent.color) == (None, "", "blue")
    # A first request with a pronoun keeps the category the model read from its words.
    for question in ("a carpet for my hall, it should be soft", "a couch that seats three"):
        said = ScriptedChatModel([{"category": "rug" if "carpet" in question else "sofa"}])
        assert reader.by_model(said, question, None, shown=False).category is not None
    garbled = ScriptedChatModel(["{not json"])
    assert reader.by_model(garbled, "a lamp", None, shown=False) == Intent(category="lamp")


def test_follow_ups_carry_the_last_turn(reader):
    """ "now in blue" keeps the category and the bound, "cheaper" goes below the product
    recommended first, "more expensive" lifts the ceiling, "#2" points at the second."""
    dialogue = Dialogue()
    first = turn(reader, dialogue, "a black lamp under 150")
    assert (first.category, first.color, first.max_price) == ("lamp", "black", 150.0)
    dialogue.remember("a black lamp under 150", first, LAMPS)
    assert dialogue.anchor(first) is None

    blue = turn(reader, dialogue, "now in blue")
    assert (blue.category, blue.color, blue.max_price, blue.reference) == (
        "lamp", "blue", 150.0, "none")
    assert dialogue.follows_up(blue, "now in blue")

    cheaper = turn(reader, dialogue, "cheaper")
    assert cheaper.category == "lamp" and cheaper.reference == "cheaper"
    assert cheaper.max_price == 78.99 and cheaper.min_price is None

    pricier = turn(reader, dialogue, "something more expensive",  # the words name no
                   ScriptedChatModel([{"reference": "more_expensive"}]))  # category: model
    assert pricier.category == "lamp" and pricier.max_price is None
    assert pricier.min_price == 79.01

    second = turn(reader, dialogue, "more like #2")  # the rules read a reference
    assert (second.reference, second.item_number, second.category) == (
        "item_number", 2, "lamp")
    model = ScriptedChatModel([{"category": "any", "query": "lamp", "reference": "similar"}])
    turn(reader, dialogue, "something along those lines", model)
    assert '"category": "lamp"' in model.calls[0].messages[0]["content"]  # the last request
    assert dialogue.anchor(second) == LAMPS[1]
    similar = turn(reader, dialogue, "something similar",
                   ScriptedChatModel([{"reference": "similar"}]))
    assert dialogue.anchor(similar) == LAMPS[0]


def test_a_new_request_starts_afresh_and_the_dialogue_remembers_what_was_shown(reader):
    dialogue = Dialogue()
    lamp = turn(reader, dialogue, "a black lamp under 150")
    dialogue.remember("a black lamp under 150", lamp, LAMPS)
    rug = turn(reader, dialogue, "a rug")
    assert (rug.category, rug.color, rug.max_price) == ("rug", None, None)
    assert not dialogue.follows_up(rug, "a rug")
    dialogue.remember("a rug", rug, [])  # nothing shown: keep the lamps
    assert dialogue.last_products == LAMPS and dialogue.last_intent == rug
    assert dialogue.history == ["a black lamp under 150", "a rug"]
    assert [p.id for p in dialogue.subjects("compare #1 and #3", [], None)] == ["L1", "L3"]
    with pytest.raises(PinshopError, match="there is no #12 to point at"):
        dialogue.subjects("buy #12", [], None)  # past the shown items: an error, as in search
    assert dialogue.subjects("which lamp should I pick?", [], "lamp") == LAMPS
    assert dialogue.subjects("which sofa?", [], "sofa") == []
    dialogue.reset()
    assert (dialogue.history, dialogue.last_intent, dialogue.last_products) == ([], None, [])


def _cite_first(messages: list[dict[str, str]]) -> str:
    """An answer citing the first product the prompt lists."""
    first = re.search(r'<product id="([^"]+)"', messages[0]["content"])
    assert first is not None
    return f"The [{first.group(1)}] is a great fit for you. It suits a reading corner."


def test_a_turn_streams_its_text_then_the_reply(demo_workspace):
    from pinshop_cli.assistant.session import ShoppingAssistant

    model = ScriptedChatModel([_cite_first])
    assistant = ShoppingAssistant(demo_workspace, model)
    events = list(assistant.ask_stream("a black lamp under 150"))
    *pieces, reply = events
    assert isinstance(reply, Reply) and all(isinstance(p, str) for p in pieces) and pieces
    assert "".join(pieces).strip() == reply.answer
    assert reply.intent_source == "rules" and model.constrained == [False]
    assert reply.grounded and reply.products[0].render() in reply.answer
    assert all(p.category == "lamp" and p.price <= 150 for p in reply.candidates)
    assert assistant.dialogue.last_products == reply.products


def test_an_id_written_without_brackets_is_rendered_and_cited(demo_workspace):
    """SmolLM2 wrote '"P012"' where the prompt asks for [P012]: the shopper saw a bare id.
    A shown id written bare is a citation like any other; a bare number is left alone."""
    from pinshop_cli.assistant.session import ShoppingAssistant

    def bare(messages: list[dict[str, str]]) -> str:
        return _cite_first(messages).replace("[", '"').replace("]", '"') + " Buy 2 of them."

    assistant = ShoppingAssistant(demo_workspace, ScriptedChatModel([bare]))
    reply = assistant.ask("a black lamp under 150")
    first = reply.candidates[0]
    assert reply.grounded and reply.products[0].id == first.id
    assert first.render() in reply.answer and f'"{first.id}"' not in reply.answer
    assert "Buy 2 of them." in reply.answer and "Here is what the catalog has" not in reply.answer


def test_a_failing_sentence_stops_the_model_and_the_template_takes_over(demo_workspace):
    from pinshop_cli.assistant.session import ShoppingAssistant

    model = ScriptedChatModel(["It costs $5 today. " + "More words follow here. " * 20])
    assistant = ShoppingAssistant(demo_workspace, model)
    pieces = []
    for event in assistant.ask_stream("a black lamp under 150"):
        if isinstance(event, str):
            pieces.append(event)
        else:
            reply = event
    assert model.calls[0].stopped  # cut at the first sentence, not read to the end
    assert not reply.grounded and reply.violations[0].startswith("price")
    assert pieces == [reply.answer] and reply.answer.startswith("Here is what the catalog has")
    assert "$5" not in reply.answer


def test_a_sentence_introducing_what_the_guard_cut_goes_with_it(demo_workspace):
    from pinshop_cli.assistant.session import ShoppingAssistant

    def introduce_then(after: str) -> Callable[[list[dict[str, str]]], str]:
        def answer(messages: list[dict[str, str]]) -> str:
            return f"Prices vary by size. Here is a breakdown:\n{after}"
        return answer

    cut = ScriptedChatModel([introduce_then("- Lamp: $25.")])
    reply = ShoppingAssistant(demo_workspace, cut).ask("a black lamp under 150")
    assert reply.violations and "breakdown" not in reply.answer
    assert reply.answer.startswith("Prices vary by size. Here is what the catalog has")
    kept = ScriptedChatModel([introduce_then("Lamps differ in shade and base.")])
    answer = ShoppingAssistant(demo_workspace, kept).ask("a black lamp under 150").answer
    assert "Here is a breakdown: Lamps differ in shade and base." in answer


def test_chat_once_prints_the_streamed_answer_or_only_the_json(demo_workspace, monkeypatch):
    from typer.testing import CliRunner

    import pinshop_cli.models
    from pinshop_cli.commands.main import app

    monkeypatch.setattr(pinshop_cli.models, "get_chat_model",
                        lambda *args, **kwargs: ScriptedChatModel([_cite_first]))
    result = CliRunner().invoke(app, ["chat", "--once", "a black lamp", "--json",
                                      "-w", str(demo_workspace)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert data["intent"]["category"] == "lamp" and data["grounded"]
    plain = CliRunner().invoke(app, ["chat", "--once", "a black lamp",
                                     "-w", str(demo_workspace)])
    assert plain.exit_code == 0 and " ".join(plain.stdout.split()) == data["answer"]


def test_a_follow_up_after_a_photo_is_about_the_product_recommended_first(
        demo_workspace, fake_chat, sample_dir):
    """/image shows a room of several kinds of product; "now in black" then asks for the
    first one in black, not for black things in general (before: a black bed)."""
    from pinshop_cli.assistant.session import ShoppingAssistant

    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    try:
        photo = assistant.shop_image(sample_dir / "pins" / "7303782.jpg")
        lead = photo.products[0]
        assert len({p.category for p in photo.candidates}) > 1
        black = assistant.ask("now in black")
        assert black.products and {p.category for p in black.products} == {lead.category}
        assert "black" in f"{black.products[0].color} {black.products[0].title}".lower()
    finally:
        assistant.retriever.close()


def test_a_product_id_in_the_question_is_that_product(demo_workspace, fake_chat):
    """Ids are what the tables show: "tell me about P005" talks about P005 (before: an
    out-of-scope refusal), and "compare P001 and P005" compares those two."""
    from pinshop_cli.assistant.session import ShoppingAssistant
    from pinshop_cli.retrieval.store import ID_WORD

    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    try:
        about = assistant.ask("tell me about P005")
        assert about.intent.action == "search" and [p.id for p in about.products] == ["P005"]
        both = assistant.ask("compare P001 and P005.")
        assert {p.id for p in both.candidates} == {"P001", "P005"}
        assert assistant.store.ids_in("a 3-seat sofa under 1500, like P001/P005?") == [
            "P001", "P005"]  # words with digits that are no id are not read as ids
        assert ID_WORD.findall("a sofa for 4 people under $1,200") == []  # numbers: never
    finally:
        assistant.retriever.close()
