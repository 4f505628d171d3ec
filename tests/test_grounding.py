"""The guardrail checks and the explicit-constraint parser, on hand-written text."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pinshop_cli.assistant.grounding import bracket_bare_ids, check
from pinshop_cli.assistant.intent import explicit_constraints


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


def test_ids_that_were_not_shown_are_caught_even_when_they_exist_in_the_catalog():
    # P3 is a real catalog row (the Brass Table Lamp) that retrieval did not return.
    assert kinds("The [P3] would suit you.") == ["id"]
    assert kinds("The [P3] Brass Table Lamp would suit you.") == ["id", "title"]
    assert kinds("Try [P1] or [p2].") == ["id"]  # ids are exact: [p2] is not [P2]
    assert kinds("See [ P1 ] for details.") == ["id"]
    assert kinds("The [Brass Table Lamp] is nice.") == ["id", "title"]


def test_a_title_attached_to_the_wrong_id_is_caught():
    assert kinds("[P2] Oak Chair is a lovely pick.") == ["title"]
    assert kinds("The Oak Chair ([P2]) is a lovely pick.") == ["title"]
    assert kinds("**Oak Chair** - [P2] suits a small room.") == ["title"]
    assert kinds('The [P2]: "Oak Chair" suits a small room.') == ["title"]
    violation = check("[P2] Oak Chair is great.", ROWS, CATALOG)[0]
    assert "'Green Sofa', not 'oak chair'" in violation.detail


def test_a_title_next_to_its_own_id_or_in_a_comparison_is_fine():
    assert kinds("[P1] Oak Chair is a lovely pick.") == []
    assert kinds("The Oak Chair ([P1]) is a lovely pick.") == []
    assert kinds("Cheaper than the Green Sofa, the [P1] is a good pick.") == []
    assert kinds("The [P1] pairs well with the [P2].") == []


def test_a_longer_title_of_another_product_is_not_its_prefix():
    rows = ROWS + [Row("P35", "Oak Chair Black", 159.0)]
    assert check("[P35] Oak Chair Black is nice.", rows, CATALOG) == []
    assert [v.kind for v in check("[P1] Oak Chair Black is nice.", rows, CATALOG)] == ["title"]


def test_echoes_of_the_prompt_markup_are_caught():
    echoed = kinds('<product id="P2">title: "Oak Chair"; category: chair')
    assert "title" in echoed and "markup" in echoed
    assert kinds('<product id="P1">title: "Oak Chair"</product>') == ["markup"]
    assert kinds('<product id="P9">') == ["id", "markup"]
    assert kinds("See </product> above.") == ["markup"]


def test_an_overlong_question_is_refused_before_any_model_work(demo_workspace):
    from pinshop_cli import PinshopError
    from pinshop_cli.assistant.session import MAX_QUESTION_CHARS, ShoppingAssistant
    from pinshop_cli.models.base import ChatModel

    class NoModel(ChatModel):  # plumbing only: the length check fires before the model
        model_id, n_ctx = "none", 2048

        def stream(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            raise AssertionError("the model must not be called")

        def count_tokens(self, text: str) -> int:
            raise AssertionError("the model must not be called")

    assistant = ShoppingAssistant(demo_workspace, NoModel())
    with pytest.raises(PinshopError, match="characters long"):
        assistant.ask("sofa " * MAX_QUESTION_CHARS)


def test_descriptive_claims_must_be_in_the_row():
    """Colour, material, quality, size and delivery words about a product need its row;
    a catalog title the sentence names is a comparison, and 'wood' is supported by oak."""
    from pinshop_cli.assistant.grounding import unsupported_claims
    from pinshop_cli.retrieval.store import Product

    chair = Product("P5", "Nimbus Boucle Armchair", 549.0, "armchair", color="cream",
                    brand="Forma", description="Rounded armchair in textured boucle.",
                    availability="in_stock")
    stool = Product("P7", "Pilar Oak Bar Stool", 99.0, "stool", color="oak",
                    description="Three-legged oak stool, 65 cm.")
    assert unsupported_claims("[P5] is a cream boucle armchair by Forma.", [chair]) == []
    flagged = {str(v) for v in unsupported_claims("It is beige, durable and handmade.", [chair])}
    assert flagged == {"claim: 'beige' is not in the catalog row",
                       "claim: 'durable' is not in the catalog row",
                       "claim: 'handmade' is not in the catalog row"}
    assert unsupported_claims("It ships free within days.", [chair])  # delivery: not stated
    assert unsupported_claims("[P7] is 65 cm tall and made of oak wood.", [stool]) == []
    assert unsupported_claims("[P7] is 80 cm tall.", [stool])
    assert unsupported_claims("[P7] is cheaper than the Nimbus Boucle Armchair.", [stool],
                              named_titles=["Nimbus Boucle Armchair"]) == []
    no_stock = Product("P9", "Luna Table", 690.0, "table")  # no availability column value
    assert unsupported_claims("The table is in stock.", [no_stock])
    assert unsupported_claims("The chair is in stock.", [chair]) == []


def test_bare_ids_become_citations_but_numbers_words_and_markup_stay():
    ids = ["P012", "P1", "12", "sofa", "SKU-9"]
    assert bracket_bare_ids('Try "P012", or \u201cP014\u201d.', ids + ["P014"]) == \
        "Try [P012], or [P014]."
    assert bracket_bare_ids("[P012] and SKU-9 fit", ids) == "[P012] and [SKU-9] fit"
    assert bracket_bare_ids('"P012 chair" or \u201cP1\u201d', ids + ["P14"]) == \
        '"[P012] chair" or \u201cP1\u201d'  # quotes in pairs only; "P1" is too short
    for text in ("buy 12 of them", "a sofa", "P0123 is not shown", "see /img/P012.jpg",
                 '<product id="P012">', "Compare [P012, P1, SKU-9]"):  # the last: for check
        assert bracket_bare_ids(text, ids) == text
