"""The workspace: a directory of open-format files, one writer at a time.

    catalog.parquet, pins.parquet, detections.parquet   tables (rewritten atomically)
    embeddings/<kind>/L*.parquet + _manifest.json        batch parts, compacted; the
                                                         manifest lists the live ones
    parts/detections/L*.parquet + _manifest.json         per-batch detections (resume ledger)
    indexes/<name>.hnsw, .ids.parquet, .vectors.npy, .json  hnswlib graph, labels, vectors
                                                         by label, manifest
    rejects/<source>.parquet                             refused rows/files with reasons
    workspace.json                                       which models built this workspace
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PinshopError, WorkspaceLockedError
from .storage import write_json

DEFAULT_WORKSPACE = "pinshop-data"
EMBEDDING_KINDS = ("product_image", "product_text", "crop")


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, path: str | Path | None = None, create: bool = False) -> Workspace:
        """Resolve `path`, else $PINSHOP_HOME, else ./pinshop-data."""
        root = Path(path or os.environ.get("PINSHOP_HOME") or DEFAULT_WORKSPACE).expanduser()
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

    catalog = property(lambda self: self.root / "catalog.parquet")
    pins = property(lambda self: self.root / "pins.parquet")
    detections = property(lambda self: self.root / "detections.parquet")
    events = property(lambda self: self.root / "events.parquet")
    recommendations = property(lambda self: self.root / "recommendations.parquet")
    embeddings_dir = property(lambda self: self.root / "embeddings")
    detection_parts_dir = property(lambda self: self.root / "parts" / "detections")
    indexes_dir = property(lambda self: self.root / "indexes")
    rejects_dir = property(lambda self: self.root / "rejects")
    settings_path = property(lambda self: self.root / "workspace.json")

    # -- recorded settings -------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        if not self.settings_path.exists():
            return {}
        return dict(json.loads(self.settings_path.read_text()))

    def update_settings(self, **values: Any) -> None:
        write_json({**self.settings(), **values}, self.settings_path)

    # -- one writer at a time ----------------------------------------------------------
    def sweep_leftovers(self) -> int:
        """Remove what a killed writer left: temp files of atomic writes and parts it wrote
        but never listed (holding the lock, no other writer can own one). Returns how many
        temp files were removed."""
        from .parts import MANIFEST, PartStore

        removed = 0
        for path in self.root.rglob(".*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
        for manifest in self.root.rglob(MANIFEST):
            PartStore(manifest.parent).sweep()
        return removed

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock for writers. flock is released by the OS if the process dies,
        so a killed run never leaves a stale lock behind."""
        _make_dir(self.root)
        path = self.root / ".lock"
        try:
            handle = open(path, "a+")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise PinshopError(f"cannot write to workspace {self.root}: "
                               f"{exc.strerror or exc} (need a writable directory)") from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise WorkspaceLockedError(
                    f"workspace {self.root} is being written by {holder}; "
                    "wait for it to finish (only one writer at a time)"
                ) from None
            except OSError as exc:  # e.g. a network file system without locks
                raise PinshopError(f"cannot lock workspace {self.root}: "
                                   f"{exc.strerror or exc}") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pinshop pid {os.getpid()}")
            handle.flush()
            self.sweep_leftovers()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)


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
