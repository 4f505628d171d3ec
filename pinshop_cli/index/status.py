"""Which indexes are current: stale (built from other embeddings than the current ones)
or damaged (a file missing or unlike its recorded checksum)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DamagedFileError
from ..workspace.embeddings import snapshot_hash
from ..workspace.layout import Workspace
from .generations import damage_of, unlisted_names
from .manifest import IndexStatus, manifest_names, manifest_path, read_manifest


def index_status(workspace: str | Path | None = None, full: bool = True) -> list[IndexStatus]:
    """Every index: stale (built from other embeddings than the current) and damaged (a
    file missing or not matching its recorded checksum; `full` hashes every byte)."""
    ws = Workspace.open(workspace)
    snapshots: dict[tuple[str, str], str] = {}
    statuses = []
    for name in manifest_names(ws):
        try:
            manifest = read_manifest(ws, name)
        except DamagedFileError as exc:
            statuses.append(IndexStatus(name, None, False, f"{exc.path}: {exc.reason}"))
            continue
        assert manifest is not None
        key = (manifest.kind, manifest.model_id)
        if key not in snapshots:
            snapshots[key] = snapshot_hash(ws, manifest.kind, manifest.model_id)
        statuses.append(IndexStatus(name, manifest, manifest.snapshot != snapshots[key],
                                    damage_of(ws, manifest, full)))
    for name in unlisted_names(ws):  # its manifest deleted: the index answered nothing
        statuses.append(IndexStatus(name, None, False, f"{manifest_path(ws, name)}: missing"))
    return sorted(statuses, key=lambda status: status.name)
