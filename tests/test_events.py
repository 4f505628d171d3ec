"""Events ingestion: parsing, rejects with line numbers and reasons, idempotence."""

from __future__ import annotations

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.events import ingest_events
from pinshop_cli.sql import run_sql


def test_events_parse_with_rejects_and_line_numbers(events_workspace, tmp_path):
    source = tmp_path / "events.csv"
    source.write_text(
        "user_id,item_id,event,ts,weight\n"
        "u1,A,view,2025-01-01 10:00:00,\n"            # 2 ok, default weight 1
        "u1,B,Purchase,2025-01-02T10:00:00Z,\n"       # 3 ok: case and ISO-Z accepted
        "u2,ZZZ,view,2025-01-01 10:00:00,\n"          # 4 unknown item
        "u2,A,like,2025-01-01 10:00:00,\n"            # 5 unknown event type
        "u2,A,view,yesterday,\n"                      # 6 bad timestamp
        ",A,view,2025-01-01 10:00:00,\n"              # 7 missing user
        "u3,C,save,1735725600,2.5\n"                  # 8 ok: epoch seconds, explicit weight
        "u3,C,save,2025-01-01 10:00:00,heavy\n"       # 9 bad weight
    )
    summary = ingest_events(source, events_workspace)
    assert (summary.rows_ok, summary.rows_rejected, summary.added) == (3, 5, 3)
    rejects = run_sql("SELECT line, reason FROM rejects_events ORDER BY line", events_workspace)
    assert rejects.rows == [
        (4, "unknown item id 'ZZZ'"), (5, "unknown event type 'like'"),
        (6, "bad timestamp 'yesterday'"), (7, "missing user_id"), (9, "bad weight 'heavy'")]
    events = run_sql("SELECT user_id, item_id, event, ts::VARCHAR, weight FROM events "
                     "ORDER BY ts", events_workspace).rows
    assert events == [("u1", "A", "view", "2025-01-01 10:00:00", 1.0),
                      ("u3", "C", "save", "2025-01-01 10:00:00", 2.5),
                      ("u1", "B", "purchase", "2025-01-02 10:00:00", 10.0)]


def test_reingesting_the_same_file_adds_nothing(events_workspace, tmp_path):
    source = tmp_path / "events.csv"
    source.write_text("user_id,item_id,event,ts\nu1,A,view,2025-01-01\nu1,B,save,2025-01-02\n")
    assert ingest_events(source, events_workspace).added == 2
    again = ingest_events(source, events_workspace)
    assert (again.added, again.total) == (0, 2)


def test_parquet_events_and_missing_columns(events_workspace, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "item_id": ["A"], "event": ["cart"],
                             "ts": pa.array([1_735_725_600_000_000], pa.timestamp("us"))}), path)
    assert ingest_events(path, events_workspace).rows_ok == 1
    (tmp_path / "bad.csv").write_text("user,item\nu1,A\n")
    with pytest.raises(PinshopError, match="lacks column"):
        ingest_events(tmp_path / "bad.csv", events_workspace)
