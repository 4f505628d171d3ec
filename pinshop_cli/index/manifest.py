"""Index manifests: `indexes/<name>.json`, one per index, the only file a reader trusts.

It records what the index was built from (model_id, kind, dim, space, M, ef_construction,
count, snapshot: the hash of the embeddings), how well it searches (recall_at_10) and which
generation of files is current, with each file's size and checksums (generations.py). It
is written last, by an atomic rename, so it always names a complete generation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from ..errors import DamagedFileError
from ..workspace.integrity import read_json_object


class IndexHome(Protocol):
    """Where indexes live: a Workspace (the index files need nothing else of it, so this
    package does not import the workspace layout that sweeps them)."""

    @property
    def indexes_dir(self) -> Path: ...


#: The command that repairs or rebuilds an index.
REPAIR = "`pinshop index`"


DEFAULT_M, DEFAULT_EF_CONSTRUCTION = 16, 200  # the graphs pinshop index builds

@dataclass(frozen=True)
class IndexManifest:
    name: str
    kind: str
    category: str | None
    model_id: str
    dim: int
    space: str
    M: int
    ef_construction: int
    count: int
    snapshot: str
    built_at: str
    build_seconds: float
    size_bytes: int
    recall_at_10: float | None
    #: The shard graphs of a sharded index, in shard order; empty for one graph.
    shards: list[str] = field(default_factory=list)
    #: The generation whose files are current (0: written before generations existed).
    generation: int = 0
    #: file name -> {"bytes", "sha256", "sample"} of every file of the generation.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class IndexStatus:
    name: str
    #: None when the manifest itself is unreadable.
    manifest: IndexManifest | None
    stale: bool
    #: "<file>: <reason>" when a file of the index is missing or damaged, else None.
    damage: str | None = None

    @property
    def state(self) -> str:
        if self.damage:
            return f"DAMAGED: run {REPAIR}"
        return f"STALE: run {REPAIR}" if self.stale else "current"


def index_name(kind: str, category: str | None = None) -> str:
    if category is None:
        return kind
    return f"{kind}@{re.sub(r'[^a-z0-9]+', '-', category.lower()).strip('-') or 'none'}"


def manifest_path(ws: IndexHome, name: str) -> Path:
    return ws.indexes_dir / f"{name}.json"


def read_manifest(ws: IndexHome, name: str) -> IndexManifest | None:
    """The manifest of index `name`; None when there is none, DamagedFileError when it
    cannot be read."""
    path = manifest_path(ws, name)
    if not path.exists():
        return None
    return parse_manifest(path, read_json_object(path, REPAIR))


def parse_manifest(path: Path, data: dict[str, Any]) -> IndexManifest:
    known = {f.name for f in fields(IndexManifest)}
    try:  # keys a newer pinshop added are ignored
        manifest = IndexManifest(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        raise DamagedFileError(path, "not an index manifest", REPAIR) from None
    if manifest.name != path.stem or not isinstance(manifest.files, dict):
        raise DamagedFileError(path, "not this index's manifest", REPAIR)
    return manifest


def manifest_names(ws: IndexHome) -> list[str]:
    return sorted(path.stem for path in ws.indexes_dir.glob("*.json"))


def read_manifests(ws: IndexHome) -> list[IndexManifest]:
    """Every readable index manifest (a damaged one is an error)."""
    return [m for name in manifest_names(ws) if (m := read_manifest(ws, name)) is not None]
