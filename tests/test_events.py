"""Events ingestion: parsing, rejects with line numbers and reasons, idempotence."""

from __future__ import annotations

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.io import text
from pinshop_cli.io.events import ingest_events
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


def test_rejects_of_earlier_files_are_kept_and_none_twice(events_workspace, tmp_path):
    """Each run wrote over rejects/events.parquet: a clean second file erased the first's."""
    first, second, third = (tmp_path / "monday.csv", tmp_path / "tuesday.csv",
                            tmp_path / "next" / "monday.csv")
    first.write_text("user_id,item_id,event,ts\nu1,ZZZ,view,2025-01-01\nu1,A,like,2025-01-01\n")
    second.write_text("user_id,item_id,event,ts\nu1,A,view,2025-01-02\n")
    expected = [("monday.csv", 2, "unknown item id 'ZZZ'"),
                ("monday.csv", 3, "unknown event type 'like'")]
    for path in (first, second, first):  # the third time, not twice over
        ingest_events(path, events_workspace)
        assert run_sql("SELECT source, line, reason FROM rejects_events ORDER BY line",
                       events_workspace).rows == expected
    third.parent.mkdir()  # another file of the same name keeps the first one's too
    third.write_text("user_id,item_id,event,ts\nu2,YYY,view,2025-01-08\n")
    ingest_events(third, events_workspace)
    assert run_sql("SELECT source, line, reason FROM rejects_events ORDER BY line, id",
                   events_workspace).rows == [
        ("monday.csv", 2, "unknown item id 'YYY'"), *expected]


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


# -- bad real-world input: per-row rejects, or one clear error; never a crash ----------------

def ingest_csv(workspace, tmp_path, body: str | bytes, newline: bytes = b"\n"):
    """Ingest a CSV (header + body) and return (summary, {line: reason}, stored rows)."""
    source = tmp_path / "events.csv"
    text = b"user_id,item_id,event,ts,weight\n" + (
        body.encode() if isinstance(body, str) else body)
    source.write_bytes(text.replace(b"\n", newline))
    summary = ingest_events(source, workspace)
    reasons = dict(run_sql("SELECT line, reason FROM rejects_events", workspace).rows)
    stored = run_sql("SELECT user_id, item_id, event, ts::VARCHAR, weight FROM events "
                     "ORDER BY ts, user_id", workspace).rows
    return summary, reasons, stored


def test_timestamps_outside_the_window_are_rejected_per_row(events_workspace, tmp_path):
    summary, reasons, stored = ingest_csv(events_workspace, tmp_path, (
        "u1,A,view,NaN,\n"                       # 2 not a number
        "u1,A,view,1e20,\n"                      # 3 raised ConversionException before
        "u1,A,view,9e15,\n"                      # 4 as milliseconds still year 287k
        "u1,A,view,infinity,\n"                  # 5 accepted before, broke recommend
        "u1,A,view,-infinity,\n"                 # 6
        "u1,A,view,-99999999999,\n"              # 7 year -1199
        "u1,A,view,1700000000000,\n"             # 8 ok: epoch milliseconds
        "u2,B,view, 2025-01-01 10:00:00 ,\n"     # 9 ok: trimmed like the other fields
        "u2,B,view,2100-01-01,\n"                # 10 first instant outside
        "u2,B,view,1969-12-31 23:59:59,\n"       # 11 before 1970
        "u2,B,view,99999-01-01,\n"               # 12
        "u2,C,view,2099-12-31 23:59:59,\n"       # 13 in the window, but in the future
        "u2,C,view,,\n"                          # 14 no ts
        "u2,D,view,2025-06-01T12:00:00+02:00,\n"  # 15 ok: offset converted to UTC
    ))
    assert (summary.rows_ok, summary.rows_rejected) == (3, 11)
    assert reasons[2] == "bad timestamp 'NaN'"
    assert reasons[3].startswith("bad timestamp '1e20': not between 1970-01-01 and 2100")
    assert reasons[4].endswith("(read as epoch milliseconds)")
    assert all(reasons[line].startswith("bad timestamp") for line in (5, 6, 7, 10, 11, 12))
    assert reasons[13].startswith("bad timestamp '2099-12-31 23:59:59': in the future "
                                  "(after ") and reasons[13].endswith(
        "UTC, a day past this machine's clock)")  # it made every other event weigh nothing
    assert reasons[14] == "missing ts"
    assert [row[3] for row in stored] == ["2023-11-14 22:13:20", "2025-01-01 10:00:00",
                                          "2025-06-01 10:00:00"]


def test_bad_weights_are_rejected_and_never_stored(events_workspace, tmp_path):
    summary, reasons, stored = ingest_csv(events_workspace, tmp_path, (
        "u1,A,view,2025-01-01,inf\n"       # 2
        "u1,A,view,2025-01-01,nan\n"       # 3
        "u1,A,view,2025-01-01,1e309\n"     # 4 overflows to inf
        "u1,A,view,2025-01-01,-1\n"        # 5
        "u1,A,view,2025-01-01,1e12\n"      # 6 above 1e9
        "u1,B,save,2025-01-01, 3.5 \n"     # 7 ok, trimmed
        "u1,C,save,2025-01-01,\n"          # 8 ok, default weight of save
    ))
    assert (summary.rows_ok, summary.rows_rejected) == (2, 5)
    assert reasons[2] == "bad weight 'inf': not a finite number"
    assert reasons[3] == "bad weight 'nan': not a finite number"
    assert reasons[4] == "bad weight '1e309': not a finite number"
    assert reasons[5] == "bad weight '-1': must be from 0 to 1e9"
    assert reasons[6] == "bad weight '1e12': must be from 0 to 1e9"
    assert [row[4] for row in stored] == [3.5, 4.0]
    assert run_sql("SELECT count(*) FROM events WHERE isnan(weight) OR isinf(weight)",
                   events_workspace).rows == [(0,)]


def test_parquet_with_nan_and_millisecond_values(events_workspace, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({
        "user_id": ["u1", "u1", "u2", "u3"], "item_id": ["A", "B", "C", "D"],
        "event": ["view"] * 4,
        "ts": pa.array([1_735_725_600_000, float("nan"), 1e20, 1_735_725_600], pa.float64()),
        "weight": [1.0, 1.0, 1.0, float("nan")]}), path)
    summary = ingest_events(path, events_workspace)
    assert (summary.rows_ok, summary.rows_rejected, summary.encoding) == (1, 3, None)
    reasons = run_sql("SELECT line, reason FROM rejects_events ORDER BY line",
                      events_workspace).rows
    assert [line for line, _ in reasons] == [2, 3, 4]
    assert all(type(line) is int for line, _ in reasons)
    assert reasons[2][1] == "bad weight 'nan': not a finite number"


def test_an_8bit_file_is_read_as_windows_1252(events_workspace, tmp_path):
    summary, reasons, stored = ingest_csv(
        events_workspace, tmp_path, "Zoë,A,view,2025-01-01,\nJosé’s,B,view,2025-01-02,\n"
        .encode("cp1252"))
    assert (summary.rows_ok, summary.rows_rejected, summary.encoding) == (
        2, 0, "windows-1252")
    assert [row[0] for row in stored] == ["Zoë", "José’s"]  # the curly quote too


@pytest.mark.parametrize("chunk, newline", [(None, b"\n"), (1, b"\n"), (2, b"\r\n"),
                                            (7, b"\r\n")])
def test_undecodable_and_malformed_lines_are_rejected_with_exact_line_numbers(
        events_workspace, tmp_path, monkeypatch, chunk, newline):
    if chunk:  # the file is scanned in chunks: lines and characters straddle them
        monkeypatch.setattr(text, "CHUNK", chunk)
    body = ("Zoë,A,view,2025-01-01,\n"          # 2 ok (UTF-8)
            "\n"                                # 3 blank: not a row
            "u2,B,view,2025-01-02,\n".encode()  # 4 ok
            + b"Jos\xe9,B,view,2025-01-02,\n"    # 5 not UTF-8
            + (b"u3,C,view,2025-01-03,1,extra\n"  # 6 too many fields
               b"u3,C\n"                         # 7 too few fields
               b"u4,ZZZ,view,2025-01-04,\n"      # 8 unknown item: numbered after the skips
               b"u4,D,view,2025-01-04,\n"))  # 9 ok
    summary, reasons, stored = ingest_csv(events_workspace, tmp_path, body, newline)
    assert summary.encoding == "utf-8"
    assert reasons == {5: "not valid UTF-8", 6: "too many fields",
                       7: "too few fields", 8: "unknown item id 'ZZZ'"}
    assert [row[0] for row in stored] == ["Zoë", "u2", "u4"]
    raw = run_sql("SELECT raw FROM rejects_events WHERE line = 6", events_workspace).rows
    assert raw == [("u3,C,view,2025-01-03,1,extra",)]


def test_every_row_lands_in_exactly_one_place(events_workspace, tmp_path):
    lines = ["u1,A,view,2025-01-01,", "u1,A,view,2025-01-01,",  # exact duplicate
             "u2,B,click,1e20,", "u2,B,click,2025-01-01,nan", "u3,ZZZ,view,2025-01-01,",
             "u3,C,cart,2025-03-01,2", "u3,C,like,2025-03-01,", ",C,view,2025-01-01,",
             "u4,D,purchase,1735725600000,", "u4,D,purchase,1735725600,"]  # same instant
    summary, reasons, stored = ingest_csv(events_workspace, tmp_path, "\n".join(lines) + "\n")
    assert summary.rows_ok + summary.rows_rejected == len(lines)
    assert summary.duplicates == 2 and summary.added == len(stored) == summary.rows_ok - 2
    assert sorted(reasons) == [4, 5, 6, 8, 9]


def test_exact_duplicates_are_merged_and_counted(events_workspace, tmp_path):
    source = tmp_path / "events.csv"
    source.write_text("user_id,item_id,event,ts\nu1,A,view,2025-01-01\nu1,A,view,2025-01-01\n"
                      "u1,A,save,2025-01-01\n")
    first = ingest_events(source, events_workspace)
    assert (first.rows_ok, first.added, first.duplicates, first.total) == (3, 2, 1, 2)
    again = ingest_events(source, events_workspace)
    assert (again.rows_ok, again.added, again.duplicates, again.total) == (3, 0, 3, 2)


def test_file_names_with_quotes(events_workspace, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "o'brien events.csv"
    csv_path.write_text("user_id,item_id,event,ts\nu1,A,view,2025-01-01\n")
    assert ingest_events(csv_path, events_workspace).rows_ok == 1
    parquet_path = tmp_path / "it's \"quoted\".parquet"
    pq.write_table(pa.table({"user_id": ["u2"], "item_id": ["B"], "event": ["view"],
                             "ts": ["2025-01-02"]}), parquet_path)
    assert ingest_events(parquet_path, events_workspace).rows_ok == 1
    assert run_sql("SELECT DISTINCT source FROM rejects_events", events_workspace).rows == []


@pytest.mark.parametrize("name, content", [
    ("binary.csv", bytes(range(256)) * 64),
    ("empty.csv", b""),
    ("corrupt.parquet", b"PAR1 this is not parquet PAR1"),
    ("text.parquet", b"user_id,item_id,event,ts\n"),
])
def test_unreadable_files_are_one_line_errors(events_workspace, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PinshopError, match=r"^cannot read .*" + name) as caught:
        ingest_events(path, events_workspace)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_quotes_are_judged_line_by_line(events_workspace, tmp_path, monkeypatch, chunk):
    """A fixed dialect, never sniffed: one unclosed or stray quote rejects its own line, and
    an open quote never swallows the lines after it (regressions from the property suite)."""
    if chunk:  # the file is scanned in chunks: lines straddle them
        monkeypatch.setattr(text, "CHUNK", chunk)
    source = tmp_path / "events.csv"
    source.write_bytes(
        b"\r\n"                                        # 1 blank, before the header
        b'"user_id","item_id","event","ts"\r\n'        # 2 quoted header
        b'"u1","A","view","2025-01-01"\r\n'            # 3 ok
        b'u2,B,view,"2025-01-02\r\n'                   # 4 unclosed quote
        b"\r\n"                                        # 5 blank
        b'u3,C"x,view,2025-01-03\r\n'                  # 6 stray quote
        b'"u4","D","view","2025-01-04","x"\r\n'        # 7 too many fields
        b'"u""5",D,view,2025-01-05\r\n'                # 8 ok: a doubled quote in a field
        b"u6,ZZZ,view,2025-01-06\r\n")                 # 9 unknown item
    summary = ingest_events(source, events_workspace)
    reasons = dict(run_sql("SELECT line, reason FROM rejects_events", events_workspace).rows)
    assert reasons == {4: "malformed quoting (a stray or unclosed quote)",
                       6: "malformed quoting (a stray or unclosed quote)",
                       7: "too many fields", 9: "unknown item id 'ZZZ'"}
    raw = run_sql("SELECT raw FROM rejects_events WHERE line = 4", events_workspace).rows
    assert raw == [('u2,B,view,"2025-01-02',)]
    stored = run_sql("SELECT user_id FROM events ORDER BY ts", events_workspace).rows
    assert stored == [("u1",), ('u"5',)]
    assert (summary.rows_ok, summary.rows_rejected) == (2, 4)


def test_utf16_with_emoji_blank_lines_and_a_bad_quote(events_workspace, tmp_path):
    """UTF-16 is read through a UTF-8 copy: characters beyond the BMP load, and line numbers
    are physical lines as in any other encoding."""
    source = tmp_path / "events.csv"
    source.write_bytes(("user_id,item_id,event,ts\r\n\r\n"  # 1 header, 2 blank
                        "ann😀,A,view,2025-01-01\r\n"  # 3 ok
                        'u2,"B",view,"2025-01-02\r\n'  # 4 unclosed quote
                        "u3,ZZZ,view,2025-01-03\r\n").encode("utf-16"))  # 5 unknown item
    summary = ingest_events(source, events_workspace)
    assert (summary.rows_ok, summary.rows_rejected, summary.encoding) == (1, 2, "utf-16")
    assert run_sql("SELECT line, reason FROM rejects_events ORDER BY line",
                   events_workspace).rows == [(4, "malformed quoting (a stray or unclosed quote)"),
                                              (5, "unknown item id 'ZZZ'")]
    assert run_sql("SELECT user_id FROM events", events_workspace).rows == [("ann😀",)]


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_cr_only_line_ends(events_workspace, tmp_path, monkeypatch, chunk):
    """Excel for Mac's "CSV (Macintosh)" ends lines with CR alone: they are read as line
    ends, as in a catalog, and lines are numbered by them."""
    if chunk:
        monkeypatch.setattr(text, "CHUNK", chunk)
    summary, reasons, stored = ingest_csv(events_workspace, tmp_path, (
        "u1,A,view,2025-01-01,\n"      # 2 ok
        "\n"                           # 3 blank
        "u2,B\n"                       # 4 too few fields
        "u3,ZZZ,view,2025-01-03,\n"    # 5 unknown item
        "u4,C,save,2025-01-04,2\n"),   # 6 ok
        newline=b"\r")
    assert (summary.rows_ok, summary.rows_rejected) == (2, 2)
    assert reasons == {4: "too few fields", 5: "unknown item id 'ZZZ'"}
    assert [row[:3] for row in stored] == [("u1", "A", "view"), ("u4", "C", "save")]


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe" + "user_id,item_id,event,ts\n".encode("utf-16-le") + b"\x00\xd8",
     "not valid UTF-16 text"),
    (b'user_id,item_id,"event,ts\nu1,A,view,2025-01-01\n', r"its header \(line 1\) has a stray"),
])
def test_unreadable_text_is_a_one_line_error(events_workspace, tmp_path, content, message):
    path = tmp_path / "events.csv"
    path.write_bytes(content)
    with pytest.raises(PinshopError, match=r"^cannot read .*events\.csv: " + message):
        ingest_events(path, events_workspace)


def test_generated_events_stop_at_the_count_asked_for_with_whole_sessions():
    """Style matches raise the funnel above its expectation (28% more events than asked
    for, before): whole sessions are kept up to the count, so none is cut mid-funnel."""
    import numpy as np

    from pinshop_cli.synth.events import SynthConfig, generate_events, synthetic_catalog

    catalog, styles = synthetic_catalog(400)
    for asked in (1_000, 20_000):
        events = generate_events(catalog.column("id").to_pylist(),
                                 catalog.column("category").to_pylist(), styles,
                                 SynthConfig(users=100, events=asked))
        assert asked - 60 < events.num_rows <= asked
        kinds = events.column("event").to_numpy(zero_copy_only=False)
        pairs = np.char.add(events.column("user_id").to_numpy(zero_copy_only=False)
                            .astype(str), events.column("item_id").to_numpy(
                                zero_copy_only=False).astype(str))
        assert np.isin(pairs[kinds == "purchase"], pairs[kinds == "view"]).all()


def test_style_affinity_a_block_at_a_time_equals_all_at_once():
    import numpy as np

    from pinshop_cli.synth.events import style_affinity

    rng = np.random.default_rng(0)
    users, styles = rng.normal(size=(30, 8)), rng.normal(size=(50, 8)).astype(np.float32)
    who, candidates = rng.integers(0, 30, size=1000), rng.integers(0, 50, size=(1000, 12))
    whole = np.einsum("vd,vkd->vk", users[who], styles[candidates])
    assert np.array_equal(style_affinity(users, styles, who, candidates, block=64), whole)


def test_generate_events_refuses_what_it_cannot_write(copy_workspace, tmp_path):
    """One-line errors where a directory, an unreadable suffix, a negative seed or too few
    events for one session gave a traceback, a Parquet file named .json or an empty file."""
    from typer.testing import CliRunner

    from pinshop_cli.commands.main import app

    root = str(copy_workspace())
    for args, message in (([str(tmp_path)], "is a directory"),
                          ([str(tmp_path / "ev.json")], "as .parquet or .csv"),
                          ([str(tmp_path / "ev.csv"), "--users", "1", "--events", "3"],
                           "no whole shopping session fits")):
        result = CliRunner().invoke(app, ["generate-events", *args, "-w", root])
        assert result.exit_code == 1 and message in str(result.exception), result.output
        assert not (tmp_path / "ev.csv").exists() and not (tmp_path / "ev.json").exists()
    result = CliRunner().invoke(app, ["generate-events", str(tmp_path / "ev.csv"), "--seed",
                                      "-1", "-w", root])
    assert result.exit_code == 2 and "Traceback" not in result.output
    # More shoppers than events: at most one per event (10M shoppers asked for 43 GB); a
    # CSV into a folder not made yet (a traceback, where .parquet made the folder).
    out = tmp_path / "new" / "folder" / "ev.csv"
    result = CliRunner().invoke(app, ["generate-events", str(out), "--users", "10000000",
                                      "--events", "100", "-w", root])
    assert result.exit_code == 0 and 0 < len(out.read_text().splitlines()) <= 101
