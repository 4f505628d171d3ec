"""Atomic Parquet/JSON writes and small read helpers shared by every stage.

A writer never leaves a half-written file behind: it writes a temp file in the same
directory, fsyncs it, renames it over the target and fsyncs the directory. A run killed at
any point therefore leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .faults import fault_point
from .integrity import TableRecord, check_record_path, record_to_keep

if TYPE_CHECKING:
    import pyarrow as pa


@contextmanager
def atomic_path(target: Path, checked: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success fsync it and rename it into place.
    `checked`: record its size and checksums beside it (workspace/integrity.py), so a
    reader can tell it from a file damaged later."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(target)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if checked:  # the old file's record stays until the rename: a kill leaves a match
            new = TableRecord.of(tmp)
            _write_records(target, [new, *record_to_keep(target)])
        fault_point("write", target)
        os.replace(tmp, target)
        fault_point("rename", target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if checked:
            _write_records(target, [new])
    finally:
        tmp.unlink(missing_ok=True)


def _write_records(target: Path, records: list[TableRecord]) -> None:
    write_json({"records": [record.to_dict() for record in records]},
               check_record_path(target))


def _new_temp(target: Path) -> Path:
    """A new empty file beside `target`, made with mode 0o666 so the process umask gives it
    the mode a plain open() would (mkstemp's files are owner-only; reading the umask means
    changing it, which no library should do)."""
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def remove(path: Path) -> None:
    """Unlink a file a writer no longer lists (a fault point for the crash tests)."""
    fault_point("unlink", path)
    path.unlink(missing_ok=True)


def write_parquet(table: pa.Table, target: Path, checked: bool = False) -> None:
    import pyarrow.parquet as pq

    with atomic_path(target, checked) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_json(data: Any, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_parquet(path: Path) -> pa.Table | None:
    """One Parquet file. ParquetFile, not read_table: read_table imports pyarrow.dataset,
    which imports pandas (0.2-0.3 s of start-up in every command that loads an index)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read() if path.exists() else None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def query_arrow(sql: str, params: dict[str, Any] | None = None,
                tables: dict[str, Any] | None = None) -> pa.Table:
    """Run one DuckDB query on a fresh in-memory connection and return an Arrow table."""
    import duckdb

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # timestamps are stored as naive UTC
        for name, table in (tables or {}).items():
            con.register(name, table)
        relation = con.sql(sql, params=params or None)
        # duckdb 2 names it to_arrow_table; 1.x arrow().
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        return fetch()


def sql_path(path: Any) -> str:
    """A path as a quoted SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def copy_to_parquet(con: Any, query: str, target: Path,
                    versions: dict[str, str] | None = None,
                    params: dict[str, Any] | None = None, checked: bool = False) -> None:
    """COPY a DuckDB query to Parquet atomically (`checked`: see atomic_path). `versions`
    maps a name to SQL over the query's rows (aliased `t`) returning one string: the file
    carries each as a content version in its footer (see workspace.embeddings.table_version)."""
    options = "FORMAT parquet, COMPRESSION zstd"
    if versions:
        selects = ", ".join(f"({sql})" for sql in versions.values())
        values = con.execute(f"SELECT {selects} FROM ({query}) t", params or None).fetchall()[0]
        pairs = ", ".join(f"'pinshop_version_{name}': '{str(value).replace(chr(39), '')}'"
                          for name, value in zip(versions, values, strict=True))
        options += f", KV_METADATA {{{pairs}}}"
    with atomic_path(target, checked) as tmp:
        con.execute(f"COPY ({query}) TO {sql_path(tmp)} ({options})", params or None)


def rows_version_sql(*columns: str, where: str = "true") -> str:
    """SQL for a content version of a table's rows (those meeting `where`): order-independent
    and vectorized (a sum of row hashes), for `copy_to_parquet`."""
    only = f"FILTER (WHERE {where})"
    return (f"coalesce(sum(hash({', '.join(columns)})) {only}::VARCHAR, '0') || '-' || "
            f"count(*) {only}")
