"""The front door: `pinshop_cli.open(workspace)` -> a Shop whose methods are the commands."""

from __future__ import annotations

from pathlib import Path

import pytest

import pinshop_cli
from pinshop_cli import PinshopError

COMMANDS = ("ingest", "index", "match", "similar", "complete", "duplicates", "audit",
            "recommend", "tune", "chat", "sql", "ingest_events", "evaluate")


def test_every_command_is_a_method_and_a_new_directory_is_a_workspace(tmp_path: Path,
                                                                      write_catalog) -> None:
    catalog = write_catalog([{"id": "a", "title": "Oak Chair", "category": "chair",
                              "image": "products/P001.jpg", "price": "10"},
                             {"id": "b", "title": "Linen Sofa", "category": "sofa"}])
    with pinshop_cli.open(tmp_path / "new") as shop:
        assert all(callable(getattr(shop, name)) for name in COMMANDS)
        summary = shop.ingest(catalog)
        assert summary.rows_ok == 2
        assert {m.name for m in shop.index()} >= {"product_image", "product_text"}
        found = shop.match(text="oak chair", top_k=1)
        assert found.text_matches[0].id == "a"
        assert shop.sql("SELECT count(*) FROM catalog").rows == [(2,)]


def test_answers_reuse_one_retriever_and_writes_let_it_go(copy_workspace) -> None:
    root = copy_workspace()
    with pinshop_cli.open(root) as shop:
        shop.match(text="sofa", top_k=1)
        first = shop.retriever
        shop.similar("P005", top_k=2)
        assert shop.retriever is first  # the catalog and indexes loaded once
        shop.index()
        assert shop.retriever is not first  # a write: the next answer reads the new state


def test_answering_from_a_workspace_that_does_not_exist_is_one_clear_error(tmp_path) -> None:
    with pinshop_cli.open(tmp_path / "nothing") as shop, \
            pytest.raises(PinshopError, match="run `pinshop ingest"):
        shop.match(text="sofa")
    assert not (tmp_path / "nothing").exists()  # asking never creates it


def test_changes_takes_the_commands_limit(copy_workspace) -> None:
    from pinshop_cli.io.history import changes

    root = copy_workspace()
    with pinshop_cli.open(root) as shop:
        shown, expected = shop.changes(limit=1), changes(root, None, 1)
        assert (list(shown), shown.total) == (list(expected), expected.total)
        with pytest.raises(PinshopError, match="--limit must be at least 1"):
            shop.changes(limit=0)
