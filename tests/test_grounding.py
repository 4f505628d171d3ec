"""The guardrail checks and the explicit-constraint parser, on hand-written text."""

from __future__ import annotations

from dataclasses import dataclass

from pinshop_cli.assistant import explicit_constraints
from pinshop_cli.grounding import check


@dataclass
class Row:
    id: str
    title: str
    price: float | None
    availability: str | None = "in_stock"


ROWS = [Row("P1", "Oak Chair", 149.0), Row("P2", "Green Sofa", 1390.0, "out_of_stock")]
CATALOG = ["Oak Chair", "Green Sofa", "Brass Table Lamp"]


def kinds(text: str) -> list[str]:
    return [v.kind for v in check(text, ROWS, CATALOG)]


def test_grounded_text_passes():
    assert kinds("The [P1] is lovely and costs 149 EUR. Feel free to ask more.") == []


def test_invented_prices_ids_titles_and_free_are_caught():
    assert kinds("The [P1] is only $99.") == ["price"]
    assert kinds("Everything is free today!") == ["price"]
    assert kinds("Try the [P9].") == ["id"]
    assert kinds("The Brass Table Lamp would suit you.") == ["title"]


def test_a_title_inside_an_allowed_title_is_not_a_violation():
    rows = [Row("P35", "Oak Chair Black", 159.0)]
    assert check("The Oak Chair Black (159.00 EUR) suits you.", rows, CATALOG + [
        "Oak Chair Black"]) == []
    assert [v.kind for v in check("Or the Oak Chair.", rows, CATALOG)] == ["title"]


def test_availability_must_match_the_rows():
    assert kinds("The [P1] is in stock.") == []
    assert kinds("The [P2] is available now.") == ["availability"]
    assert kinds("The [P1] is sold out.") == ["availability"]


def test_explicit_constraints_from_the_users_words():
    cats, colors = ["chair", "sofa", "lamp"], ["green", "oak"]
    assert explicit_constraints("a green sofa under €1,500", cats, colors) == {
        "max_price": 1500.0, "color": "green", "category": "sofa"}
    assert explicit_constraints("lamps between 50 and 120", cats, colors) == {
        "min_price": 50.0, "max_price": 120.0, "category": "lamp"}
    assert explicit_constraints("something cheaper", cats, colors) == {"reference": "cheaper"}
    assert explicit_constraints("more like #2", cats, colors) == {
        "reference": "item_number", "item_number": 2}
