"""The Ray engine on a real two-node Ray cluster started on this machine
(ray.cluster_utils.Cluster): the same rows, rejects and vectors as the local engine,
batches on both nodes, resume after the driver dies, and sharded index builds as Ray tasks.
One cluster serves the module: starting Ray costs seconds."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray", reason="needs ray: pip install -e '.[test]'")

from pinshop_cli import IngestConfig, ingest  # noqa: E402
from pinshop_cli.workspace import Workspace  # noqa: E402
from pinshop_cli.workspace.embeddings import load_embeddings  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes(offline_env: None) -> Iterator[object]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def offline_env(models_cache: Path) -> Iterator[None]:
    """Ray's workers inherit the environment of the processes that start the cluster."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PINSHOP_OFFLINE", "1")
    mp.setenv("PINSHOP_MODELS", str(models_cache))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def pins_with_a_bad_file(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pins = tmp_path_factory.mktemp("pins")
    photos = sorted((sample_dir / "pins").iterdir())
    for photo in photos[:2]:  # the engines' agreement needs a few pins, not all (time)
        shutil.copy(photo, pins / photo.name)
    first = photos[0]
    (pins / "truncated.jpg").write_bytes(first.read_bytes()[:2000])
    return pins


@pytest.fixture(scope="module")
def small_catalog(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample catalog's first 16 products (several batches a stage, at a third of the
    model work: the engines' agreement is the same on fewer rows)."""
    folder = tmp_path_factory.mktemp("catalog")
    shutil.copytree(sample_dir / "products", folder / "products")
    lines = (sample_dir / "catalog.csv").read_text().splitlines(keepends=True)
    (folder / "catalog.csv").write_text("".join(lines[:17]))
    return folder / "catalog.csv"


def run(root: Path, catalog: Path, pins: Path, **engine: object):
    # Catalog-guided regions, the offline default: a model stage that reads the run's own
    # product-photo vectors. (YOLO weights through ingest: test_models.)
    config = IngestConfig(detector="regions", batch_size=4, text_batch_size=16, **engine)
    return ingest(root, catalog, pins, config)


def rejects(root: Path) -> dict[str, list[tuple[str, ...]]]:
    return {path.name: sorted(tuple(map(str, row.values()))
                              for row in pq.read_table(path).to_pylist())
            for path in sorted((root / "rejects").glob("*.parquet"))}


def test_ray_and_local_engines_agree_and_batches_run_on_both_nodes(
        two_nodes: object, tmp_path: Path, small_catalog: Path, pins_with_a_bad_file: Path
        ) -> None:
    local = run(tmp_path / "local", small_catalog, pins_with_a_bad_file)
    on_ray = run(tmp_path / "ray", small_catalog, pins_with_a_bad_file, engine="ray",
                 workers=2)

    assert on_ray.engine == "ray" and len(on_ray.nodes) == 2, on_ray.nodes
    for field in ("rows_ok", "rows_rejected", "pins_ok", "pins_rejected", "detections",
                  "embedded"):
        assert getattr(on_ray, field) == getattr(local, field), field
    assert on_ray.pins_rejected == 1
    # Where the models ran, as the workers' stages said (it read "image: unused, text:
    # unused": the driver's own embedder never ran a forward).
    assert on_ray.runtime == local.runtime and "unused" not in on_ray.runtime, on_ray.runtime
    assert rejects(tmp_path / "ray") == rejects(tmp_path / "local")
    for name in ("catalog.parquet", "pins.parquet", "detections.parquet"):
        assert pq.read_table(tmp_path / "ray" / name).equals(
            pq.read_table(tmp_path / "local" / name)), name
    for kind, model in (("product_image", "efficientnet-lite0"),
                        ("product_text", "all-MiniLM-L6-v2"), ("crop", "efficientnet-lite0")):
        a = load_embeddings(Workspace.open(tmp_path / "local"), kind, model)
        b = load_embeddings(Workspace.open(tmp_path / "ray"), kind, model)
        assert a.ids == b.ids and a.ids, kind
        assert np.min(np.sum(a.vectors * b.vectors, axis=1)) >= 0.9999, kind


class DriverDies(Exception):
    """Raised by the driver's progress after some batches: the run stops mid-way."""


class DieAfter:
    def __init__(self, batches: int) -> None:
        self.left = batches

    def start(self, stage: str, total: int) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        self.left -= 1
        if self.left == 0:
            raise DriverDies


def test_a_ray_run_stopped_midway_resumes_without_redoing_committed_batches(
        two_nodes: object, tmp_path: Path, small_catalog: Path) -> None:
    config = IngestConfig(detector="none", batch_size=4, engine="ray", workers=2)
    with pytest.raises(DriverDies):
        ingest(tmp_path / "ws", small_catalog, None, config, DieAfter(3))
    resumed = ingest(tmp_path / "ws", small_catalog, None, config)

    images = resumed.embedded["product_image"] + resumed.already_done["product_image"]
    assert resumed.already_done["product_image"] >= 3 * 4  # the 3 committed batches kept
    assert resumed.embedded["product_image"] > 0
    stored = load_embeddings(Workspace.open(tmp_path / "ws"), "product_image",
                             "efficientnet-lite0")
    assert len(stored.ids) == len(set(stored.ids)) == images
    again = ingest(tmp_path / "ws", small_catalog, None, config)
    assert not again.model_work_done


def test_shards_build_as_ray_tasks_and_search_equals_the_exact_ranking(
        two_nodes: object, copy_workspace) -> None:  # noqa: ANN001
    from pinshop_cli import build_indexes
    from pinshop_cli.index.hnsw import load_index, top_k_exact

    root = copy_workspace()
    manifests = {m.name: m for m in build_indexes(root, shards=2, engine="ray",
                                                  by_category=False)}
    assert len(manifests["product_text"].shards) == 2
    ws = Workspace.open(root)
    loaded = load_index(ws, "product_text")
    stored = load_embeddings(ws, "product_text", "all-MiniLM-L6-v2")
    loaded.index.set_ef(64)  # more than each shard holds: every shard answers exactly
    labels, _ = loaded.index.knn_query(stored.vectors[:10], k=10)
    by_label = loaded.ids_by_label
    exact = top_k_exact(stored.vectors, stored.vectors[:10], 10)[0]
    assert [[by_label[x] for x in row] for row in labels] == \
        [[stored.ids[x] for x in row] for row in exact]


def test_workers_that_cannot_fit_the_pins_stage_are_refused_before_any_work(
        two_nodes: object, tmp_path: Path, small_catalog: Path, pins_with_a_bad_file: Path
        ) -> None:
    """--workers 20 fitted the product stages (one model each) and was refused only at the
    pins stage (two), after every product was embedded."""
    from pinshop_cli.errors import PinshopError

    with pytest.raises(PinshopError, match="--workers 20 does not fit"):
        run(tmp_path / "ws", small_catalog, pins_with_a_bad_file, engine="ray", workers=20)
    assert not list((tmp_path / "ws").glob("embeddings/*/*.parquet"))  # nothing embedded
