"""Is a workspace file what its writer left? Size and checksum records, and the checks that
turn a missing, truncated or corrupt file into one DamagedFileError naming the repair.

A writer records each file it lists in a manifest: its size, its sha256 and a *sample*
digest (the size plus 16 evenly spaced 64 KiB blocks). Readers check the size always, the
full sha256 of files up to FULL_CHECK_BYTES, and the sample of bigger ones (a 5 GB vector
file costs a 1 MiB read, not 3 s of hashing); writers (`pinshop index`, `pinshop ingest`)
check full checksums before they trust an index file. The tables (catalog, events, pins,
detections) keep their record beside them (`check_record_path`); `pinshop doctor` checks
them in full, readers by the same rule as index files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DamagedFileError, first_line

if TYPE_CHECKING:
    import pyarrow.parquet as pq

FULL_CHECK_BYTES = 4 << 20
SAMPLE_BLOCKS = 16
SAMPLE_BLOCK_BYTES = 64 << 10
#: PINSHOP_VERIFY=off skips the readers' checks: only for measuring what they cost.
VERIFY_ENV = "PINSHOP_VERIFY"


@dataclass(frozen=True)
class FileRecord:
    bytes: int
    sha256: str
    sample: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FileRecord:
        return cls(int(data["bytes"]), str(data["sha256"]), str(data["sample"]))


def sha256_of(path: Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sample_of(path: Path, size: int | None = None) -> str:
    """sha256 of the size and SAMPLE_BLOCKS evenly spaced blocks (the first and the last
    included): catches truncation, a garbage fill and most overwrites for a 1 MiB read."""
    size = path.stat().st_size if size is None else size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        span = max(size - SAMPLE_BLOCK_BYTES, 0)
        for n in range(SAMPLE_BLOCKS):
            handle.seek(span * n // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(SAMPLE_BLOCK_BYTES))
    return digest.hexdigest()


def record_file(path: Path) -> FileRecord:
    size = path.stat().st_size
    return FileRecord(size, sha256_of(path), sample_of(path, size))


def readers_verify() -> bool:
    return os.environ.get(VERIFY_ENV, "").lower() not in ("off", "0", "no", "false")


def file_problem(path: Path, record: FileRecord, full: bool) -> str | None:
    """Why `path` is not the file `record` describes, or None. `full` hashes every byte;
    otherwise files over FULL_CHECK_BYTES are checked by their sample."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if size != record.bytes:
        return f"{size} bytes, expected {record.bytes}"
    try:
        if full or size <= FULL_CHECK_BYTES:
            matches = sha256_of(path) == record.sha256
        else:
            matches = sample_of(path, size) == record.sample
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None if matches else "checksum mismatch"


def check_record_path(path: Path) -> Path:
    """Where the writer of a checked table (catalog, events, pins, detections) records its
    size, checksums and modification time: beside it, hidden."""
    return path.with_name(f".{path.name}.check.json")


@dataclass(frozen=True)
class TableRecord:
    """A checked table as its writer left it: the file's record and its modification time.
    A file with another modification time was written since by something else (a restore
    from a backup, an older pinshop): not this record's to judge. Damage on disk keeps the
    time; so does a copy that keeps times (shutil.copytree, cp -p)."""

    file: FileRecord
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> TableRecord:
        return cls(record_file(path), path.stat().st_mtime_ns)

    def to_dict(self) -> dict[str, Any]:
        return {**self.file.to_dict(), "mtime_ns": self.mtime_ns}


def recorded(path: Path) -> list[TableRecord] | None:
    """The records left by the writer of `path`: None for a file written unchecked (or
    before checks were recorded), [] for a damaged record. Two records only while a write
    is being renamed into place (the new file's and the old one's): either file is whole."""
    try:
        data = json.loads(check_record_path(path).read_bytes())
        return [TableRecord(FileRecord.from_dict(record), int(record["mtime_ns"]))
                for record in data["records"]]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return []


def recorded_problem(path: Path, full: bool = False) -> str | None:
    """Why `path` is not the file its writer recorded (a flipped byte in a price leaves
    the Parquet readable and the answers wrong), or None. A writer may replace the file
    and its record while this reads them: a mismatch is looked at again when either moved."""
    problem = None
    for _ in range(3):
        before = _identity(path)
        problem = _record_problem(path, full)
        if problem is None or (before is not None and before == _identity(path)):
            return problem
    return problem


def _identity(path: Path) -> tuple[bytes, int, int, int] | None:
    """The record's bytes and the file's inode, size and time: what a writer changes."""
    try:
        stat = path.stat()
        return (check_record_path(path).read_bytes(), stat.st_ino, stat.st_size,
                stat.st_mtime_ns)
    except OSError:
        return None


def _record_problem(path: Path, full: bool) -> str | None:
    records = recorded(path)
    if records is None:
        return None
    if not records:
        return f"its check record {check_record_path(path).name} is damaged"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    mine = [r.file for r in records if r.mtime_ns == mtime]
    if not mine:  # written since by another writer: not judged
        return None
    problems = [file_problem(path, record, full) for record in mine]
    if None in problems:
        return None
    first = problems[0] or ""
    return first if first.startswith("unreadable") else f"changed since pinshop wrote it ({first})"


def record_to_keep(path: Path) -> list[TableRecord]:
    """For a writer about to replace `path`: the record of the file there now, kept beside
    the new one until the rename, so a kill before it leaves a record that matches. An
    unchecked file (or one written by another writer) is recorded as it is; a damaged one
    keeps no record and stays damaged."""
    if not path.exists():
        return []
    records = recorded(path)
    mtime = path.stat().st_mtime_ns
    if records is None or not any(r.mtime_ns == mtime for r in records):
        return [TableRecord.of(path)]
    return [r for r in records
            if r.mtime_ns == mtime and file_problem(path, r.file, full=False) is None][:1]


def parquet_problem(path: Path) -> str | None:
    """Why `path` is not a readable Parquet file (its footer is what every reader needs
    first) or, for a checked table, not the file its writer recorded; or None."""
    if (problem := _footer_problem(path)) is not None:
        return problem
    return recorded_problem(path) if readers_verify() else None


def _footer_problem(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(0, os.SEEK_END)
            if handle.tell() < 12:
                return "too short to be Parquet"
            handle.seek(-4, os.SEEK_END)
            tail = handle.read(4)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if head != b"PAR1" or tail != b"PAR1":
        return "not a Parquet file (no magic bytes)"
    try:
        parquet_metadata(path)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        return f"unreadable Parquet footer: {first_line(exc, 200)}"
    return None


def parquet_metadata(path: Path) -> pq.FileMetaData:
    import pyarrow.parquet as pq

    return pq.read_metadata(path)


def require_parquet(path: Path, fix: str, columns: tuple[str, ...] = (),
                    full: bool = False) -> None:
    """Raise DamagedFileError unless `path` (which must exist) is readable Parquet with
    `columns` (another table copied over it is as damaged as a truncated one)."""
    if (problem := _footer_problem(path)) is not None:
        raise DamagedFileError(path, problem, fix)
    if columns:
        have = set(parquet_metadata(path).schema.names)
        if missing := [c for c in columns if c not in have]:
            raise DamagedFileError(path, f"not a catalog pinshop wrote: no column "
                                   f"{', '.join(missing[:3])}", fix)
    if readers_verify() and (problem := recorded_problem(path, full)) is not None:
        raise DamagedFileError(path, problem, fix)


#: What every reader of catalog.parquet relies on (io/catalog_steps.py writes them).
CATALOG_COLUMNS = ("id", "title", "category", "price", "currency", "availability", "image",
                   "image_sha256", "product_text_hash")
CATALOG_FIX = "`pinshop ingest CATALOG`"
DETECTIONS_FIX = "`pinshop ingest --pins DIR`"


def require_catalog(path: Path) -> None:
    """Raise DamagedFileError unless `path` is a catalog.parquet pinshop wrote."""
    require_parquet(path, CATALOG_FIX, CATALOG_COLUMNS)


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object from `path`, or DamagedFileError (missing, not UTF-8, not JSON, not an
    object)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise DamagedFileError(path, "missing", fix) from None
    except UnicodeDecodeError:
        raise DamagedFileError(path, "not UTF-8 text", fix) from None
    except json.JSONDecodeError as exc:
        raise DamagedFileError(path, f"not valid JSON: {exc.msg} at line {exc.lineno}",
                               fix) from None
    except OSError as exc:
        raise DamagedFileError(path, f"unreadable: {exc.strerror or exc}", fix) from None
    if not isinstance(data, dict):
        raise DamagedFileError(path, "not a JSON object", fix)
    return data

