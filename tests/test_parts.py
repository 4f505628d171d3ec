"""Part stores: the manifest is the truth, compaction bounds the file count, kills leave
only orphans that the next compaction sweeps."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinshop_cli import DamagedFileError
from pinshop_cli.workspace.parts import FANOUT, PartStore


def batch(start: int, n: int = 3) -> pa.Table:
    return pa.table({"id": [f"p{i}" for i in range(start, start + n)],
                     "v": pa.FixedSizeListArray.from_arrays(
                         pa.array([float(i) for i in range(start * 2, (start + n) * 2)],
                                  pa.float32()), 2)})


def read_all(store: PartStore) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in store.files())


def test_appends_compact_into_levels_and_keep_every_row(tmp_path):
    store = PartStore(tmp_path / "parts")
    for n in range(FANOUT ** 2 + 3):
        store.append(batch(n * 3), key=f"k{n}")
    rows = read_all(store)
    assert rows.num_rows == (FANOUT ** 2 + 3) * 3 == store.manifest().rows
    assert sorted(rows.column("id").to_pylist()) == sorted(f"p{i}" for i in range(rows.num_rows))
    assert pa.types.is_fixed_size_list(rows.schema.field("v").type)
    # FANOUT**2 parts became one level-2 file; 3 parts are still waiting at level 0.
    assert sorted(p.name[:2] for p in store.files()) == ["L0", "L0", "L0", "L2"]
    assert {p.name for p in store.directory.glob("*.parquet")} == {p.name for p in store.files()}


def test_unlisted_parts_survive_the_run_and_are_swept_by_the_next_writer(tmp_path,
                                                                           monkeypatch):
    from pinshop_cli.workspace import Workspace

    monkeypatch.setenv("PINSHOP_COMPACT_FANOUT", "2")
    ws = Workspace.open(tmp_path / "ws", create=True)
    store = PartStore(ws.root / "embeddings" / "crop")
    written = store.write(batch(100), key="in-flight")  # a worker's part, not listed yet
    store.append(batch(0), key="a")
    store.append(batch(3), key="b")  # a compaction: it must not take the worker's part
    assert (store.directory / written).exists()
    assert written not in store.manifest().files
    with ws.lock():  # the next run starts: nothing is in flight, so unlisted means orphaned
        assert not (store.directory / written).exists()
    assert len(store.files()) == 1


def test_version_changes_with_the_live_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PINSHOP_COMPACT_FANOUT", "2")
    store = PartStore(tmp_path / "parts")
    store.append(batch(0), key="a")
    first = store.manifest().version
    store.append(batch(3), key="b")  # fanout 2: merged into one level-1 file at once
    assert store.manifest().version != first
    assert [p.name[:2] for p in store.files()] == ["L1"]


def test_the_next_writer_sweeps_temp_files_a_killed_one_left(tmp_path):
    from pinshop_cli.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True)
    (ws.root / "embeddings" / "crop").mkdir(parents=True)
    left = [ws.root / ".catalog.parquet.k2j3.tmp", ws.root / "embeddings" / "crop" / ".L0-x.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    with ws.lock():
        assert not any(path.exists() for path in left)


def test_compaction_unifies_parts_written_before_a_column_was_added(tmp_path, monkeypatch):
    monkeypatch.setenv("PINSHOP_COMPACT_FANOUT", "2")
    store = PartStore(tmp_path / "parts")
    store.append(pa.table({"id": ["a"], "v": [1]}), key="old")  # an older pinshop's part
    store.append(pa.table({"id": ["b"], "v": [2], "regions": pa.array([3], pa.int32())}),
                 key="new")
    merged = read_all(store)
    assert [p.name[:2] for p in store.files()] == ["L1"]
    assert merged.sort_by("id").to_pylist() == [{"id": "a", "v": 1, "regions": None},
                                                {"id": "b", "v": 2, "regions": 3}]


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "deleted"])
def test_readers_leave_out_a_damaged_part_and_the_next_writer_drops_it(tmp_path, damage):
    store = PartStore(tmp_path / "parts", remake="`pinshop ingest CATALOG`")
    store.append(batch(0), key="a")
    store.append(batch(3), key="b")
    victim, kept = store.files()
    data = bytearray(victim.read_bytes())
    if damage == "truncated":
        victim.write_bytes(data[:-9])
    elif damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(data)
    else:
        victim.unlink()
    notes: list[str] = []
    assert store.files(notes) == [kept]
    assert len(notes) == 1 and f"{victim} is damaged" in notes[0]
    assert "pinshop ingest CATALOG" in notes[0]
    repaired = store.repair()
    assert len(repaired) == 1 and "dropped from the manifest" in repaired[0]
    assert store.manifest().files == (kept.name,) and store.manifest().rows == 3
    assert not victim.exists() and store.repair() == []


def test_a_garbled_or_lost_manifest_is_an_error_and_the_next_writer_lists_the_parts(
        tmp_path):
    from pinshop_cli.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True)
    store = PartStore(ws.root / "embeddings" / "crop")
    for n in range(3):
        store.append(batch(n * 3), key=f"k{n}")
    for loss in ("garbled", "deleted"):
        if loss == "garbled":
            store.manifest_path.write_bytes(b"\xff{not json")
        else:
            store.manifest_path.unlink()
        with pytest.raises(DamagedFileError, match=r"_manifest\.json is damaged \(.*\): "
                                                   r"run `pinshop index`"):
            store.files()
        with ws.lock():  # the sweep never takes unlisted-looking parts without a manifest
            assert len(list(store.directory.glob("L*.parquet"))) == 3
        assert "listed again from the 3 readable parts" in store.repair()[0]
        assert read_all(store).num_rows == 9 == store.manifest().rows
