"""Building HNSW indexes over the workspace embeddings: from scratch, sharded, or updated
in place; every build or update lands as a new generation (generations.py), its manifest
written last (manifest.py), and is measured (recall@10 against exact search).

Before it trusts anything, `build_indexes` (a writer, under the lock) repairs the parts
(a damaged part is dropped, for the next ingest to embed again) and checks every file of
every index in full; a damaged index is rebuilt from scratch and said so in `notes`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engines import Engine, get_engine
from ..errors import DamagedFileError, PinshopError
from ..workspace.embeddings import current_rows_sql, repair_stores, snapshot_hash, to_matrix
from ..workspace.integrity import DETECTIONS_FIX, require_catalog, require_parquet
from ..workspace.layout import EMBEDDING_KINDS, RECORD_AGAIN, Workspace
from ..workspace.storage import atomic_path, query_arrow, sql_path, write_json, write_parquet
from .generations import (
    GRAPH,
    IDS,
    VECTORS,
    damage_of,
    next_generation,
    prefix,
    records,
    sweep_generations,
    vectors_file,
)
from .loaded import LoadedIndex, load_graph, load_index, read_labels
from .manifest import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_M,
    IndexManifest,
    IndexStatus,
    index_name,
    manifest_names,
    manifest_path,
    read_manifest,
    read_manifests,
)
from .search import measure_recall, search_ef, top_k_exact
from .shards import ShardedIndex, build_shards
from .status import index_status

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["IndexManifest", "IndexStatus", "LoadedIndex", "build_indexes", "index_name",
           "index_status", "load_index", "measure_recall", "model_for_kind", "read_manifests",
           "search_ef", "top_k_exact"]

SPACE = "ip"  # vectors are L2-normalized, so inner product == cosine similarity
#: Where a catalog or detections file comes from again.
REINGEST = {"detections": DETECTIONS_FIX}


def _current(ws: Workspace, kind: str, model_id: str) -> pa.Table:
    """(id, source_hash, vector, category) of the current embeddings of a kind, read once
    per build; per-category indexes take their slices of it."""
    import pyarrow as pa

    category = "'uncategorized'" if kind == "crop" else "coalesce(s.category, 'uncategorized')"
    sql = current_rows_sql(ws, kind, f"e.id, e.source_hash, e.vector, {category} AS category")
    if sql is None:
        return pa.table({"id": pa.array([], pa.string()), "source_hash": pa.array([], pa.string()),
                         "vector": pa.array([], pa.list_(pa.float32())),
                         "category": pa.array([], pa.string())})
    return query_arrow(f"{sql} ORDER BY e.id", {"model": model_id})


def _save_graph(ws: Workspace, name: str, generation: int, index: Any) -> list[str]:
    """Save an index's graph(s) as files of `generation`; returns the shard files ([] for
    one graph)."""
    if isinstance(index, ShardedIndex):
        return index.save_shards(ws.indexes_dir, prefix(name, generation))
    with atomic_path(ws.indexes_dir / f"{prefix(name, generation)}.{GRAPH}") as tmp:
        index.save_index(str(tmp))
    return []


def _save(ws: Workspace, name: str, generation: int, shards: list[str], dim: int,
          vectors: np.ndarray, labels: pa.Table, kind: str, category: str | None,
          model_id: str, snapshot: str, M: int, ef_construction: int, build_seconds: float,
          recall: float | None) -> IndexManifest:
    """With the graph(s) of `generation` saved: write its vectors by label (for exact
    search over small filtered sets, memory-mapped at query time), its labels and, last,
    the manifest naming it with every file's size and checksums; then sweep generations
    no reader holds."""
    import numpy as np

    with atomic_path(ws.indexes_dir / f"{prefix(name, generation)}.{VECTORS}") as tmp, \
            open(tmp, "wb") as out:
        np.save(out, vectors)
    write_parquet(labels, ws.indexes_dir / f"{prefix(name, generation)}.{IDS}")
    graphs = shards or [f"{prefix(name, generation)}.{GRAPH}"]
    files = [*graphs, f"{prefix(name, generation)}.{IDS}", f"{prefix(name, generation)}.{VECTORS}"]
    manifest = IndexManifest(
        name=name, kind=kind, category=category, model_id=model_id, dim=dim,
        space=SPACE, M=M, ef_construction=ef_construction, count=labels.num_rows,
        snapshot=snapshot, built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=build_seconds,
        size_bytes=sum((ws.indexes_dir / g).stat().st_size for g in graphs),
        recall_at_10=recall, shards=shards, generation=generation,
        files=records(ws, files),
    )
    write_json(asdict(manifest), manifest_path(ws, name))  # the swap
    sweep_generations(ws, only=name)
    return manifest


def _build_one(ws: Workspace, rows: pa.Table, name: str, generation: int, kind: str,
               category: str | None, model_id: str, snapshot: str, M: int,
               ef_construction: int, recall_sample: int) -> IndexManifest:
    import hnswlib
    import numpy as np

    vectors = to_matrix(rows.column("vector"))
    started = time.perf_counter()
    index = hnswlib.Index(space=SPACE, dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=M, ef_construction=ef_construction)
    index.add_items(vectors, np.arange(len(vectors)))
    build_seconds = round(time.perf_counter() - started, 4)
    recall = measure_recall(index, vectors, recall_sample) if recall_sample else None
    return _save(ws, name, generation, _save_graph(ws, name, generation, index), index.dim,
                 vectors, _fresh_labels(rows), kind, category, model_id, snapshot, M,
                 ef_construction, build_seconds, recall)


def _build_sharded(ws: Workspace, rows: pa.Table, name: str, generation: int, kind: str,
                   model_id: str, snapshot: str, M: int, ef_construction: int,
                   recall_sample: int, shards: int, engine: Engine) -> IndexManifest:
    import numpy as np

    vectors = to_matrix(rows.column("vector"))
    started = time.perf_counter()
    files = build_shards(vectors, ws.indexes_dir, prefix(name, generation), shards, SPACE, M,
                         ef_construction, engine)
    build_seconds = round(time.perf_counter() - started, 4)
    index = ShardedIndex.load(ws.indexes_dir, files, SPACE, vectors.shape[1],
                              np.arange(len(vectors)))
    recall = measure_recall(index, vectors, recall_sample) if recall_sample else None
    return _save(ws, name, generation, files, vectors.shape[1], vectors, _fresh_labels(rows),
                 kind, None, model_id, snapshot, M, ef_construction, build_seconds, recall)


def _fresh_labels(rows: pa.Table) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    return pa.table({"label": pa.array(np.arange(rows.num_rows), pa.int64()),
                     "id": rows.column("id"), "source_hash": rows.column("source_hash")})


def _update_one(ws: Workspace, rows: pa.Table, manifest: IndexManifest, generation: int,
                snapshot: str, recall_sample: int) -> IndexManifest:
    """Bring an index up to date: labels of changed or removed rows are marked deleted, new
    and changed rows are added under fresh labels, and the result is saved as the next
    generation (the current one is only read)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    name = manifest.name
    indexed = read_labels(ws, manifest)
    if "source_hash" not in indexed.column_names:  # labels written before hashes were kept
        raise DamagedFileError(ws.indexes_dir / f"{name}.ids.parquet", "no source_hash column",
                               "`pinshop index --rebuild`")
    keys = rows.select(["id", "source_hash"])
    gone = query_arrow("SELECT label FROM indexed ANTI JOIN keys USING (id, source_hash)",
                       tables={"indexed": indexed, "keys": keys})
    new = query_arrow("SELECT r.* FROM rows_ r ANTI JOIN indexed USING (id, source_hash) "
                      "ORDER BY id", tables={"rows_": rows, "indexed": indexed})
    started = time.perf_counter()
    old_vectors = np.load(ws.indexes_dir / vectors_file(manifest), mmap_mode="r")
    # Labels are never reused: a removed product's label stays in the graph, marked deleted,
    # and in the vectors file, one row per label given; the live labels' maximum can be lower.
    top = max(int(pc.max(indexed.column("label")).as_py()) if indexed.num_rows else -1,
              len(old_vectors) - 1)
    index = load_graph(ws, manifest, indexed.column("label").to_numpy(),
                       max_elements=max(top + 1, 1) + new.num_rows)
    for label in gone.column("label").to_pylist():  # deletions are few; hnswlib takes one
        # Already deleted when an earlier update was killed after saving the graph.
        with contextlib.suppress(RuntimeError):
            index.mark_deleted(label)
    fresh = np.arange(top + 1, top + 1 + new.num_rows, dtype=np.int64)
    vectors = np.zeros((top + 1 + new.num_rows, manifest.dim), np.float32)
    vectors[:len(old_vectors)] = old_vectors
    if new.num_rows:
        added = to_matrix(new.column("vector"))
        index.add_items(added, fresh)  # room was made when loading (shards grow as they add)
        vectors[fresh] = added
    labels = pa.concat_tables([
        query_arrow("SELECT * FROM indexed ANTI JOIN gone USING (label) ORDER BY label",
                    tables={"indexed": indexed, "gone": gone}),
        pa.table({"label": pa.array(fresh, pa.int64()), "id": new.column("id"),
                  "source_hash": new.column("source_hash")}),
    ])
    build_seconds = round(time.perf_counter() - started, 4)
    recall = (measure_recall(index, to_matrix(rows.column("vector")), recall_sample,
                             labels=_labels_in_order(labels, rows))
              if recall_sample and labels.num_rows else None)
    return _save(ws, name, generation, _save_graph(ws, name, generation, index), manifest.dim,
                 vectors, labels, manifest.kind, manifest.category, manifest.model_id,
                 snapshot, manifest.M, manifest.ef_construction, build_seconds, recall)


def _labels_in_order(labels: pa.Table, rows: pa.Table) -> np.ndarray:
    """The index label of each of `rows` (by id), as an array aligned with them."""
    table = query_arrow("SELECT l.label FROM rows_ r JOIN labels l USING (id, source_hash) "
                        "ORDER BY r.id", tables={"rows_": rows.select(["id", "source_hash"]),
                                                 "labels": labels})
    return table.column("label").to_numpy()


def _categories(ws: Workspace) -> list[str]:
    return query_arrow(f"SELECT DISTINCT coalesce(category, 'uncategorized') AS c FROM "
                       f"read_parquet({sql_path(ws.catalog)}) ORDER BY c").column("c").to_pylist()


def _inspect(ws: Workspace, name: str, notes: list[str]) -> tuple[IndexManifest | None, int]:
    """The index's manifest when it and every file it names are whole (checked in full),
    else None (rebuild it) with a note saying what was damaged; and the number of shards
    it had (1 when unknown), which a rebuild keeps."""
    try:
        manifest = read_manifest(ws, name)
    except DamagedFileError as exc:
        notes.append(f"index {name}: {exc.path} was damaged ({exc.reason}): rebuilt")
        return None, 1
    if manifest is None:
        return None, 1
    shards = len(manifest.shards) or 1
    if (damage := damage_of(ws, manifest, full=True)) is not None:
        notes.append(f"index {name}: {damage.replace(': ', ' was damaged (', 1)}): rebuilt")
        return None, shards
    return manifest, shards


def _check_settings(M: int | None, ef_construction: int | None, recall_sample: int,
                    shards: int | None) -> None:
    # hnswlib crashes the process on M 0 and fails to allocate on M 1.
    for name, value, least in (("M", M, 2), ("ef_construction", ef_construction, 1),
                               ("recall_sample", recall_sample, 0), ("shards", shards, 1)):
        if value is not None and value < least:
            raise PinshopError(f"{name} must be at least {least} (got {value})")


def _kept_settings(kept: list[IndexManifest], asked: dict[str, int | None]) -> list[str]:
    """One note naming the indexes kept or updated in place, so built with other graph
    settings than those asked for (which apply to new builds only)."""
    differing = [m.name for m in kept if any(value is not None and value != getattr(m, key)
                                             for key, value in asked.items())]
    if not differing:
        return []
    wanted = ", ".join(f"{key} {value}" for key, value in asked.items() if value is not None)
    return [f"{wanted} applies to new builds: {len(differing)} index(es) kept their own "
            f"({', '.join(differing[:3])}{', ...' if len(differing) > 3 else ''}); "
            "pass --rebuild to build them anew"]


def _check_sources(ws: Workspace, kinds: tuple[str, ...]) -> None:
    """The tables the embeddings are joined with must be readable before any build."""
    require_catalog(ws.catalog)
    if "crop" in kinds and ws.detections.exists():
        require_parquet(ws.detections, REINGEST["detections"])


def model_for_kind(ws: Workspace, kind: str) -> str:
    settings = ws.settings()
    key = "text_model_id" if kind == "product_text" else "image_model_id"
    if key not in settings:
        if not ws.settings_path.exists() and any(ws.embeddings_dir.glob("*/_manifest.json")):
            raise DamagedFileError(ws.settings_path, "missing, while embeddings/ holds "
                                   "vectors", RECORD_AGAIN)
        raise PinshopError(f"workspace {ws.root} has no embeddings yet: run `pinshop ingest`")
    return str(settings[key])


def build_indexes(workspace: str | Path | None = None, kinds: tuple[str, ...] = EMBEDDING_KINDS,
                  by_category: bool = True, M: int | None = None,
                  ef_construction: int | None = None, recall_sample: int = 200,
                  rebuild: bool = False, shards: int | None = None,
                  engine: str = "local", ray_address: str | None = None,
                  notes: list[str] | None = None) -> list[IndexManifest]:
    """One index per embedding kind, and per product category with `by_category` (Shop The
    Look searches a detected sofa among sofas). An existing index is updated in place when
    products were added, changed or removed; it is rebuilt only on a model change, a new
    shard count, damage, or with `rebuild`. Recall@10 against exact search is measured after
    every build or update. What was repaired is appended to `notes`, and that nothing was
    built when every index was current.

    `shards` > 1 splits each kind's global index into that many graphs, built in parallel
    (processes, or Ray tasks with engine="ray"); None keeps what an existing index has
    (also when a damaged one is rebuilt). `M` (default 16) and `ef_construction` (default
    200) shape the graphs built; an index kept or updated in place keeps its own."""
    import pyarrow.compute as pc

    _check_settings(M, ef_construction, recall_sample, shards)
    asked = {"M": M, "ef_construction": ef_construction}
    M, ef_construction = M or DEFAULT_M, ef_construction or DEFAULT_EF_CONSTRUCTION
    ws = Workspace.open(workspace)
    notes = notes if notes is not None else []
    built: list[IndexManifest] = []
    kept: list[IndexManifest] = []  # kept or updated in place: their graph settings stay
    current = 0  # indexes that needed no work
    runner = get_engine(engine, ray_address)
    with ws.lock(), runner.session():
        notes += repair_stores(ws)
        if ws.catalog.exists():
            _check_sources(ws, kinds)
        for kind in kinds:
            model_id = model_for_kind(ws, kind)
            snapshot = snapshot_hash(ws, kind, model_id)
            groups: list[str | None] = [None]
            if by_category and kind != "crop":
                groups += _categories(ws)
            every: pa.Table | None = None  # loaded only when an index needs work
            for category in groups:
                name = index_name(kind, category)
                old, had_shards = _inspect(ws, name, notes)
                split = 1 if category is not None else (shards or had_shards)
                if old is not None and (len(old.shards) or 1) != split:
                    old = None  # a new shard count: build anew
                if old is not None and old.snapshot == snapshot and not rebuild:
                    built.append(old)
                    kept.append(old)
                    current += 1
                    continue
                if every is None:
                    every = _current(ws, kind, model_id)
                rows = every if category is None else every.filter(
                    pc.equal(every.column("category"), category))
                if not rows.num_rows:
                    continue
                generation = next_generation(ws, name, old)
                if (old is not None and not rebuild and old.model_id == model_id
                      and old.dim == len(rows.column("vector")[0])
                      and (ws.indexes_dir / vectors_file(old)).exists()):
                    built.append(_update_one(ws, rows, old, generation, snapshot,
                                             recall_sample))
                    kept.append(old)
                elif split > 1:
                    built.append(_build_sharded(ws, rows, name, generation, kind, model_id,
                                                snapshot, M, ef_construction, recall_sample,
                                                split, runner))
                else:
                    built.append(_build_one(ws, rows, name, generation, kind, category,
                                            model_id, snapshot, M, ef_construction,
                                            recall_sample))
        notes += _drop_unbuilt(ws, kinds, {manifest.name for manifest in built})
    if not built:
        raise PinshopError(f"no embeddings in {ws.root}: run `pinshop ingest` first")
    notes += _kept_settings(kept, asked)
    if current == len(built):
        notes.append("every index was up to date: nothing was built (the build times shown "
                     "are the last builds'; --rebuild builds them anew)")
    return built


def _drop_unbuilt(ws: Workspace, kinds: tuple[str, ...], built: set[str]) -> list[str]:
    """Remove the per-category indexes of `kinds` this build did not make (their category
    gone from the catalog, or `by_category` off): they stayed STALE for good."""
    dropped = [name for name in manifest_names(ws) if "@" in name
               and name.split("@")[0] in kinds and name not in built]
    for name in dropped:
        manifest_path(ws, name).unlink()
        sweep_generations(ws, only=name)
    if not dropped:
        return []
    return [f"removed {len(dropped)} per-category index{'es' if len(dropped) > 1 else ''} "
            f"no longer built ({', '.join(dropped[:3])}{', ...' if len(dropped) > 3 else ''})"]
