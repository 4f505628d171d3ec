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
