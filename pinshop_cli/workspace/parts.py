"""A folder of Parquet parts listed by a manifest, compacted as it grows.

Every batch of work lands as its own part (`L0-<key>.parquet`, written atomically), and then
the manifest (`_manifest.json`, also atomic) lists it. Writing a part and listing it are
separate steps so that workers (threads, processes, Ray actors on other machines) can write
parts while one driver lists them. The manifest is the truth: a part a killed run wrote but
never listed is an orphan, redone on resume and swept by the next writer to take the
workspace lock (never during a run, when unlisted parts may be in flight).

Compaction is size-tiered: when `FANOUT` files of one level exist they are merged into one
file of the next level, so a folder holds at most FANOUT files per level
(log_FANOUT(rows) levels) and every read costs a bounded number of files however many
batches came before. Merging streams row groups, so memory stays at one row group.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .storage import sha256_text, write_json

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST = "_manifest.json"
FANOUT = 8


def fanout() -> int:
    """Files per level before a merge; PINSHOP_COMPACT_FANOUT lowers it so that tests and
    the kill stress script exercise compaction with a handful of rows."""
    return max(2, int(os.environ.get("PINSHOP_COMPACT_FANOUT") or FANOUT))
LEVEL = re.compile(r"^L(\d+)-")


@dataclass(frozen=True)
class PartsManifest:
    files: tuple[str, ...]
    rows: int
    sequence: int  # bumps on every change; names compacted files uniquely

    @property
    def version(self) -> str:
        """Changes whenever the set of live files changes."""
        return sha256_text(*sorted(self.files))[:16]


class PartStore:
    """Append-only Parquet parts under one directory, with one schema."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def manifest(self) -> PartsManifest:
        if not self.manifest_path.exists():
            return PartsManifest((), 0, 0)
        data = json.loads(self.manifest_path.read_text())
        return PartsManifest(tuple(data["files"]), int(data["rows"]), int(data["sequence"]))

    def files(self) -> list[Path]:
        return [self.directory / name for name in self.manifest().files]

    def _save(self, files: list[str], rows: int, sequence: int) -> None:
        write_json({"files": sorted(files), "rows": rows, "sequence": sequence},
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
            self._save([*current.files, name], current.rows + rows, current.sequence + 1)
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
            self._save([*keep, merged], current.rows, current.sequence + 1)
            for name in levels[full]:  # listed nowhere now; a kill here leaves orphans only
                (self.directory / name).unlink(missing_ok=True)

    def sweep(self) -> None:
        """Remove parts the manifest does not list (left by a run killed mid-batch or
        mid-merge). Only for a writer holding the workspace lock before its run starts."""
        live = set(self.manifest().files)
        for path in self.directory.glob("L*.parquet"):
            if path.name not in live:
                path.unlink(missing_ok=True)


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
