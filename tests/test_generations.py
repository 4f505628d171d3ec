"""Index generations: a killed build leaves the old generation serving, readers check what
they load, `pinshop index` rebuilds what is damaged and `--status` says so, and old
generations wait for their readers. Kills are injected at chosen file operations
(PINSHOP_FAULT_AT), not timed."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pinshop_cli import DamagedFileError, Workspace, build_indexes, index_status, ingest
from pinshop_cli.index.generations import files_of, ids_file
from pinshop_cli.index.hnsw import load_index, read_manifests
from pinshop_cli.retrieval.retriever import Retriever

QUERIES = ["P005", "P012", "P020", "P036", "P040"]


def answers(root: Path) -> list[list[str]]:
    """Top-5 product_text ids for a few products' own vectors, from a fresh load."""
    retriever = Retriever(root)
    try:
        loaded = retriever.index("product_text")
        assert loaded is not None
        _, vectors = loaded.vectors_by_id(QUERIES)
        found = retriever.search(np.asarray(vectors), 5, "product_text").hits
        return [[hit.id for hit in row] for row in found]
    finally:
        retriever.close()


def run_index(root: Path, fault_at: int | None = None, log: Path | None = None,
              rebuild: bool = True) -> subprocess.CompletedProcess[str]:
    """`build_indexes` of the product_text index in a new process, killed like kill -9 at
    its `fault_at`-th file operation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINSHOP_FAULT")}
    if fault_at is not None:
        env["PINSHOP_FAULT_AT"] = str(fault_at)
    if log is not None:
        env["PINSHOP_FAULT_LOG"] = str(log)
    code = ("from pinshop_cli.index.hnsw import build_indexes\n"
            f"build_indexes({str(root)!r}, kinds=('product_text',), by_category=False, "
            f"rebuild={rebuild}, recall_sample=0)")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def renumbered(copy_workspace, sample_dir: Path, tmp_path: Path) -> Path:
    """The demo workspace after an ingest adding a product whose id sorts first, indexed
    by an update in place: a rebuild now numbers every label differently (the torn-index
    case: a new graph read with the old labels answers with the neighbouring product)."""
    root = copy_workspace()
    shutil.copytree(sample_dir / "products", tmp_path / "products")
    with open(sample_dir / "catalog.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows.insert(0, {**rows[0], "id": "A000", "title": "Walnut Leather Lamp", "image": ""})
    with open(tmp_path / "catalog.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ingest(root, tmp_path / "catalog.csv")
    build_indexes(root, kinds=("product_text",), by_category=False, recall_sample=0)
    return root


def test_a_rebuild_killed_at_any_swap_step_leaves_a_whole_index(renumbered: Path,
                                                                 tmp_path: Path) -> None:
    clean = answers(renumbered)
    log = tmp_path / "ops.log"
    assert run_index(renumbered, log=log).returncode == 0
    ops = [line.split(" ", 2) for line in log.read_text().splitlines()]
    renames = [int(n) for n, op, path in ops if op == "rename"]
    names = [Path(path).name for _, op, path in ops if op == "rename"]
    # The new generation's graph, vectors and labels, then the manifest, last.
    assert names[-1] == "product_text.json" and names[0].endswith(".hnsw")
    assert any(op == "unlink" for _, op, _ in ops)  # the old generation was swept
    first_unlink = next(int(n) for n, op, _ in ops if op == "unlink")
    for fault_at in [*renames, first_unlink]:
        trial = tmp_path / f"trial-{fault_at}"
        shutil.copytree(renumbered, trial, ignore=shutil.ignore_patterns(".lock"))
        killed = run_index(trial, fault_at=fault_at)
        assert killed.returncode == 137, killed.stderr
        assert answers(trial) == clean, f"killed at operation {fault_at}"
        status = {s.name: s for s in index_status(trial)}["product_text"]
        assert not (status.damage or status.stale), (fault_at, status)
    build_indexes(trial, kinds=("product_text",), by_category=False, recall_sample=0)
    assert answers(trial) == clean
    manifest = next(m for m in read_manifests(Workspace.open(trial))
                    if m.name == "product_text")
    on_disk = {p.name for p in (trial / "indexes").glob("product_text.*")}
    assert on_disk == {"product_text.json", *files_of(manifest)}  # leftovers swept


@pytest.mark.parametrize("role", ["graph", "ids", "vectors", "manifest"])
def test_damaged_index_files_are_one_error_and_index_rebuilds_them(copy_workspace,
                                                                   role: str) -> None:
    root = copy_workspace()
    clean = answers(root)
    ws = Workspace.open(root)
    manifest = next(m for m in read_manifests(ws) if m.name == "product_text")
    target = {"graph": ws.indexes_dir / files_of(manifest)[0],
              "ids": ws.indexes_dir / ids_file(manifest),
              "vectors": ws.indexes_dir / files_of(manifest)[-1],
              "manifest": ws.indexes_dir / "product_text.json"}[role]
    data = target.read_bytes()
    target.write_bytes(data[:len(data) // 2] + b"\x00garbage" * 4)  # torn, with junk
    with pytest.raises(DamagedFileError, match=r"is damaged \(.*\): run `pinshop index`"):
        load_index(ws, "product_text")
    status = {s.name: s for s in index_status(root)}["product_text"]
    assert status.damage and status.state.startswith("DAMAGED")
    notes: list[str] = []
    build_indexes(root, recall_sample=0, notes=notes)
    assert any("product_text" in n and "damaged" in n and "rebuilt" in n for n in notes)
    assert answers(root) == clean
    assert not any(s.damage or s.stale for s in index_status(root))


def test_old_generations_stay_while_a_reader_holds_them(copy_workspace) -> None:
    root = copy_workspace()
    ws = Workspace.open(root)
    reader = load_index(ws, "product_text")
    old = [ws.indexes_dir / f for f in files_of(reader.manifest)]
    build_indexes(root, kinds=("product_text",), by_category=False, rebuild=True,
                  recall_sample=0)
    assert all(path.exists() for path in old)  # held: the reader's vectors stay mapped
    assert reader.vectors is not None and reader.live_count == 44
    reader.close()
    with ws.lock():  # the next writer sweeps what no reader holds
        pass
    assert not any(path.exists() for path in old)
    assert load_index(ws, "product_text").manifest.generation > reader.manifest.generation
