"""Live updates below the server, on a real Shop over a copy of the demo workspace: the
change log's writes take the lock without its sweep, every reader of the catalog applies
the log (also when a fold lands while it loads), a write by another process between two of
the Shop's own saves is noticed, and a Shop whose fold fails still lets go."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import pinshop_cli
from pinshop_cli.retrieval.updates import ChangeLog, ProductChange, log_changes, write_changes
from pinshop_cli.workspace import Workspace


def test_a_live_change_takes_the_lock_without_the_sweep(copy_workspace: Any) -> None:
    root = copy_workspace()
    leftover = root / ".left-by-a-killed-writer.tmp"  # what sweep_leftovers removes
    leftover.write_bytes(b"")
    with pinshop_cli.open(root) as shop:
        shop.update_product("P005", price=12)
        assert leftover.exists()
        assert ChangeLog(shop.ws).pending().column("id").to_pylist() == ["P005"]
    assert not leftover.exists()  # the fold on close sweeps, as ingest and index do


def test_every_reader_of_the_catalog_applies_the_change_log(copy_workspace: Any) -> None:
    """What duplicates, audit, `match --rebuild` and the free functions build (a Retriever
    of their own) answers with logged changes, filters included, and so does `pinshop
    sql`'s catalog view; each field's last setting wins, a cleared sale included."""
    from pinshop_cli.retrieval.retriever import Retriever
    from pinshop_cli.retrieval.store import Filters

    ws = Workspace.open(copy_workspace())
    log_changes(ws, [ProductChange("P005", price=12.0, sale_price=10.0)])
    log_changes(ws, [ProductChange("P005", clear_sale=True, availability="preorder")])
    retriever = Retriever(ws)
    try:
        row = retriever.store.rows(["P005"])[0]
        assert (float(row["price"]), row["sale_price"], row["availability"]) == (
            12.0, None, "preorder")
        assert "P005" in retriever.store.ids(Filters(max_price=12)).to_pylist()
    finally:
        retriever.close()
    shown = pinshop_cli.run_sql("SELECT price, sale_price, availability FROM catalog "
                                "WHERE id = 'P005'", workspace=ws.root).rows
    assert [(float(p), s, a) for p, s, a in shown] == [(12.0, None, "preorder")]
    assert pinshop_cli.run_sql("SELECT count(*) FROM catalog", workspace=ws.root).rows == \
        pinshop_cli.run_sql("SELECT count(*) FROM catalog_folded", workspace=ws.root).rows
    assert ChangeLog(ws).pending().to_pylist() == [{
        "id": "P005", "price": 12.0, "set_price": True, "sale_price": None,
        "set_sale_price": True, "availability": "preorder", "set_availability": True}]


def test_price_filters_judge_the_price_paid(copy_workspace: Any) -> None:
    """A product on sale passes a cap its sale price meets (it was left out, and the note
    said no product costs that little), in the store's SQL and in the index's masks."""
    from pinshop_cli.retrieval.match import match

    ws = Workspace.open(copy_workspace())
    log_changes(ws, [ProductChange("P005", sale_price=15.0)])  # an armchair at 549
    found = match(text="armchair", workspace=ws.root, max_price=16, top_k=3)
    assert [m.id for m in found.text_matches] == ["P005"]
    assert found.text_matches[0].paid == 15.0 and found.text_matches[0].price == 549.0
    cheaper = pinshop_cli.similar("P006", workspace=ws.root, cheaper=True, top_k=10)
    assert "P005" in [item.product.id for item in cheaper.items]
    # Live, in a Shop whose index filters are loaded: a sale set after the first query
    # counts (the filter columns took only `price` changes, and the list price at that).
    with pinshop_cli.open(ws.root) as shop:
        assert [m.id for m in shop.match(text="armchair", max_price=16).text_matches] == \
            ["P005"]
        shop.update_product("P006", sale_price=14)  # a lounge chair at 890
        assert {m.id for m in shop.match(text="armchair", max_price=16).text_matches} == \
            {"P005", "P006"}
        shop.update_product("P006", price=900)  # still on sale at 14
        assert "P006" in {m.id for m in shop.match(text="armchair", max_price=16).text_matches}
        with pytest.raises(pinshop_cli.PinshopError, match="is above the price"):
            shop.update_product("P006", price=13)  # below its sale: refused, nothing saved
        assert float(shop.product("P006").price) == 900.0


def test_a_change_a_killed_server_logged_reaches_the_history_before_an_ingest(
        copy_workspace: Any, sample_dir: Any) -> None:
    """A PATCH answered 200, then the server killed before its history write: the next
    ingest replaced the catalog and the price that was served was never recorded. It is
    folded first now, stamped with the change's own time."""
    from datetime import datetime, timedelta

    ws = Workspace.open(copy_workspace())
    log_changes(ws, [ProductChange("P019", price=777.0)])  # the log, as a kill leaves it
    logged = ChangeLog(ws).newest()
    assert logged is not None and abs(datetime.utcnow() - logged) < timedelta(minutes=1)
    pinshop_cli.ingest(ws.root, sample_dir / "catalog.csv")
    history = pinshop_cli.run_sql("SELECT price::DOUBLE, seen_at FROM price_history WHERE "
                                  "id = 'P019' ORDER BY seen_at", workspace=ws.root).rows
    assert [price for price, _ in history][-2:] == [777.0, 45.0]  # served, then the feed's
    assert [seen for price, seen in history if price == 777.0] == [logged]
    assert ChangeLog(ws).rows() == 0
    # A damaged catalog is still replaced whole by the ingest, a logged change or not.
    log_changes(ws, [ProductChange("P019", price=555.0)])
    ws.catalog.write_bytes(ws.catalog.read_bytes()[:200])
    pinshop_cli.ingest(ws.root, sample_dir / "catalog.csv")
    assert pinshop_cli.run_sql("SELECT price::DOUBLE FROM catalog WHERE id = 'P019'",
                               workspace=ws.root).rows == [(45.0,)]


def test_a_write_by_another_process_between_own_saves_is_noticed(copy_workspace: Any) -> None:
    """Another writer lands between two saves, also while a save is under way (queued
    behind the flush): the Shop reloads at the next refresh instead of taking that write
    for its own."""
    with pinshop_cli.open(copy_workspace()) as shop:
        shop.update_product("P010", price=20)
        assert not shop.refresh()  # its own save: no reload
        write_changes(shop.ws, [ProductChange("P012", 18.0)])  # as another process would
        shop.update_product("P011", price=21)
        assert shop.refresh() and shop.product("P012").price == 18

        writer = shop._writer  # noqa: SLF001
        assert writer is not None
        change = shop.prepare_update("P013", price=23)
        with writer._flush_lock:  # noqa: SLF001 - hold the flush: the save waits, queued
            saving = threading.Thread(target=shop.save_update, args=(change,))
            saving.start()
            while not writer._queued:  # noqa: SLF001
                time.sleep(0.01)
            write_changes(shop.ws, [ProductChange("P014", 24.0)])  # meanwhile, elsewhere
        saving.join(60)
        shop.apply_saved()
        assert shop.refresh()
        assert (shop.product("P013").price, shop.product("P014").price) == (23, 24)


def test_a_shop_whose_fold_fails_still_lets_go(copy_workspace: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    root = copy_workspace()
    shop = pinshop_cli.open(root)
    shop.update_product("P005", price=12)
    with Workspace.open(root).lock(), caplog.at_level(logging.WARNING):  # an ingest, say
        shop.close()
    assert shop._retriever is None  # noqa: SLF001
    assert "not folded into catalog.parquet yet" in caplog.text
    assert ChangeLog(shop.ws).pending().column("id").to_pylist() == ["P005"]  # kept

    shop = pinshop_cli.open(root)
    shop.update_product("P006", price=13)
    (root / "catalog.parquet").write_bytes(b"not parquet")  # a fold that fails otherwise
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        shop.close()
    assert shop._retriever is None  # noqa: SLF001
    # The fold checks the catalog before rewriting it (a new check record would vouch for
    # a damaged file), so the reason is the damage, in one line.
    assert "not folded into catalog.parquet yet" in caplog.text
    assert "catalog.parquet is damaged (too short to be Parquet)" in caplog.text


def test_a_fold_landing_while_a_reader_loads_loses_no_change(
        copy_workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that read catalog.parquet just before a fold rewrote it (and emptied the
    log) reads it again: it never shows the old catalog without the logged change."""
    from pinshop_cli.retrieval.retriever import Retriever

    ws = Workspace.open(copy_workspace())
    log_changes(ws, [ProductChange("P005", price=12.0)])
    apply, folded = ChangeLog.apply, []

    def fold_first(log: ChangeLog, con: Any, base: str | None = None) -> int:
        if not folded:  # the fold lands between the reader's read and its apply
            folded.append(True)
            write_changes(ws)
        return apply(log, con, base)

    monkeypatch.setattr(ChangeLog, "apply", fold_first)
    retriever = Retriever(ws)
    try:
        assert float(retriever.store.rows(["P005"])[0]["price"]) == 12.0
    finally:
        retriever.close()
    assert folded and ChangeLog(ws).rows() == 0


def test_sql_over_a_damaged_change_log_shows_the_folded_catalog_and_says_so(
        copy_workspace: Any) -> None:
    ws = Workspace.open(copy_workspace())
    query = "SELECT price FROM catalog WHERE id = 'P005'"
    folded = pinshop_cli.run_sql(query, workspace=ws.root).rows
    log_changes(ws, [ProductChange("P005", price=12.0)])
    for part in ChangeLog(ws).files():
        part.write_bytes(b"not parquet")
    result = pinshop_cli.run_sql(query, workspace=ws.root)
    assert result.rows == folded and float(folded[0][0]) != 12.0
    assert any("is damaged" in note for note in result.notes), result.notes
