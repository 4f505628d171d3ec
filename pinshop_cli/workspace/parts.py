"""A folder of Parquet parts listed by a manifest, compacted as it grows.

Every batch of work lands as its own part (`L0-<key>.parquet`, written atomically), and then
the manifest (`_manifest.json`, also atomic) lists it. Writing a part and listing it are
separate steps so that workers (threads, processes, Ray actors on other machines) can write
parts while one driver lists them. The manifest is the truth: a part a killed run wrote but
never listed is an orphan, redone on resume and swept by the next writer to take the
workspace lock (never during a run, when unlisted parts may be in flight).

The manifest also records each listed part's size and checksums (workspace/integrity.py).
Readers leave out a listed part that is missing or damaged, and say so; `repair` (run by
`pinshop ingest` and `pinshop index` under the lock) drops it from the manifest, so the next
ingest embeds its rows again, and lists the parts again when the manifest itself is lost.

Compaction is size-tiered: when `FANOUT` files of one level exist they are merged into one
file of the next level, so a folder holds at most FANOUT files per level
(log_FANOUT(rows) levels) and every read costs a bounded number of files however many
batches came before. Merging streams row groups, so memory stays at one row group.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DamagedFileError
from .faults import compaction_fanout
from .integrity import (
    FileRecord,
    file_problem,
    parquet_metadata,
    parquet_problem,
    read_json_object,
    readers_verify,
    record_file,
)
from .storage import remove, sha256_text, write_json

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST = "_manifest.json"
FANOUT = 8
#: What lists the parts again when a manifest is lost, and drops damaged parts (`index`
#: and `ingest` take the lock and repair every store).
RELIST = "`pinshop index`"


def fanout() -> int:
    """Files per level before a merge (tests lower it: faults.compaction_fanout)."""
    return compaction_fanout(FANOUT)
LEVEL = re.compile(r"^L(\d+)-")
NUMBERED = re.compile(r"^L\d+-(\d{8})\.parquet$")


@dataclass(frozen=True)
class PartsManifest:
    files: tuple[str, ...]
    rows: int
    sequence: int  # bumps on every change; names compacted files uniquely
    #: Size and checksums of each listed part (absent for parts listed by older pinshops).
    checks: dict[str, FileRecord] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Changes whenever the set of live files changes."""
        return sha256_text(*sorted(self.files))[:16]


class PartStore:
    """Append-only Parquet parts under one directory, with one schema. `remake` is the
    command that produces a lost part's rows again (named in notes)."""

    def __init__(self, directory: Path, remake: str | None = "`pinshop ingest`") -> None:
        """`remake`: what makes a lost part's rows again (None: nothing can, e.g. history)."""
        self.directory = directory
        self.remake = remake

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def manifest(self) -> PartsManifest:
        """The listed parts; empty when there is no manifest yet. DamagedFileError when it
        cannot be read."""
        if not self.manifest_path.exists():
            return PartsManifest((), 0, 0)
        data = read_json_object(self.manifest_path, RELIST)
        try:
            checks = {str(k): FileRecord.from_dict(v) for k, v in data.get("checks", {}).items()}
            return PartsManifest(tuple(str(f) for f in data["files"]), int(data["rows"]),
                                 int(data["sequence"]), checks)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DamagedFileError(self.manifest_path, "not a parts manifest", RELIST) from None

    def files(self, notes: list[str] | None = None) -> list[Path]:
        """The listed parts that are whole. A damaged or missing one is left out (and
        described in `notes`); a folder of parts whose manifest is gone is an error."""
        current = self.manifest()
        if not current.files and not self.manifest_path.exists() and self._on_disk():
            raise DamagedFileError(self.manifest_path, f"missing, while {self.directory} "
                                   "holds parts", RELIST)
        good = []
        for name in current.files:
            path = self.directory / name
            problem = self._problem(path, current.checks.get(name), full=False) \
                if readers_verify() else None
            if problem is None:
                good.append(path)
            elif notes is not None:
                notes.append(f"{path} is damaged ({problem}): left out " + (
                    f"until {self.remake} makes its rows again" if self.remake else
                    f"(its rows cannot be made again; {RELIST} drops it)"))
        return good

    def _on_disk(self) -> list[Path]:
        return sorted(self.directory.glob("L*.parquet"))

    @staticmethod
    def _problem(path: Path, record: FileRecord | None, full: bool) -> str | None:
        if record is None:  # listed by an older pinshop: readable Parquet is all we know
            return parquet_problem(path)
        return file_problem(path, record, full)

    def _save(self, files: list[str], rows: int, sequence: int,
              checks: dict[str, FileRecord]) -> None:
        write_json({"files": sorted(files), "rows": rows, "sequence": sequence,
                    "checks": {name: checks[name].to_dict() for name in sorted(files)
                               if name in checks}},
                   self.manifest_path)

    def write(self, table: pa.Table, key: str) -> str:
        """Write one unlisted part (atomically; safe from any worker); returns its name."""
        from .storage import write_parquet

        name = f"L0-{key}.parquet"
        write_parquet(table, self.directory / name)
        return name

    def commit(self, name: str, rows: int) -> None:
        """List a written part (the driver's step); compact when a level fills up."""
        current = self.manifest()
        if name not in current.files:
            checks = {**current.checks, name: record_file(self.directory / name)}
            self._save([*current.files, name], current.rows + rows, current.sequence + 1,
                       checks)
        self.compact()

    def append(self, table: pa.Table, key: str) -> None:
        """Write one part and list it."""
        self.commit(self.write(table, key), table.num_rows)

    def compact(self, per_level: int | None = None) -> None:
        """Merge every full level into the next one."""
        per_level = per_level or fanout()
        while True:
            current = self.manifest()
            levels: dict[int, list[str]] = {}
            for name in current.files:
                match = LEVEL.match(name)
                levels.setdefault(int(match.group(1)) if match else 0, []).append(name)
            full = next((lvl for lvl in sorted(levels) if len(levels[lvl]) >= per_level), None)
            if full is None:
                break
            merged = f"L{full + 1}-{current.sequence + 1:08d}.parquet"
            _merge([self.directory / n for n in sorted(levels[full])], self.directory / merged)
            keep = [n for n in current.files if n not in levels[full]]
            checks = {n: r for n, r in current.checks.items() if n in keep}
            checks[merged] = record_file(self.directory / merged)
            self._save([*keep, merged], current.rows, current.sequence + 1, checks)
            for name in levels[full]:  # listed nowhere now; a kill here leaves orphans only
                remove(self.directory / name)

    def ensure(self) -> None:
        """An empty manifest for a store about to get its first parts (a writer under the
        lock), so that no reader ever sees parts without one."""
        if not self.manifest_path.exists():
            self._save([], 0, 0, {})

    def sweep(self) -> None:
        """Remove parts the manifest does not list (left by a run killed mid-batch or
        mid-merge). Only for a writer holding the workspace lock before its run starts, and
        only when the manifest is there and readable: without it every part would look
        unlisted (`repair` lists them again instead)."""
        if not self.manifest_path.exists():
            return
        try:
            live = set(self.manifest().files)
        except DamagedFileError:
            return
        for path in self._on_disk():
            if path.name not in live:
                remove(path)

    def repair(self, full: bool = True) -> list[str]:
        """For a writer holding the lock: list the parts again when the manifest is lost or
        unreadable (every readable part on disk: complete, since parts are written
        atomically; rows a killed merge left twice are harmless, readers keep one row per
        key), and drop listed parts that are missing or damaged (their rows become pending
        work for the next ingest). Also records checks for parts listed without them.
        Returns what it did, one note each."""
        try:
            current = self.manifest()
            lost = None if self.manifest_path.exists() or not self._on_disk() else "missing"
        except DamagedFileError as exc:
            current, lost = PartsManifest((), 0, 0), exc.reason
        if lost is not None:
            return [self._relist(lost)]
        bad = {name: problem for name in current.files if (problem := self._problem(
            self.directory / name, current.checks.get(name), full)) is not None
               # rows nothing can make again are not dropped for a read that may pass
               and not (self.remake is None and problem.startswith("unreadable"))}
        unrecorded = [n for n in current.files if n not in current.checks and n not in bad]
        if not bad and not unrecorded:
            return []
        keep = [n for n in current.files if n not in bad]
        checks = {n: current.checks.get(n) or record_file(self.directory / n) for n in keep}
        self._save(keep, self._rows(keep), current.sequence + 1, checks)
        notes = []
        for name, problem in bad.items():
            path = self.directory / name
            if self.remake is None:  # kept aside for whoever can read some of it
                path.replace(path.with_name(f"{name}.damaged-{time.time_ns()}"))
            else:
                remove(path)
            notes.append(f"{path} was damaged ({problem}): dropped from the manifest; " + (
                f"{self.remake} makes its rows again" if self.remake else
                "its rows cannot be made again (the file is kept aside as .damaged-*)"))
        return notes

    def _relist(self, reason: str) -> str:
        readable = [p for p in self._on_disk() if parquet_problem(p) is None]
        names = [p.name for p in readable]
        numbers = [int(m.group(1)) for n in names if (m := NUMBERED.match(n))]
        self._save(names, self._rows(names), max(numbers, default=0) + 1,
                   {p.name: record_file(p) for p in readable})
        return (f"{self.manifest_path} was damaged ({reason}): listed again from the "
                f"{len(names)} readable parts in {self.directory}")

    def _rows(self, names: list[str]) -> int:
        return sum(parquet_metadata(self.directory / n).num_rows for n in names)


def _merge(sources: list[Path], target: Path) -> None:
    """Concatenate Parquet files into one, streaming row groups. Schemas are unified (a
    column added by a newer pinshop is null in older parts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .storage import atomic_path

    schema = pa.unify_schemas([pq.read_schema(source) for source in sources])
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as out:
        for source in sources:
            reader = pq.ParquetFile(source)
            for group in range(reader.num_row_groups):
                out.write_table(_conform(reader.read_row_group(group), schema))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order, missing ones as nulls."""
    import pyarrow as pa

    columns = [table.column(f.name) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
