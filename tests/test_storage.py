"""Atomic writes: the finished file is complete and readable like a plainly written one."""

from __future__ import annotations

import os

import pyarrow as pa

from pinshop_cli.workspace.storage import write_parquet


def test_atomic_write_leaves_no_temp_file_and_a_normal_mode(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pa.table({"a": [1, 2]}), target)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
    plain = tmp_path / "plain"
    plain.write_text("x")
    # the umask decides both, as for any file a plain open() makes
    assert os.stat(target).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def flip_a_byte_keeping_the_time(path) -> None:
    """Damage as a disk does it: one byte changed, the modification time as it was."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_checked_table_tells_damage_from_another_writers_file(tmp_path):
    """Its record judges the file its writer left: a byte flipped on disk is damage; a file
    written since by something else (a restore, an older pinshop) is not judged by it."""
    import pyarrow.parquet as pq

    from pinshop_cli.workspace.integrity import recorded_problem

    target = tmp_path / "catalog.parquet"
    write_parquet(pa.table({"a": list(range(100))}), target, checked=True)
    assert recorded_problem(target) is None
    flip_a_byte_keeping_the_time(target)
    assert recorded_problem(target) == "changed since pinshop wrote it (checksum mismatch)"
    pq.write_table(pa.table({"a": [7]}), target)  # restored from elsewhere
    assert recorded_problem(target) is None


def test_a_write_killed_twice_before_its_rename_leaves_the_table_vouched_for(
        tmp_path, monkeypatch):
    """The record kept the last record's first entry as the old file's: after a second kill
    before the rename, the file there matched no entry, and was no longer checked."""
    import pytest

    from pinshop_cli.workspace.integrity import recorded_problem

    target = tmp_path / "catalog.parquet"
    write_parquet(pa.table({"a": [0]}), target, checked=True)

    def killed(operation: str, path: object) -> None:
        if operation == "write" and path == target:  # the new table whole, not yet renamed
            raise KeyboardInterrupt

    monkeypatch.setattr("pinshop_cli.workspace.storage.fault_point", killed)
    for n in (1, 2):
        with pytest.raises(KeyboardInterrupt):
            write_parquet(pa.table({"a": [n]}), target, checked=True)
    assert recorded_problem(target) is None
    flip_a_byte_keeping_the_time(target)  # and still guarded by its record
    assert recorded_problem(target) == "changed since pinshop wrote it (checksum mismatch)"
