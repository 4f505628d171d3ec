"""The dialogue over a real workspace, with a fake chat model (pinshop_cli.testing's
ScriptedChatModel, whose answers cite the first product the prompt lists): follow-ups and
price bounds, rules reading unambiguous requests, compare/decide/buy rendered from the
rows, a shopper's taste. These are the assistant's code paths, not a model's quality
(tests/test_chat.py runs the real SmolLM2)."""

from __future__ import annotations

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.assistant.session import ShoppingAssistant
from pinshop_cli.retrieval.retriever import Hit


def test_cheaper_follow_up_lowers_the_price_bound(demo_workspace, fake_chat):
    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    first = assistant.ask("show me armchairs")
    recommended = first.products[0].price
    second = assistant.ask("something cheaper")
    assert second.intent.category == "armchair"
    assert second.intent.max_price is not None and second.intent.max_price < recommended
    assert second.exact and all(p.price < recommended for p in second.products)


def test_follow_ups_adjust_inherited_price_bounds(demo_workspace, fake_chat):
    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    first = assistant.ask("an armchair under 900")
    cheaper = assistant.ask("cheaper please")
    assert cheaper.intent.max_price < min(first.products[0].price, 900)
    assert cheaper.exact and all(p.price <= cheaper.intent.max_price for p in cheaper.candidates)
    assistant.reset()
    vase = assistant.ask("a vase under 40")
    pricier = assistant.ask("something more expensive")
    assert pricier.intent.max_price is None  # the old ceiling is lifted
    assert pricier.intent.min_price > vase.products[0].price
    assert pricier.exact and pricier.intent.category == "vase"


def test_unambiguous_requests_skip_the_model_for_intent(demo_workspace, fake_chat):
    """Rules read "a black lamp under 150" alone (no model call for the intent); a negation
    goes to the model. --json says which path each turn took."""
    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    reply = assistant.ask("a black lamp under 150")
    assert reply.intent_source == "rules" and fake_chat.constrained == [False]
    assert (reply.intent.category, reply.intent.color, reply.intent.max_price) == (
        "lamp", "black", 150.0)
    refined = assistant.ask("now in white")  # a follow-up that only changes the colour
    assert refined.intent_source == "rules"
    assert (refined.intent.category, refined.intent.color) == ("lamp", "white")
    assert assistant.rule_intent("a lamp that is not black") is None
    assert assistant.rule_intent("something cosy for reading") is None  # no category named
    assert reply.to_dict()["intent_source"] == "rules"


def test_compare_decide_and_buy_render_from_the_rows(demo_workspace, fake_chat):
    """The journey: compare gives a code-rendered table of the items pointed at, decide one
    pick with reasons from its row, buy the row's stock and link (none here: said so)."""
    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    shown = assistant.ask("a sofa under 1500").products
    assert len(shown) == 1  # the fake model's answer cites one
    with pytest.raises(PinshopError, match="there is no #2 to point at: the last answer "
                                           "showed 1"):
        assistant.ask("compare #1 and #2")  # it was a one-row table
    other = next(p for p in assistant.retriever.products(
        [Hit(pid, 0.0) for pid in ("P001", "P002", "P003")]) if p.id != shown[0].id)
    compared = assistant.ask(f"compare #1 and {other.id}")
    assert compared.intent.action == "compare" and compared.intent_source == "rules"
    assert [row["id"] for row in compared.table] == [shown[0].id, other.id]
    for row, product in zip(compared.table, [shown[0], other], strict=True):
        assert row["price"] == product.price_text() and row["colour"] == product.color
        assert row["link"] == "none in the catalog"
    assert compared.answer.startswith("product ") and compared.to_dict()["table"]
    decided = assistant.ask("which one should I pick for a small flat?")
    assert decided.intent.action == "decide" and len(decided.products) == 1
    assert decided.answer.startswith(f"My pick: {decided.products[0].render()}")
    bought = assistant.ask("I'll take it, where do I buy it?")
    assert bought.intent.action == "buy" and bought.products == decided.products
    assert "the catalog lists it as in stock" in bought.answer
    assert "has no link for it" in bought.answer and "http" not in bought.answer


def test_user_taste_reranks_and_explains_from_events(copy_workspace, tmp_path, fake_chat):
    """--user: a shopper who saved a linen throw and a linen lamp sees the linen daybed
    ranked higher (visual taste over product photos); "because you saved" names one of their own
    saved items, and nothing without --user."""
    from pinshop_cli import ingest_events
    from pinshop_cli.assistant.intent import Intent
    from pinshop_cli.retrieval.retriever import Hit

    workspace = copy_workspace()
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event,ts\n"
                      "linen-fan,P037,save,2026-01-02T10:00:00\n"
                      "linen-fan,P009,save,2026-01-03T10:00:00\n"
                      "someone,P031,view,2026-01-03T10:00:00\n")
    ingest_events(events, workspace)
    plain = ShoppingAssistant(workspace, fake_chat)
    personal = ShoppingAssistant(workspace, fake_chat, user="linen-fan")
    sofa = Intent(query="sofa", category="sofa")
    before = [p.id for p in plain.retrieve(sofa, "a sofa")[0]]
    after = [p.id for p in personal.retrieve(sofa, "a sofa")[0]]
    assert sorted(before) == sorted(after) and after.index("P008") < before.index("P008")
    daybed = personal.retriever.products([Hit("P008", 0.0)])
    because = personal.because(daybed)
    assert because in ("Because you saved the Sand Linen Throw Blanket.",
                       "Because you saved the Dome Linen Floor Lamp.")
    assert plain.because(daybed) == ""


def test_an_item_reference_points_at_a_shown_product_and_is_no_price(demo_workspace,
                                                                     fake_chat, sample_dir):
    """"more like #2" is read by rules as a reference (the model read "2" as a price and
    invented a category); a number past what was shown is an error, not a guess; with
    nothing shown there is nothing to point at."""
    import pytest

    from pinshop_cli import PinshopError
    from pinshop_cli.assistant.intent import Intent

    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    sofas = assistant.ask("a sofa under 1500")  # the fake model's answer cites one
    more = assistant.ask("more like #1")
    assert more.intent_source == "rules" and more.intent.item_number == 1
    assert more.intent.category == sofas.products[0].category == "sofa"
    assert more.intent.max_price == 1500.0  # carried on, never 1
    invented = Intent(category="bed", max_price=2.0, reference="item_number", item_number=2)
    read = assistant.intents.validated(invented, "more like #2", shown=True)
    assert (read.category, read.max_price, read.item_number) == (None, None, 2)
    with pytest.raises(PinshopError, match="there is no #9 to point at: the last answer "
                                           "showed"):
        assistant.ask("#9")
    with pytest.raises(PinshopError, match="there is no #9 to point at"):
        assistant.ask("compare #1 and #9")  # it compared #1 alone, in a one-row table
    assistant.reset()  # nothing shown: "#1" is a word of the request, not a reference
    first = assistant.ask("what is your #1 sofa")
    assert first.intent.reference == "none" and first.intent.category == "sofa"
    # Naming nothing, a number points at nothing: it compared two unrelated cushions.
    assistant.reset()
    for question in ("compare #1 and #2", "more like #2"):
        with pytest.raises(PinshopError, match=r"there is no #\d to point at: nothing has "
                                               "been shown yet"):
            assistant.ask(question)


def test_a_price_limit_of_0_is_a_limit(demo_workspace, fake_chat):
    """"under 0" is read as no limit at all (0 was taken for "none") and answered with
    sofas at 1290-1490."""
    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    free = assistant.ask("a sofa under 0")
    assert free.intent.max_price == 0 and free.intent.filters().max_price == 0
    assert not free.exact and free.relaxed == ["price"]  # it said exact, with those sofas
    assert free.answer.startswith("Nothing in the catalog matches a price up to 0")


def test_like_this_but_in_black_finds_the_black_one_though_the_photo_is_not(
        demo_workspace, fake_chat, sample_dir):
    """After /image, the look's product is the anchor; a black chair passes the colour
    (the anchor, oak, does not: it was counted as if it did, and black was relaxed)."""
    assistant = ShoppingAssistant(demo_workspace, fake_chat)
    assistant.shop_image(sample_dir / "pins" / "7303782.jpg")
    black = assistant.ask("like this but in black")
    assert black.exact and [p.id for p in black.products] == ["P035"]
    assert (black.intent.category, black.intent.color) == ("chair", "black")
