"""Chat follow-ups answered among the shown product's variants: "in a larger size", "in
blue" (assistant/variants.py), on a catalog with item_group_id families."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pinshop_cli.assistant.variants import asks_for_variant, find_variant
from pinshop_cli.io.catalog import normalize_catalog
from pinshop_cli.retrieval.store import CatalogStore
from pinshop_cli.workspace import Workspace

ROWS = [["id", "title", "category", "price", "item_group_id", "color", "size", "availability"]]
ROWS += [[f"TEE-{c}-{s}", "Cotton tee", "shirt", "20", "tee", c, s,
          "out_of_stock" if (c, s) == ("blue", "L") else "in_stock"]
         for c in ("red", "blue") for s in ("S", "M", "L")]
ROWS += [["SOFA-2", "Linen sofa", "sofa", "900", "sofa", "green", "2-seat", "in_stock"],
         ["SOFA-3", "Linen sofa", "sofa", "1100", "sofa", "green", "3-seat", "in_stock"],
         ["LAMP", "Brass lamp", "lamp", "80", "", "gold", "", "in_stock"]]


def _catalog(root: Path) -> Path:
    path = root / "catalog.csv"
    with open(path, "w", newline="") as out:
        csv.writer(out).writerows(ROWS)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CatalogStore:
    root = tmp_path_factory.mktemp("variants")
    ws = Workspace.open(root / "ws", create=True)
    normalize_catalog(_catalog(root), ws.catalog, ws.rejects_dir / "catalog.parquet")
    return CatalogStore(ws)


@pytest.mark.parametrize(("shown", "question", "expected"), [
    ("TEE-red-M", "in a larger size?", "TEE-red-L"),
    ("TEE-red-M", "one size down please", "TEE-red-S"),
    ("TEE-red-L", "a size up", None),  # none larger
    ("TEE-red-M", "do you have it in blue?", "TEE-blue-M"),  # same size kept
    ("TEE-red-M", "in blue and bigger", "TEE-blue-L"),  # out of stock, yet the only one
    ("TEE-red-S", "in size M", "TEE-red-M"),
    ("TEE-red-M", "in green", None),  # no green tee
    ("TEE-red-M", "anything in leather?", None),
    ("TEE-red-M", "made in italy?", None),  # asks, but names none of the tee's colours
    ("TEE-red-M", "in blue for my son?", "TEE-blue-M"),
    ("SOFA-2", "a bigger one", "SOFA-3"),  # sizes ranked by their number
    ("LAMP", "in blue", None),  # no family
    ("TEE-red-M", "in L?", "TEE-red-L"),  # a letter size without the word "size"
    ("TEE-red-M", "do you have it in XL", None),  # the tee has no XL
    ("TEE-red-S", "in a medium please", "TEE-red-M"),
    ("TEE-blue-S", "in red and in a large", "TEE-red-L"),
])
def test_a_follow_up_finds_the_variant_asked_for(store: CatalogStore, shown: str,
                                                 question: str, expected: str | None) -> None:
    assert find_variant(store, shown, question) == expected


@pytest.mark.parametrize(("question", "asks"), [
    ("do you have it in blue?", True),
    ("and in dark green", True),
    ("in a larger size?", True),
    ("does it come in XL", True),
    ("in an extra large, please", True),
    ("in size 38", True),
    ("in blue and bigger", True),
    ("in blue for my son?", True),
    ("in black as well?", True),
    ("in green with oak legs?", True),
    ("anything in the living room?", False),
    ("what would look good in my bedroom", False),
    ("is it in stock?", False),
    ("something for a small room in a flat", False),
    ("in a small room, what fits?", False),
    ("what is in it?", False),
])
def test_only_a_variant_request_asks_for_a_variant(question: str, asks: bool) -> None:
    assert asks_for_variant(question) == asks


def test_chat_answers_in_a_larger_size_with_the_shown_products_variant(
        tmp_path: Path, fake_embedder: str, fake_chat: object) -> None:
    """Plumbing: the fake embedder and the scripted chat model."""
    from pinshop_cli import IngestConfig, ingest
    from pinshop_cli.assistant.session import ShoppingAssistant
    from pinshop_cli.index.hnsw import build_indexes
    from pinshop_cli.retrieval.retriever import Hit

    root = tmp_path / "ws"
    ingest(root, _catalog(tmp_path), config=IngestConfig(embedder=fake_embedder))
    build_indexes(root)
    assistant = ShoppingAssistant(root, fake_chat)  # type: ignore[arg-type]
    first = assistant.ask("a red cotton tee").products[0]
    if first.id != "TEE-red-M":  # start from a medium whatever came first
        assistant.dialogue.last_products = assistant.retriever.products([Hit("TEE-red-M", 0)])
    reply = assistant.ask("do you have it in a larger size?")
    assert [p.id for p in reply.products] == ["TEE-red-L"]
    assert [p.id for p in assistant.ask("and in blue?").products] == ["TEE-blue-L"]
    sofas = assistant.ask("a linen sofa in red").products
    assert sofas and all(p.category == "sofa" for p in sofas)  # not a variant of the tee
