"""Index generations: every new version of an index is a new set of files, swapped in by
its manifest.

    indexes/<name>.g<N>.hnsw           the graph (or <name>.g<N>.shard<i>.hnsw per shard)
    indexes/<name>.g<N>.ids.parquet    label -> id
    indexes/<name>.g<N>.vectors.npy    vectors by label
    indexes/<name>.json                names generation N and each file's size and checksums

A build or an update writes generation N+1 beside N, then the manifest, last, by atomic
rename: a reader sees N or N+1 whole, and a build killed at any point leaves N serving. The
files of a generation never change once written.

A reader *holds* the generation it loaded: a shared flock on its ids file (readers write
nothing; flock is not a write). A writer sweeps a generation only when it gets that lock
exclusively, after the manifest moved on or when no manifest names it; a held generation
stays until a later writer finds it free. A reader that finds its generation gone (swept
between reading the manifest and opening a file) reads the manifest again.

Generation 0 is the layout before generations (`<name>.hnsw`, `<name>.ids.parquet`, ...,
no checksums): still read, and replaced by generation 1 at the next build or update.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
from pathlib import Path

from ..errors import DamagedFileError
from ..workspace.integrity import FileRecord, file_problem, record_file
from ..workspace.storage import remove
from .manifest import (
    REPAIR,
    IndexHome,
    IndexManifest,
    manifest_names,
    manifest_path,
    read_manifest,
)

GRAPH, IDS, VECTORS = "hnsw", "ids.parquet", "vectors.npy"
#: name.g<N>.<role>, or the layout before generations (name.<role>, name.shard<i>-<tag>).
GENERATION_FILE = re.compile(r"^(?P<name>[^.]+)\.g(?P<gen>\d+)\.")
LEGACY_FILE = re.compile(r"^(?P<name>[^.]+)\.(hnsw|ids\.parquet|vectors\.npy|shard\d+-\w+\.hnsw)$")


def prefix(name: str, generation: int) -> str:
    return f"{name}.g{generation}"


def role_file(name: str, generation: int, role: str) -> str:
    return f"{prefix(name, generation)}.{role}" if generation else f"{name}.{role}"


def ids_file(manifest: IndexManifest) -> str:
    return role_file(manifest.name, manifest.generation, IDS)


def vectors_file(manifest: IndexManifest) -> str:
    return role_file(manifest.name, manifest.generation, VECTORS)


def graph_files(manifest: IndexManifest) -> list[str]:
    return list(manifest.shards) or [role_file(manifest.name, manifest.generation, GRAPH)]


def files_of(manifest: IndexManifest) -> list[str]:
    """Every file of the manifest's generation (the vectors file may be absent in
    generation 0, written before it existed)."""
    return [*graph_files(manifest), ids_file(manifest), vectors_file(manifest)]


def next_generation(ws: IndexHome, name: str, current: IndexManifest | None) -> int:
    """One above the current generation and any found on disk (a killed build's files
    are never reused while they might still be swept)."""
    found = [int(m.group("gen")) for path in ws.indexes_dir.glob(f"{name}.g*")
             if (m := GENERATION_FILE.match(path.name)) and m.group("name") == name]
    return max([current.generation if current else 0, *found]) + 1


def records(ws: IndexHome, files: list[str]) -> dict[str, dict[str, object]]:
    """Size and checksums of each file, for the manifest."""
    return {file: record_file(ws.indexes_dir / file).to_dict() for file in files}


def damage_of(ws: IndexHome, manifest: IndexManifest, full: bool) -> str | None:
    """"<file>: <reason>" for the first file of the manifest's generation that is missing
    or does not match its record, else None. Generation 0 recorded nothing: only the
    graph and label files' presence is checked."""
    if not manifest.generation:
        for file in [*graph_files(manifest), ids_file(manifest)]:
            if not (ws.indexes_dir / file).is_file():
                return f"{ws.indexes_dir / file}: missing"
        return None
    for file in files_of(manifest):
        record = manifest.files.get(file)
        if record is None:
            return f"{ws.indexes_dir / file}: not recorded in {manifest.name}.json"
        try:
            problem = file_problem(ws.indexes_dir / file, FileRecord.from_dict(record), full)
        except (KeyError, TypeError, ValueError):
            problem = "its record in the manifest is unreadable"
        if problem is not None:
            return f"{ws.indexes_dir / file}: {problem}"
    return None


def require_whole(ws: IndexHome, manifest: IndexManifest, full: bool) -> None:
    if (damage := damage_of(ws, manifest, full)) is not None:
        path, reason = damage.rsplit(": ", 1)
        raise DamagedFileError(path, reason, REPAIR)


class Hold:
    """A reader's shared flock on one generation's ids file, so that no writer sweeps the
    generation while it is in use (vectors are memory-mapped lazily)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.release()


def hold(ws: IndexHome, manifest: IndexManifest) -> Hold | None:
    """Hold the manifest's generation; None when it is gone (swept since the manifest was
    read: read the manifest again). A file system without flock holds nothing."""
    try:
        fd = os.open(ws.indexes_dir / ids_file(manifest), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        return Hold(fd)
    if os.fstat(fd).st_nlink == 0:  # swept while we waited for the lock
        os.close(fd)
        return None
    return Hold(fd)


def unlisted_files(ws: IndexHome, name: str) -> bool:
    """Whether the global index `name` has files but no manifest: it was deleted, or a
    first build was killed before writing it; either way not usable until rebuilt. (A
    category index is never said so: one dropped while a reader holds its files, or being
    built for the first time, is no index, and searches use the global one.)"""
    return "@" not in name and not manifest_path(ws, name).exists() and any(
        _index_of(path) == name for path in ws.indexes_dir.glob(f"{glob.escape(name)}.*"))


def unlisted_names(ws: IndexHome) -> list[str]:
    """The global indexes with files but no manifest (see unlisted_files)."""
    if not ws.indexes_dir.is_dir():
        return []
    found = {name for path in ws.indexes_dir.iterdir()
             if (name := _index_of(path)) and "@" not in name}
    return sorted(found - set(manifest_names(ws)))


def _index_of(path: Path) -> str | None:
    """The index a generation file (or a file of the layout before generations) is of."""
    match = GENERATION_FILE.match(path.name) or LEGACY_FILE.match(path.name)
    return match["name"] if match and not path.name.startswith(".") else None


def sweep_generations(ws: IndexHome, only: str | None = None) -> None:
    """Remove index files no manifest names (a killed build's, or generations the
    manifest moved past), a generation at a time and only when no reader holds it. Files
    of an index whose manifest is unreadable are kept (`pinshop index` rebuilds it first).
    For writers holding the lock."""
    if not ws.indexes_dir.is_dir():
        return
    names = manifest_names(ws)
    groups: dict[tuple[str, int], list[Path]] = {}
    for path in ws.indexes_dir.iterdir():
        match = GENERATION_FILE.match(path.name) or LEGACY_FILE.match(path.name)
        if match is None or path.name.startswith(".") or (only and match["name"] != only):
            continue
        generation = int(match.groupdict().get("gen") or 0)
        groups.setdefault((match["name"], generation), []).append(path)
    listed: dict[str, set[str]] = {}
    for name in {name for name, _ in groups}:
        try:
            manifest = read_manifest(ws, name) if name in names else None
        except DamagedFileError:
            continue  # unreadable: judge nothing of it
        listed[name] = set(files_of(manifest)) if manifest else set()
    for (name, generation), paths in groups.items():
        if name in listed:
            _sweep_group(ws, name, generation, [p for p in paths
                                                if p.name not in listed[name]])


def _sweep_group(ws: IndexHome, name: str, generation: int, paths: list[Path]) -> None:
    """Unlink one generation's unlisted files unless a reader holds it; the held ids file
    goes last, so a reader waiting for it finds it unlinked and moves on."""
    if not paths:
        return
    anchor = ws.indexes_dir / role_file(name, generation, IDS)
    fd = None
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(anchor, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a reader holds it: a later writer sweeps it
            except OSError:
                pass  # no flock here: nothing can hold it
        for path in sorted(paths, key=lambda p: p == anchor):
            remove(path)
    finally:
        if fd is not None:
            os.close(fd)
