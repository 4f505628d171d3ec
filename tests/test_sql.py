"""`pinshop sql`: read-only by default (enforced by DuckDB settings), writes only inside the
workspace when asked, and junk files in the workspace never break every query."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pinshop_cli import PinshopError
from pinshop_cli.commands.main import app
from pinshop_cli.sql import connect, run_sql
from pinshop_cli.workspace.parts import PartStore


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with a catalog, one rejects table and one embeddings part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "ws"
    (root / "rejects").mkdir(parents=True)
    (root / "embeddings" / "product_text").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a", "b"], "title": ["Lamp", "Sofa"],
                             "product_text_hash": ["h", "h"]}),
                   root / "catalog.parquet")
    pq.write_table(pa.table({"source": ["c.csv"], "line": [3], "reason": ["missing id"]}),
                   root / "rejects" / "catalog.parquet")
    vectors = pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2))
    PartStore(root / "embeddings" / "product_text").append(
        pa.table({"id": ["a", "b"], "kind": ["product_text"] * 2, "model_id": ["m"] * 2,
                  "source_hash": ["h"] * 2, "vector": vectors}), key="0")
    return root


def test_views_answer_queries(ws: Path) -> None:
    assert run_sql("SELECT id, title FROM catalog ORDER BY id", ws).rows == [
        ("a", "Lamp"), ("b", "Sofa")]
    assert run_sql("SELECT reason FROM rejects_catalog", ws).rows == [("missing id",)]
    assert run_sql("SELECT count(*), max(len(vector)) FROM embeddings", ws).rows == [(2, 2)]
    # Two queries showed the second's rows only, silently; one with a trailing ';' is one.
    with pytest.raises(PinshopError, match="one query at a time"):
        run_sql("SELECT 1; SELECT 2", ws)
    assert run_sql("SELECT 1;", ws).rows == [(1,)]


def test_a_view_the_workspace_has_not_made_yet_names_what_makes_it(ws: Path) -> None:
    with pytest.raises(PinshopError, match=r"no pins yet: `pinshop ingest --pins DIR` makes"):
        run_sql("SELECT count(*) FROM Pins", ws)  # as typed: the hint still comes
    with pytest.raises(PinshopError, match=r"no events yet: `pinshop ingest-events FILE`"):
        run_sql("SELECT * FROM events JOIN catalog ON id = item_id", ws)
    with pytest.raises(PinshopError, match=r"does not exist!$"):  # not a workspace view
        run_sql("SELECT * FROM no_such_table", ws)


@pytest.mark.parametrize("statement", [
    "COPY (SELECT 1) TO '{ws}/catalog.parquet'",
    "COPY catalog TO '{ws}/../stolen.csv'",
    "ATTACH '{ws}/side.duckdb'",
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_text('/etc/shadow')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_parquet('{ws}/catalog.parquet')",
    "SELECT * FROM glob('/etc/*')",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
])
def test_read_only_by_default(ws: Path, statement: str) -> None:
    before = (ws / "catalog.parquet").read_bytes()
    with pytest.raises(PinshopError, match=r"^SQL error: ") as caught:
        run_sql(statement.format(ws=ws), ws)
    assert "\n" not in str(caught.value)
    assert (ws / "catalog.parquet").read_bytes() == before
    assert not (ws / "side.duckdb").exists() and not (ws.parent / "stolen.csv").exists()


def test_settings_stay_locked_within_one_connection(ws: Path) -> None:
    import duckdb

    con = connect(ws)
    try:
        with pytest.raises(duckdb.Error):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_text('/etc/passwd')").fetchall()
        # Temporary tables live in memory only; they are allowed and vanish.
        con.execute("CREATE TEMP TABLE t AS SELECT 1 AS x").fetchall()
    finally:
        con.close()


def test_allow_writes_writes_into_exports_only(ws: Path) -> None:
    out = ws / "exports" / "top.parquet"
    run_sql(f"COPY (SELECT id FROM catalog) TO '{out}'", ws, allow_writes=True)
    assert run_sql(f"SELECT count(*) FROM read_parquet('{out}')", ws,
                   allow_writes=True).rows == [(2,)]
    before = (ws / "catalog.parquet").read_bytes()
    for target in (ws / "catalog.parquet", ws / "exports" / ".." / "catalog.parquet",
                   ws / "rejects" / "x.parquet", ws.parent / "outside.parquet",
                   Path(f"{ws}-sibling") / "x.parquet"):
        with pytest.raises(PinshopError, match="SQL error: .*exports/"):
            run_sql(f"COPY (SELECT 'x' AS id) TO '{target}'", ws, allow_writes=True)
    assert (ws / "catalog.parquet").read_bytes() == before
    assert not (ws.parent / "outside.parquet").exists()
    with pytest.raises(PinshopError, match="SQL error"):
        run_sql("SELECT * FROM read_text('/etc/passwd')", ws, allow_writes=True)


def test_allow_writes_is_a_writer(ws: Path) -> None:
    from pinshop_cli import Workspace, WorkspaceLockedError

    with Workspace.open(ws).lock(), pytest.raises(WorkspaceLockedError):
        run_sql(f"COPY (SELECT 1 AS a) TO '{ws}/exports/a.parquet'", ws, allow_writes=True)
    (ws / "exports").symlink_to(ws.parent)
    with pytest.raises(PinshopError, match="exports is not a plain directory"):
        run_sql(f"COPY (SELECT 1 AS a) TO '{ws}/exports/a.parquet'", ws, allow_writes=True)
    assert not (ws.parent / "a.parquet").exists()


def test_links_leading_out_of_the_workspace_are_never_read(ws: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    secret = tmp_path / "secret.parquet"
    pq.write_table(pa.table({"password": ["hunter2"]}), secret)
    (ws / "rejects" / "evil.parquet").symlink_to(secret)
    (ws / "rejects" / "fine.parquet").symlink_to(ws / "rejects" / "catalog.parquet")
    result = run_sql("SELECT count(*) FROM rejects_fine", ws)  # a link inside is fine
    assert result.rows == [(1,)]
    assert any("evil.parquet" in n and "outside the workspace" in n for n in result.notes)
    with pytest.raises(PinshopError, match="rejects_evil"):
        run_sql("SELECT * FROM rejects_evil", ws)


def test_a_runaway_statement_is_stopped_by_the_timeout(ws: Path) -> None:
    endless = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
               "SELECT count(*) FROM r")
    with pytest.raises(PinshopError, match=r"ran longer than 0.5 s and was stopped"):
        run_sql(endless, ws, timeout=0.5)


def _ctrl_c_as_in_a_terminal() -> None:
    """A command started in the background (`cmd &` in a script, as CI may run the suite)
    inherits an ignored SIGINT, and Python then installs no Ctrl-C handler at all; the
    child gets the default back, as in a terminal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_interrupts_a_running_statement(ws: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    endless = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
               "SELECT count(*) FROM r")
    process = subprocess.Popen([sys.executable, "-m", "pinshop_cli.commands.main", "sql",
                                endless, "-w", str(ws), "--timeout", "0"],
                               stderr=subprocess.PIPE, text=True, env=os.environ,
                               preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        time.sleep(3)  # start-up, then DuckDB is busy
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        process.kill()  # a failed run must not leave an endless query behind


@pytest.mark.parametrize("launched", [True, False], ids=["after-launch", "before-launch"])
def test_ctrl_c_while_the_query_thread_starts_stops_the_query(
        ws: Path, monkeypatch: pytest.MonkeyPatch, launched: bool) -> None:
    """A Ctrl-C that lands inside Thread.start() must neither leave DuckDB running (closing
    the connection would then wait forever) nor wait for a thread that never began."""
    import threading
    import time

    class CtrlCDuringStart(threading.Thread):
        def start(self) -> None:
            if self.name == "pinshop-sql" and launched:
                super().start()
                time.sleep(0.5)  # DuckDB is running the statement when Ctrl-C lands
            if self.name == "pinshop-sql":
                raise KeyboardInterrupt
            super().start()

    endless = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
               "SELECT count(*) FROM r")
    raised: list[BaseException] = []

    def query() -> None:
        try:
            run_sql(endless, ws, timeout=0)
        except BaseException as exc:  # noqa: BLE001 - looked at below
            raised.append(exc)

    caller = threading.Thread(target=query, daemon=True)
    monkeypatch.setattr(threading, "Thread", CtrlCDuringStart)
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "run_sql hung after a Ctrl-C during thread start"
    assert len(raised) == 1 and isinstance(raised[0], KeyboardInterrupt)
    workers = [t for t in threading.enumerate() if t.name == "pinshop-sql"]
    for worker in workers:  # a worker left inside DuckDB would hang the process's exit
        worker.join(timeout=30)
    assert not any(worker.is_alive() for worker in workers)


def test_the_memory_limit_is_set_and_can_be_given(ws: Path) -> None:
    from pinshop_cli.limits import available_memory

    default = run_sql("SELECT current_setting('memory_limit')", ws).rows[0][0]
    value, unit = default.split()
    scale = {"MiB": 2 ** 20, "GiB": 2 ** 30, "KiB": 2 ** 10}[unit]
    assert float(value) * scale <= available_memory() * 0.55
    given = run_sql("SELECT current_setting('memory_limit')", ws, memory_limit="300MB")
    assert given.rows[0][0].startswith("286")  # 300 MB in MiB
    with pytest.raises(PinshopError, match="SQL error"):
        run_sql("SELECT 1", ws, memory_limit="lots")


def test_a_damaged_embeddings_part_is_left_out_with_a_note(ws: Path) -> None:
    part = PartStore(ws / "embeddings" / "product_text").files()[0]
    part.write_bytes(part.read_bytes()[:-20])
    result = run_sql("SELECT count(*) FROM catalog", ws)
    assert any(f"{part} is damaged" in n for n in result.notes)
    with pytest.raises(PinshopError, match="embeddings"):
        run_sql("SELECT count(*) FROM embeddings", ws)
    (ws / "embeddings" / "product_text" / "_manifest.json").write_text("{garbage")
    notes = run_sql("SELECT count(*) FROM catalog", ws).notes
    assert any("_manifest.json is damaged" in n and "pinshop index" in n for n in notes)


def test_junk_files_are_skipped_with_a_note(ws: Path) -> None:
    (ws / "rejects" / "junk.parquet").write_text("not parquet at all")
    (ws / "rejects" / "empty.parquet").write_bytes(b"")
    # A part no manifest lists is an orphan of a killed run: never read, so no note.
    (ws / "embeddings" / "product_text" / "L0-torn.parquet").write_bytes(b"PAR1\x00\x01")
    result = run_sql("SELECT count(*) FROM catalog", ws)
    assert result.rows == [(2,)]
    assert len(result.notes) == 2 and all("not a readable Parquet" in n for n in result.notes)
    assert run_sql("SELECT count(*) FROM embeddings", ws).rows == [(2,)]
    with pytest.raises(PinshopError, match="rejects_junk") as caught:
        run_sql("SELECT * FROM rejects_junk", ws)
    # The query fails as "does not exist"; the error says which file was left out, and why.
    assert "skipped" in str(caught.value) and "junk.parquet: not a readable Parquet" in \
        str(caught.value) and "\n" not in str(caught.value)


def test_quoted_workspace_path(tmp_path: Path, ws: Path) -> None:
    quoted = ws.rename(tmp_path / "o'brien ws")
    assert run_sql("SELECT count(*) FROM catalog", quoted).rows == [(2,)]


def test_views_show_one_current_vector_per_id_after_a_change(renamed_sofa_workspace):
    root = renamed_sofa_workspace
    dupes = run_sql("SELECT id FROM embeddings_product_text GROUP BY id HAVING count(*) > 1",
                    root)
    assert dupes.rows == []
    total = run_sql("SELECT count(*) FROM embeddings WHERE kind = 'product_text'", root)
    assert total.rows == [(44,)]


def test_json_writes_a_vector_row_on_one_line_and_decimals_as_numbers(demo_workspace):
    """`sql --json` of 100k embeddings wrote each float on its own line (1.09 GB) and
    fetched 50,000 rows of vectors at a time (4.1 GB); a DECIMAL price came out as the
    string "46.03"."""
    done = CliRunner().invoke(app, ["sql", "SELECT id, vector FROM embeddings_product_text "
                                           "ORDER BY id LIMIT 3", "--json",
                                    "-w", str(demo_workspace)])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and lines[0] == "[" and lines[-1] == "]"  # a row a line
    rows = json.loads(done.stdout)
    assert len(rows) == 3 and len(rows[0]["vector"]) == 384
    priced = CliRunner().invoke(app, ["sql", "SELECT 46.03::DECIMAL(10, 2) AS price, "
                                             "12345678901234567890.12::DECIMAL(38, 2) AS big",
                                      "--json", "-w", str(demo_workspace)])
    assert json.loads(priced.stdout) == [{"price": 46.03, "big": "12345678901234567890.12"}]
    # A chunk whose first row has no vector is laid out by the others' (a row a line).
    nulls = CliRunner().invoke(app, ["sql", "SELECT * FROM (VALUES (NULL), ([1.5, 2.5])) "
                                            "AS t(v)", "--json", "-w", str(demo_workspace)])
    assert nulls.stdout.splitlines()[1:3] == ['  {"v": null},', '  {"v": [1.5, 2.5]}']


def test_a_json_stream_stopped_by_the_timeout_says_what_was_written(demo_workspace):
    """All 100k rows were written, then "ran longer than 60 s": it read as if the output
    were partial, and it was not valid JSON. Now the error counts the rows written."""
    done = CliRunner().invoke(app, ["sql", "SELECT range AS n FROM range(1000000000)",
                                    "--json", "--timeout", "1", "-w", str(demo_workspace)])
    assert done.exit_code == 1 and done.stdout.startswith("[\n")
    assert re.search(r"ran longer than 1 s and was stopped .*; [\d,]+ rows were written "
                     r"before it stopped \(the JSON array is left open\)", str(done.exception))


def test_a_large_result_shows_its_first_rows_and_says_how_many(demo_workspace):
    """A terminal table of every row (100k: minutes to draw, 2 GB) shows --limit rows and
    says so; --json writes them all, as they come; an empty query is an error."""
    query = "SELECT * FROM range(5000)"
    shown = CliRunner().invoke(app, ["sql", query, "--limit", "3", "-w", str(demo_workspace)])
    assert shown.exit_code == 0 and "showing the first 3 rows; there are more" in shown.output
    assert "4999" not in shown.stdout
    every = CliRunner().invoke(app, ["sql", query, "--json", "-w", str(demo_workspace)])
    assert len(json.loads(every.stdout)) == 5000
    # --json streams the rows (1M rows held whole were 2 GB): a result the memory budget
    # refuses to hold is written whole, in print_json's layout.
    many = "SELECT range AS n, 'row ' || range AS s FROM range(300000)"
    with pytest.raises(PinshopError, match="the result outgrew the memory limit"):
        run_sql(many, demo_workspace, memory_limit="16MB")
    streamed = CliRunner().invoke(app, ["sql", many, "--json", "--memory-limit", "16MB",
                                        "-w", str(demo_workspace)])
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.startswith('[\n  {\n    "n": 0,\n    "s": "row 0"\n  },\n')
    assert len(json.loads(streamed.stdout)) == 300000
    fetched = run_sql(query, demo_workspace, max_rows=10)  # only what is shown is fetched
    assert (len(fetched.rows), fetched.more) == (10, True)
    assert not run_sql(query, demo_workspace, max_rows=5000).more
    empty = CliRunner().invoke(app, ["sql", " ", "-w", str(demo_workspace)])
    assert empty.exit_code == 1 and "no SQL to run" in str(empty.exception)
