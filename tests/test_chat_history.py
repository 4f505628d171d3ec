"""Chat and the price history: the shown products' last price change is given to the model
(assistant/history.py) and the guard lets an answer say "down from 129.00 on 2026-11-02" or
"was 129.00" only when a history row says so (grounding.history_claims). Chat search and
`similar` show a product family once (retrieval/families.py).

Plumbing: the fake embedder and the scripted chat model; the guard's checks are unit tests.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from pinshop_cli.assistant.grounding import check
from pinshop_cli.assistant.history import PriceChange, last_price_changes
from pinshop_cli.assistant.prompt import HISTORY_RULE, answer_messages
from pinshop_cli.retrieval.store import Product
from pinshop_cli.testing import ScriptedChatModel

CHAIR = Product("CHAIR", "Oslo Lounge Chair", 99.0, "chair", currency="EUR")
SOFA = Product("SOFA", "Bergen Linen Sofa", 900.0, "sofa", currency="EUR")
DROP = PriceChange("CHAIR", 129.0, 99.0, "EUR", "2026-11-02")

ROWS = [["id", "title", "category", "price", "currency", "item_group_id", "color", "size",
         "availability"],
        ["CHAIR", "Oslo lounge chair", "chair", "99", "EUR", "", "green", "", "in_stock"],
        ["STOOL", "Oslo bar stool", "chair", "60", "EUR", "", "green", "", "in_stock"],
        ["SOFA", "Bergen linen sofa", "sofa", "900", "EUR", "", "grey", "", "in_stock"]]
ROWS += [[f"TEE-{c}-{s}", "Cotton tee", "shirt", "20", "EUR", "tee", c, s, "in_stock"]
         for c in ("red", "blue") for s in ("S", "M", "L")]
ROWS += [["POLO", "Cotton polo shirt", "shirt", "35", "EUR", "", "red", "M", "in_stock"],
         ["HENLEY", "Cotton henley shirt", "shirt", "30", "EUR", "", "red", "M", "in_stock"]]


@pytest.mark.parametrize("sentence", [
    "The [CHAIR] is down from 129.00 on 2026-11-02.",
    "The [CHAIR] is down from €129 since November 2, 2026.",
    "The [CHAIR] dropped from 129 EUR on 2 Nov 2026.",
    "The [CHAIR] was 129.00 before.",
    "The [CHAIR] is down from 129.00, a good deal.",
])
def test_a_claim_the_history_supports_passes(sentence: str) -> None:
    assert check(sentence, [CHAIR, SOFA], [], {"CHAIR": DROP}) == []


@pytest.mark.parametrize(("sentence", "without_history"), [
    ("The [CHAIR] is down from 149.00 on 2026-11-02.", True),  # another old price
    ("The [CHAIR] is down from 129.00 on 2026-11-03.", True),  # another date
    ("The [CHAIR] is up from 129.00.", True),  # it went down
    ("The [CHAIR] was $149 last month.", True),
    ("The [SOFA] is down from 129.00 on 2026-11-02.", True),  # the chair's change
    ("The [CHAIR] is a steal; it went on sale on 2026-10-01.", True),  # an invented date
    ("The [CHAIR] is down from 129.00 on 2026-11-02.", False),  # no history given
])
def test_an_invented_past_price_or_date_is_a_violation(sentence: str,
                                                       without_history: bool) -> None:
    history = {"CHAIR": DROP} if without_history else {}
    found = check(sentence, [CHAIR, SOFA], [], history)
    assert found and all(v.kind == "history" for v in found), found


def test_words_that_only_look_like_a_past_price_are_left_alone() -> None:
    assert check("The [CHAIR] was 2 seats wide in the photo.", [CHAIR], [], {}) == []
    assert check("The [CHAIR] is cut from 100% linen.", [CHAIR], [], {}) == []
    assert check("The [CHAIR], costing €99, is a fine pick.", [CHAIR], [], {}) == []
    # A current price written with a currency is still checked as a price.
    assert [v.kind for v in check("The [CHAIR] costs $129.", [CHAIR], [],
                                  {"CHAIR": DROP})] == ["price"]


def test_the_prompt_gives_a_change_only_with_its_rule() -> None:
    model = ScriptedChatModel([])
    with_change = answer_messages(model, "a chair", [CHAIR, SOFA], "", [], 160,
                                  {"CHAIR": DROP, "ELSEWHERE": DROP})
    system = with_change[0]["content"]
    assert 'id="CHAIR">' in system and "price_change: down from 129.00 on 2026-11-02" in system
    assert system.count("price_change:") == 1 and HISTORY_RULE in system
    plain = answer_messages(model, "a chair", [CHAIR, SOFA], "", [], 160)[0]["content"]
    assert "price_change" not in plain and HISTORY_RULE not in plain


def _history(root: Path, rows: list[tuple[str, str, float, str]]) -> None:
    """History rows (id, seen_at, price, availability) appended as one part."""
    from pinshop_cli.io.history import history_store
    from pinshop_cli.workspace.storage import query_arrow

    values = ", ".join(f"('{i}', TIMESTAMP '{t}', {p}, '{a}')" for i, t, p, a in rows)
    table = query_arrow(f"""
        SELECT id, seen_at, price::DECIMAL(18, 2) AS price, NULL::DECIMAL(18, 2) AS sale_price,
               'EUR' AS currency, availability
        FROM (VALUES {values}) v(id, seen_at, price, availability)""")
    store = history_store(root)
    store.ensure()
    store.append(table, f"{datetime.now():%Y%m%dT%H%M%S%f}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROWS ingested (its own snapshot: today's prices) with the fake embedder, indexed;
    then the chair's history says 129.00 on 2026-10-01 and 99.00 from 2026-11-02, and the
    stool's 80.00, then 70.00 (and today's ingest 60.00: its last change, 70.00 to 60.00)."""
    from pinshop_cli import IngestConfig, ingest
    from pinshop_cli.index.hnsw import build_indexes
    from pinshop_cli.testing import registered_fake_embedder

    base = tmp_path_factory.mktemp("chat_history")
    source = base / "catalog.csv"
    with open(source, "w", newline="") as out:
        csv.writer(out).writerows(ROWS)
    root = base / "ws"
    with registered_fake_embedder() as name:
        ingest(root, source, config=IngestConfig(embedder=name))
        build_indexes(root)
    _history(root, [("CHAIR", "2026-10-01 09:00:00", 129.0, "in_stock"),
                    ("CHAIR", "2026-11-02 09:00:00", 99.0, "in_stock"),
                    ("SOFA", "2026-10-01 09:00:00", 900.0, "out_of_stock"),
                    ("STOOL", "2026-10-01 09:00:00", 80.0, "in_stock"),
                    ("STOOL", "2026-11-02 09:00:00", 70.0, "in_stock")])
    return root


@pytest.fixture
def assistant_with(workspace: Path) -> Callable[[str], object]:
    """A ShoppingAssistant on the workspace whose (scripted) model answers `claim` about
    the chair: "The [CHAIR] is a comfy pick, {claim}."; any intent call reads as nothing."""
    from pinshop_cli.assistant.session import ShoppingAssistant
    from pinshop_cli.testing import registered_fake_embedder

    made = []

    def make(claim: str) -> object:
        def answer(messages: list[dict[str, str]]) -> str:
            prompt = " ".join(m["content"] for m in messages)
            if '<product id="' not in prompt:
                return "{}"  # the intent call: nothing read, the words decide
            assert re.search(r'<product id="CHAIR">', prompt)
            return f"The [CHAIR] is a fine pick, {claim}."

        assistant = ShoppingAssistant(workspace, ScriptedChatModel([answer] * 4))
        made.append(assistant)
        return assistant

    with registered_fake_embedder():
        yield make
    for assistant in made:
        assistant.retriever.close()  # type: ignore[attr-defined]


def test_the_shown_products_last_changes_are_read_and_only_while_they_hold(
        workspace: Path) -> None:
    from pinshop_cli.retrieval.retriever import Retriever

    retriever = Retriever(workspace)
    try:
        shown = retriever.products([])  # nothing shown: nothing read
        assert last_price_changes(workspace, shown) == {}
        rows = {r["id"]: Product.from_row(r) for r in retriever.rows(["CHAIR", "SOFA",
                                                                       "STOOL"])}
        found = last_price_changes(workspace, list(rows.values()))
        rows["STOOL"].price = 55.0  # a live change the history has not caught up with
        later = last_price_changes(workspace, list(rows.values()))
    finally:
        retriever.close()
    # The stool's 60.00 is the ingest's snapshot, dated when the fixture ran (not "today":
    # the fixture may have run before a midnight UTC that the test runs after).
    from pinshop_cli.io.history import history_store
    from pinshop_cli.workspace.storage import query_arrow, sql_path

    files = ", ".join(sql_path(p) for p in history_store(workspace).files())
    today = query_arrow(f"SELECT strftime(seen_at, '%Y-%m-%d') AS day FROM read_parquet("
                        f"[{files}]) WHERE id = 'STOOL' AND price = 60").column("day")[0].as_py()
    # The sofa changed only its stock: no price change.
    assert found == {"CHAIR": DROP, "STOOL": PriceChange("STOOL", 70.0, 60.0, "EUR", today)}
    assert found["CHAIR"].text() == "down from 129.00 on 2026-11-02"
    assert later == {"CHAIR": DROP}  # the stool's change no longer describes its price


@pytest.mark.parametrize("harm", ["removed", "damaged"])
def test_a_history_part_gone_or_damaged_after_listing_is_answered_without_history(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harm: str) -> None:
    """A part the manifest lists but that a compaction removed, or that is damaged, after
    the listing: PINSHOP_VERIFY=off makes the listing trust the manifest, which is the
    window between listing and reading. The read answers without history, and so does
    chat: no crash."""
    import shutil

    from pinshop_cli.assistant.session import ShoppingAssistant
    from pinshop_cli.io.history import history_store
    from pinshop_cli.retrieval.retriever import Retriever
    from pinshop_cli.testing import registered_fake_embedder

    root = tmp_path / "ws"
    shutil.copytree(workspace, root, ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.setenv("PINSHOP_VERIFY", "off")
    part = history_store(root).files()[-1]
    if harm == "removed":
        part.unlink()
    else:
        part.write_bytes(b"not parquet" * 100)
    retriever = Retriever(root)
    try:
        rows = [Product.from_row(r) for r in retriever.rows(["CHAIR", "STOOL"])]
        assert last_price_changes(root, rows) == {}
        assert last_price_changes(root, rows, retriever.store.con) == {}
    finally:
        retriever.close()

    def answer(messages: list[dict[str, str]]) -> str:
        prompt = " ".join(m["content"] for m in messages)
        return "The [CHAIR] is a fine pick." if '<product id="' in prompt else "{}"

    with registered_fake_embedder():
        assistant = ShoppingAssistant(root, ScriptedChatModel([answer] * 4))
        try:
            reply = assistant.ask("a green lounge chair")
        finally:
            assistant.retriever.close()
    assert reply.grounded and "Oslo lounge chair" in reply.answer
    assert "price_change" not in assistant.model.calls[-1].messages[0]["content"]


def test_chat_keeps_a_price_drop_the_history_supports(assistant_with) -> None:
    assistant = assistant_with("down from 129.00 on 2026-11-02")
    reply = assistant.ask("a green lounge chair")
    assert reply.grounded and not reply.violations, reply.violations
    assert "down from 129.00 on 2026-11-02" in reply.answer
    assert "Oslo lounge chair (99.00 EUR)" in reply.answer  # rendered from the catalog
    prompt = assistant.model.calls[-1].messages[0]["content"]
    assert "price_change: down from 129.00 on 2026-11-02" in prompt


@pytest.mark.parametrize("claim", ["down from 149.00 on 2026-11-02",
                                   "down from 129.00 on 2026-11-20",
                                   "it was 119.00 EUR last week"])
def test_chat_replaces_an_invented_price_change(assistant_with, claim: str) -> None:
    assistant = assistant_with(claim)
    reply = assistant.ask("a green lounge chair")
    assert not reply.grounded and any(v.startswith("history:") for v in reply.violations)
    assert claim not in reply.answer and "149" not in reply.answer
    assert reply.answer.startswith("Here is what the catalog has:")


def test_a_cut_lead_sentence_leaves_the_template_not_its_alternatives(assistant_with
                                                                      ) -> None:
    """The guard cuts the lead sentence for a claim its row does not support; what followed
    it ("... is a nice alternative") would read as if the right product were a second
    choice, so the answer stops and the truthful template answers instead."""
    assistant = assistant_with("and so comfortable for reading. If you want another look, "
                               "the [CHAIR] is a nice alternative")
    reply = assistant.ask("a green lounge chair")
    assert reply.removed and "comfortable" in reply.removed[0]
    assert reply.answer.startswith("Here is what the catalog has:"), reply.answer
    assert "alternative" not in reply.answer


def test_a_sentence_cut_off_by_the_token_limit_is_not_shown(assistant_with) -> None:
    """The model stopped at max_tokens mid-sentence: its unfinished words are dropped, the
    finished sentences stay (before: '... options such as Here is what the catalog has')."""
    assistant = assistant_with("really. It comes with " + "many " * 400 + "options")
    reply = assistant.ask("a green lounge chair")
    assert "fine pick, really." in reply.answer and "many" not in reply.answer, reply.answer


def test_chat_search_shows_a_family_once(workspace: Path) -> None:
    from pinshop_cli.retrieval import policy
    from pinshop_cli.retrieval.retriever import Retriever
    from pinshop_cli.retrieval.store import Filters
    from pinshop_cli.testing import registered_fake_embedder

    with registered_fake_embedder():
        retriever = Retriever(workspace)
        try:
            found = policy.retrieve(retriever, Filters(category="shirt"), "red cotton tee")
            tees = [p for p in found.products if p.id.startswith("TEE-")]
            assert len(tees) == 1 and len(found.products) == 3  # the tee, polo, henley
            assert tees[0].family is not None and tees[0].family["summary"] == (
                "2 colours, 3 sizes")
            assert all(p.family is None for p in found.products if p not in tees)
        finally:
            retriever.close()


def test_similar_folds_families(workspace: Path) -> None:
    """The reference's own family is the reference's: its other variants are not
    look-alikes; another product's family shows once."""
    from pinshop_cli.look.similar import similar
    from pinshop_cli.testing import registered_fake_embedder

    with registered_fake_embedder():
        like_tee = similar("TEE-red-M", workspace, top_k=5)
        like_polo = similar("POLO", workspace, top_k=5)
    assert not [i for i in like_tee.items if i.product.id.startswith("TEE-")]
    tees = [i.product for i in like_polo.items if i.product.id.startswith("TEE-")]
    assert len(tees) == 1 and tees[0].family is not None
    assert tees[0].family["variants"] == 6


def test_similar_table_says_what_a_family_comes_in_and_offers_refuse_filters(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`similar`'s table shows a family's best variant with its summary, as match's does;
    --offers, every listing of the product, refuses the look-alike filters in one line."""
    from typer.testing import CliRunner

    from commands import _output
    from commands.main import app
    from pinshop_cli import PinshopError
    from pinshop_cli.testing import registered_fake_embedder

    # Wide enough that no title is cut short with an ellipsis, whatever the terminal (the
    # console reads COLUMNS once, at import).
    monkeypatch.setattr(_output.out, "_width", 240)
    runner = CliRunner()
    with registered_fake_embedder():
        shown = runner.invoke(app, ["similar", "POLO", "-w", str(workspace)])
    assert shown.exit_code == 0, shown.output
    titles = " ".join(line.split("│")[2].strip() for line in shown.stdout.splitlines()
                      if line.count("│") == 5)
    assert "Cotton tee · 2 colours, 3 sizes" in titles
    assert "Cotton henley shirt ·" not in titles  # no family: the title alone
    for flags in (["--cheaper"], ["--top-k", "3"], ["--color", "red", "--max-price", "9"]):
        refused = runner.invoke(app, ["similar", "POLO", "--offers", *flags, "-w",
                                      str(workspace)])
        # The app's one funnel prints a PinshopError as "Error: ..." and exits 1.
        assert refused.exit_code == 1 and isinstance(refused.exception, PinshopError)
        error = str(refused.exception)
        assert error.startswith("--offers lists every listing") and "\n" not in error
        assert all(flag in error for flag in flags if flag.startswith("--"))
