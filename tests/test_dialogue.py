"""The dialogue over a real workspace, with a fake chat model (pinshop_cli.testing's
ScriptedChatModel, whose answers cite the first product the prompt lists): follow-ups and
price bounds, rules reading unambiguous requests, compare/decide/buy rendered from the
rows, a shopper's taste. These are the assistant's code paths, not a model's quality
(tests/test_chat.py runs the real SmolLM2)."""

from __future__ import annotations

from pinshop_cli.assistant.session import ShoppingAssistant


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
    compared = assistant.ask("compare #1 and #2")
    assert compared.intent.action == "compare" and compared.intent_source == "rules"
    assert [row["id"] for row in compared.table] == [p.id for p in shown[:2]]
    for row, product in zip(compared.table, shown, strict=False):
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
