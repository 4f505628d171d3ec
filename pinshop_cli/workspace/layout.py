"""The workspace: a directory of open-format files, one writer at a time.

    catalog.parquet, pins.parquet, detections.parquet   tables (rewritten atomically)
    embeddings/<kind>/L*.parquet + _manifest.json        batch parts, compacted; the
                                                         manifest lists the live ones
    parts/detections/L*.parquet + _manifest.json         per-batch detections (resume ledger)
    indexes/<name>.json                                  manifest naming the current
                                                         generation and its files' checksums
    indexes/<name>.g<N>.hnsw, .ids.parquet, .vectors.npy generation N: hnswlib graph, labels,
                                                         vectors by label (index/generations.py)
    rejects/<source>.parquet                             refused rows/files with reasons
    workspace.json                                       which models built this workspace
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DamagedFileError, PinshopError, WorkspaceLockedError
from .integrity import read_json_object
from .storage import write_json

if TYPE_CHECKING:
    from .parts import PartStore

DEFAULT_WORKSPACE = "pinshop-data"
EMBEDDING_KINDS = ("product_image", "product_text", "crop")
#: What writes workspace.json again.
RECORD_AGAIN = ("`pinshop ingest CATALOG` (it records the models again; add --embedder if "
                "not the default)")
EVENTS_AGAIN = ("`pinshop ingest-events FILE` (it writes events.parquet again from the files "
                "you ingest)")
#: The lock file's holder record, written in place at a fixed width (never truncated).
HOLDER_WIDTH = 64


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, path: str | Path | None = None, create: bool = False) -> Workspace:
        """Resolve `path`, else $PINSHOP_HOME, else ./pinshop-data."""
        root = cls.where(path)
        if root.exists() and not root.is_dir():
            raise PinshopError(f"workspace {root} is a file, not a directory: "
                               "pass a directory with -w/--workspace (or PINSHOP_HOME)")
        if create:
            _make_dir(root)
        elif not root.is_dir():
            raise PinshopError(
                f"no workspace at {root}: run `pinshop ingest CATALOG -w {root}` first"
            )
        return cls(root.resolve())

    @staticmethod
    def where(path: str | Path | None = None) -> Path:
        """The directory `open` would use, without looking at it."""
        return Path(path or os.environ.get("PINSHOP_HOME") or DEFAULT_WORKSPACE).expanduser()

    catalog = property(lambda self: self.root / "catalog.parquet")
    pins = property(lambda self: self.root / "pins.parquet")
    detections = property(lambda self: self.root / "detections.parquet")
    events = property(lambda self: self.root / "events.parquet")
    recommendations = property(lambda self: self.root / "recommendations.parquet")
    embeddings_dir = property(lambda self: self.root / "embeddings")
    detection_parts_dir = property(lambda self: self.root / "parts" / "detections")
    color_parts_dir = property(lambda self: self.root / "parts" / "colors")
    history_dir = property(lambda self: self.root / "history")  # price history parts
    indexes_dir = property(lambda self: self.root / "indexes")
    rejects_dir = property(lambda self: self.root / "rejects")
    settings_path = property(lambda self: self.root / "workspace.json")

    def history_store(self) -> PartStore:
        """The price history's parts: a lost one cannot be made again (the feed has moved
        on), so repairs keep it aside rather than drop it."""
        from .parts import PartStore

        return PartStore(self.history_dir, remake=None)

    def exports_dir(self) -> Path:
        """Where `sql --allow-writes` may write: created on demand, refused when it is a
        link (a COPY must never land outside the workspace)."""
        path = self.root / "exports"
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise PinshopError(f"{path} is not a plain directory: remove it (sql "
                               "--allow-writes writes only into the workspace's own exports/)")
        path.mkdir(exist_ok=True)
        return path

    # -- recorded settings -------------------------------------------------------------
    def settings(self, repairing: bool = False) -> dict[str, Any]:
        """What workspace.json records ({} before the first ingest). A damaged file is a
        DamagedFileError, except for a writer `repairing` it (ingest records it again)."""
        if not self.settings_path.exists():
            return {}
        try:
            return read_json_object(self.settings_path, RECORD_AGAIN)
        except DamagedFileError:
            if repairing:
                return {}
            raise

    def update_settings(self, **values: Any) -> None:
        write_json({**self.settings(repairing=True), **values}, self.settings_path)

    # -- one writer at a time ----------------------------------------------------------
    def sweep_leftovers(self) -> int:
        """Remove what a killed writer left: temp files of atomic writes, parts it wrote
        but never listed, and index generations no manifest names (holding the lock, no
        other writer can own one); old generations go once no reader holds them. Returns
        how many temp files were removed."""
        from ..index.generations import sweep_generations
        from .parts import PartStore
        from .storage import remove

        removed = 0
        for path in self.root.rglob(".*.tmp"):  # rglob does not enter linked directories
            remove(path)
            removed += 1
        stores = [*self.embeddings_dir.glob("*"), self.detection_parts_dir,
                  self.color_parts_dir, self.history_dir]  # a killed compaction's sources
        for directory in stores:
            if directory.is_dir() and not directory.is_symlink():
                PartStore(directory).sweep()
        sweep_generations(self)
        return removed

    @contextmanager
    def lock(self, sweep: bool = True) -> Iterator[None]:
        """Exclusive lock for writers. flock is released by the OS if the process dies,
        so a killed run never leaves a stale lock behind. The lock file is opened without
        following links and must be a plain file of its own: a link planted at .lock never
        gets written through. The holder's pid is written in place, never truncated.

        Taking it sweeps what a killed writer left (`sweep_leftovers`: a walk over the
        whole workspace, photos included). `sweep=False` skips that, for a small write
        that leaves nothing a sweep would look for: a live change's log append and its
        price history rows (retrieval/updates.py); ingest, index and folds sweep.

        When another process holds it: a WorkspaceLockedError whose `holder` is what that
        process wrote ('pinshop pid N', or '' if it wrote nothing)."""
        _make_dir(self.root)
        fd = _open_lock_file(self.root / ".lock")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, HOLDER_WIDTH, 0).decode("utf-8", "replace").strip()
                raise WorkspaceLockedError(
                    f"workspace {self.root} is being written by {holder or 'another process'}"
                    "; wait for it to finish (only one writer at a time)", holder) from None
            except OSError as exc:  # e.g. a network file system without locks
                raise PinshopError(f"cannot lock workspace {self.root}: "
                                   f"{exc.strerror or exc}") from None
            os.pwrite(fd, f"pinshop pid {os.getpid()}".ljust(HOLDER_WIDTH).encode(), 0)
            if sweep:
                self.sweep_leftovers()
            try:
                yield
            finally:
                os.pwrite(fd, b" " * HOLDER_WIDTH, 0)
        finally:
            os.close(fd)  # releases the flock


def _open_lock_file(path: Path) -> int:
    """The lock file, opened read-write without following a link; refused unless it is a
    regular file with no other name (a hard link to a file elsewhere would be written)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PinshopError(f"{path} is a symbolic link: pinshop never locks or writes "
                               "through one; remove it") from None
        if exc.errno == errno.EISDIR:
            raise PinshopError(f"{path} is not a regular file: pinshop never writes through "
                               "it; remove it") from None
        raise PinshopError(f"cannot write to workspace {path.parent}: "
                           f"{exc.strerror or exc} (need a writable directory)") from None
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode) else
               "has other hard links" if info.st_nlink != 1 else None)
    if problem is not None:
        os.close(fd)
        raise PinshopError(f"{path} {problem}: pinshop never writes through it; remove it")
    return fd


def _make_dir(root: Path) -> None:
    """mkdir -p, with the OS refusal (a file in the way, no permission, read-only disk)
    as a one-line PinshopError instead of a traceback."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()),
                       None)
        why = (f"{blocker} is a file, not a directory" if blocker is not None
               else exc.strerror or str(exc))
        raise PinshopError(f"cannot create workspace {root}: {why}") from None
