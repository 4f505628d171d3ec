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
from typing import Any

from ..errors import DamagedFileError, PinshopError
from ..workspace.integrity import read_json_object
from ..workspace.layout import RECORD_AGAIN, Workspace

#: The command that repairs or rebuilds an index.
REPAIR = "`pinshop index`"


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


def model_for_kind(ws: Workspace, kind: str) -> str:
    settings = ws.settings()
    key = "text_model_id" if kind == "product_text" else "image_model_id"
    if key not in settings:
        if not ws.settings_path.exists() and any(ws.embeddings_dir.glob("*/_manifest.json")):
            raise DamagedFileError(ws.settings_path, "missing, while embeddings/ holds "
                                   "vectors", RECORD_AGAIN)
        raise PinshopError(f"workspace {ws.root} has no embeddings yet: run `pinshop ingest`")
    return str(settings[key])


def manifest_path(ws: Workspace, name: str) -> Path:
    return ws.indexes_dir / f"{name}.json"


def read_manifest(ws: Workspace, name: str) -> IndexManifest | None:
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


def manifest_names(ws: Workspace) -> list[str]:
    return sorted(path.stem for path in ws.indexes_dir.glob("*.json"))


def read_manifests(ws: Workspace) -> list[IndexManifest]:
    """Every readable index manifest (a damaged one is an error)."""
    return [m for name in manifest_names(ws) if (m := read_manifest(ws, name)) is not None]
