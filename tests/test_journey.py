"""The journey's code paths that need no model: which products a request points at, and a
pick's reasons. (The model-backed journey runs in test_chat.py.)"""

from __future__ import annotations

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.assistant import journey
from pinshop_cli.assistant.session import ShoppingAssistant
from pinshop_cli.retrieval.retriever import Hit
from pinshop_cli.retrieval.store import Product


def test_subjects_follow_numbers_titles_and_named_categories(demo_workspace):
    assistant = ShoppingAssistant(demo_workspace, chat_model=None)  # no model call here
    lamps = assistant.retriever.products([Hit("P009", 0.0), Hit("P017", 0.0), Hit("P018", 0.0)])
    assistant.dialogue.last_products = lamps
    assert [p.id for p in assistant.subjects("compare #1 and #3")] == ["P009", "P018"]
    assert [p.id for p in assistant.subjects("the second one please")] == ["P017"]
    with pytest.raises(PinshopError, match="there is no #12 to point at"):
        assistant.subjects("buy #12")  # past the shown items: an error, as in search
    assert [p.id for p in assistant.subjects("compare the Slouchy Linen Sofa")] == ["P031"]
    assert assistant.subjects("I want to buy a sofa") == []  # a sofa was never shown
    assert assistant.subjects("which lamp should I pick?") == lamps


def test_a_pick_never_claims_a_budget_it_breaks():
    rows = [Product("A", "Oak Chair", 300.0, "chair", description="Solid oak chair."),
            Product("B", "Small Oak Stool", 250.0, "stool", description="Small oak stool.")]
    best, reasons = journey.pick(rows, "which one for a small flat?", set(), max_price=100)
    assert best.id == "B" and "none of these is within your 100 budget" in reasons
    assert "it is within your 100 budget" not in reasons
    best, reasons = journey.pick(rows, "which one?", set(), max_price=300)
    assert best.id == "A" and "it is within your 300 budget" in reasons
