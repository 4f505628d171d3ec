"""The shared text scan and records reader: one behaviour and one wording for catalogs and
events alike."""

from __future__ import annotations

import pytest

from pinshop_cli import PinshopError
from pinshop_cli.io import text
from pinshop_cli.io.catalog import load_catalog
from pinshop_cli.io.events import ingest_events
from pinshop_cli.io.text import scan_text
from pinshop_cli.sql import run_sql

# Lines 3-6 hold one fault each; line 2 is fine as CSV (and makes the file UTF-8).
BODY = (b"A,Caf\xc3\xa9,view,2025-01-01\n"  # 2
        b"A,B\n"                            # 3 too few fields
        b"A,B,view,2025-01-01,x\n"          # 4 too many fields
        b"A,Caf\xe9,view,2025-01-01\n"      # 5 not UTF-8 (Latin-1 in a UTF-8 file)
        b'A,"B,view,2025-01-01\n')          # 6 an unclosed quote (last: in a catalog it
#                                               runs to the end of the file)
FAULTS = {3: "too few fields", 4: "too many fields", 5: "not valid UTF-8",
          6: "malformed quoting (a stray or unclosed quote)"}


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_fault_reads_the_same_in_a_catalog_and_in_events(events_workspace, tmp_path,
                                                           newline):
    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes((b"id,title,event,ts\n" + BODY).replace(b"\n", newline))
    load = load_catalog(catalog)
    assert [r["source_line"] for r in load.table.to_pylist()] == [2]
    in_catalog = {r["line"]: r["reason"] for r in load.rejects.to_pylist()}
    events = tmp_path / "events.csv"
    events.write_bytes((b"user_id,item_id,event,ts\n" + BODY).replace(b"\n", newline))
    ingest_events(events, events_workspace)
    in_events = dict(run_sql("SELECT line, reason FROM rejects_events", events_workspace).rows)
    assert in_events.pop(2) == "unknown item id 'Café'"
    assert in_catalog == in_events == FAULTS


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_scan_text_gives_utf8_with_lf_line_ends(tmp_path, monkeypatch, chunk):
    if chunk:  # blocks cut through characters and CRLF pairs
        monkeypatch.setattr(text, "CHUNK", chunk)
    cases = {
        "utf16": ("a,b\r\nann😀,x\r\n".encode("utf-16"), b"a,b\nann\xf0\x9f\x98\x80,x\n",
                  "utf-16", False),
        "cr-only": (b"a,b\rc,d\r", b"a,b\nc,d\n", "utf-8", True),
        "stray-cr": (b"a,b\nc\r,d\r\n", b"a,b\nc ,d\n", "utf-8", False),
        "latin-1": (b"a,b\nCaf\xe9,x\n", b"a,b\nCaf\xc3\xa9,x\n", "windows-1252", False),
        "windows-1252": (b"a\n\x80 12,50\n\x81\n", "a\n€ 12,50\n\x81\n".encode(),
                         "windows-1252", False),
        "mixed": (b"\xc3\xa9\n\xe9\n", b"\xc3\xa9\n\xe9\n", "utf-8", False),
    }
    for name, (data, expected, encoding, cr_only) in cases.items():
        source = tmp_path / f"{name}.csv"
        source.write_bytes(data)
        scratch = tmp_path / name
        scratch.mkdir()
        scanned = scan_text(source, scratch, source.name)
        assert scanned.path.read_bytes() == expected, name
        assert (scanned.encoding, scanned.cr_line_ends) == (encoding, cr_only), name
        assert scanned.mixed == (name == "mixed")


def test_scan_text_refuses_what_is_no_text(tmp_path):
    cases = [(b"", "the file is empty"), (b"a,b\n\x00\x01\x02", "it is a binary file"),
             (b"\xff\xfe" + "a,b\n".encode("utf-16-le") + b"\x00\xd8",
              "not valid UTF-16 text")]
    for data, message in cases:
        source = tmp_path / "f.csv"
        source.write_bytes(data)
        with pytest.raises(PinshopError, match=f"^cannot read f.csv: {message}"):
            scan_text(source, tmp_path, source.name, refuse_binary=True)
