"""One registry for every model pinshop can use. Built-ins register through the same
`register` callback that plugins get (entry-point group `pinshop.models`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import MissingWeightsError, UnknownModelError
from ..progress import Progress
from .base import ChatModel, Detector, Embedder
from .device import Device, Placement
from .factories import BuildOptions, build_model, llama_chat, ultralytics_detector
from .resolve import models_dir
from .spec import ModelSpec


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    path: Path | None
    where: str  # cache | mirror package | missing

    @property
    def present(self) -> bool:
        return self.path is not None


_specs: dict[str, ModelSpec] = {}
_aliases: dict[str, str] = {}
#: The tables being filled while the registry loads: a plugin's hook that calls
#: `register` itself (instead of the callback it was given) adds there, not re-loading.
_loading: list[tuple[dict[str, ModelSpec], dict[str, str]]] = []


def register(spec: ModelSpec) -> None:
    """Add a model (a plugin may call this at any time; built-ins come the same way)."""
    if _loading:
        _add(spec, *_loading[-1])
        return
    _ensure_loaded()
    _add(spec, _specs, _aliases)


def _add(spec: ModelSpec, specs: dict[str, ModelSpec], aliases: dict[str, str]) -> None:
    specs[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        aliases[alias.lower()] = spec.name


def _ensure_loaded() -> None:
    """Fill the registry from the built-ins and every `pinshop.models` plugin, into fresh
    tables swapped in only when all succeeded: a failing plugin raises (naming itself) and
    leaves the registry empty, to be tried again, never half-filled."""
    if _specs:
        return
    from . import builtin

    specs: dict[str, ModelSpec] = {}
    aliases: dict[str, str] = {}

    def add(spec: ModelSpec) -> None:
        _add(spec, specs, aliases)

    _loading.append((specs, aliases))
    try:
        builtin.register_models(add)
        for entry_point in metadata.entry_points(group="pinshop.models"):
            try:
                hook: Callable[[Callable[[ModelSpec], None]], None] = entry_point.load()
                hook(add)
            except Exception as exc:
                raise UnknownModelError(f"model plugin {entry_point.name!r} ({entry_point.value}"
                                        f") failed to register: {exc}") from exc
    finally:
        _loading.pop()
    _aliases.update(aliases)
    _specs.update(specs)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    key = _aliases.get(name.lower())
    if key is None:
        known = ", ".join(sorted(_specs))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known} "
                                "(see `pinshop models list`)")
    return _specs[key]


def find_spec(name: str) -> ModelSpec | None:
    _ensure_loaded()
    key = _aliases.get(name.lower())
    return _specs[key] if key else None


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return list(_specs.values())


def unregister(name: str) -> None:
    """Remove a model and its aliases (a test that registered a fake puts things back)."""
    spec = _specs.pop(get_spec(name).name)
    for alias in (spec.name, *spec.aliases):
        _aliases.pop(alias.lower(), None)


def model_status(spec: ModelSpec, directory: str | Path | None = None) -> ModelStatus:
    if not spec.files:
        return ModelStatus(spec, None, "needs no files")
    path, where = spec.files[0].locate(models_dir(directory))
    return ModelStatus(spec, path, where)


def first_file(spec: ModelSpec, directory: Path) -> Path | None:
    """The spec's first file, resolved (None for a model that needs no files)."""
    return spec.files[0].resolve(spec.name, directory) if spec.files else None


def pull(name: str, directory: str | Path | None = None,
         progress: Progress | None = None) -> list[Path]:
    """Resolve every file of a model, downloading into the cache where needed; verify."""
    spec = get_spec(name)
    target = models_dir(directory)
    paths = [f.resolve(spec.name, target, progress=progress) for f in spec.files]
    for file, path in zip(spec.files, paths, strict=True):
        if problem := file.verify(path):
            raise UnknownModelError(f"{path} is not the expected {file.filename}: {problem}")
    return paths


def verify(name: str, directory: str | Path | None = None) -> list[str]:
    """Problems with a model's present files (empty list: all good or nothing to check)."""
    spec = get_spec(name)
    problems = []
    for file in spec.files:
        path, _ = file.locate(models_dir(directory))
        if path is None:
            problems.append(f"{file.filename}: missing")
        else:
            try:
                problem = file.verify(path)
            except OSError as exc:
                problem = f"unreadable ({exc.strerror or exc})"
            if problem:
                problems.append(f"{path}: {problem}")
    return problems


#: What `--detector auto` tries, in order: open vocabulary first.
DEFAULT_DETECTORS = ("yoloe-11s-seg-pf", "yolo11n")


def get_detector(name: str = "auto", directory: str | Path | None = None,
                 conf: float = 0.25, device: str = "auto") -> Detector:
    """A detector by name; the same arguments return the same instance, so weights load
    once per process however many times a notebook calls match()."""
    from .device import resolve_device

    return _cached_detector(name, models_dir(directory), conf, resolve_device(device))


@lru_cache(maxsize=8)
def _cached_detector(name: str, directory: Path, conf: float, device: Device) -> Detector:
    return _build_detector(name, BuildOptions(directory, Placement(device), conf=conf))


def _build_detector(name: str, options: BuildOptions) -> Detector:
    """'auto' (the default detector, else whole-image fallback), 'none', a registered name,
    or a path to any ultralytics checkpoint."""
    from .detectors import WholeImageDetector

    directory = options.models_dir
    if name == "none":
        return WholeImageDetector("detection disabled (--detector none): whole image per pin")
    if name == "auto":  # the open-vocabulary default, else the COCO one, else none
        for default in DEFAULT_DETECTORS:
            weights = get_spec(default).files[0]
            if (path := weights.locate(directory)[0] or weights.download(directory)):
                detector: Detector = build_model(get_spec(default), path, options)
                return detector
        return WholeImageDetector(
            f"no detector weights ({', '.join(DEFAULT_DETECTORS)}) in {directory} and no "
            f"hub: using the whole image as one region. Fix: `pinshop models pull "
            f"{DEFAULT_DETECTORS[0]}`")
    spec = find_spec(name)
    if spec is None:
        path = Path(name).expanduser()
        if path.is_file():
            file_spec = ModelSpec(path.name, "detect", "ultralytics checkpoint", "", ())
            return ultralytics_detector(file_spec, path, options)  # type: ignore[no-any-return]
        raise UnknownModelError(
            f"detector {name!r} is neither a registered model nor an existing file "
            "(pass a path to an ultralytics .pt checkpoint, or see `pinshop models list`)"
        )
    if spec.task != "detect":
        raise UnknownModelError(f"{spec.name} is a {spec.task} model, not a detector")
    built: Detector = build_model(spec, first_file(spec, directory), options)
    return built


def get_embedder(name: str = "auto", directory: str | Path | None = None,
                 runtime: str = "auto", device: str = "auto",
                 threads: int | None = None) -> Embedder:
    """Build (without loading weights) the embedder `name`; `.source` is the name that
    rebuilds it, recorded in the workspace. Cached like get_detector. `runtime` (auto,
    torch, onnx, onnx-int8) says where its forwards run (see models/onnx.py); `device`
    (auto, cpu, cuda[:N]) and `threads` where (models/device.py).

    'auto' (CLIP where its weights resolve, else the offline pair), 'clip', 'offline',
    a registered name, or 'clip:ARCH:PRETRAINED' where ARCH may be an open_clip config
    JSON file and PRETRAINED a tag or a checkpoint path."""
    from .device import resolve_device
    from .onnx import RUNTIMES

    if runtime not in RUNTIMES:
        raise UnknownModelError(f"unknown runtime {runtime!r}; use one of "
                                f"{', '.join(RUNTIMES)}")
    placement = Placement(resolve_device(device), threads)
    return _cached_embedder(name, models_dir(directory), runtime, placement)


@lru_cache(maxsize=8)
def _cached_embedder(name: str, directory: Path, runtime: str,
                     placement: Placement) -> Embedder:
    """Embedders are complete when built (source and note are constructor arguments) and
    never changed afterwards, so a cached one can be handed to anyone. Two embedders built
    from the same files share their loaded weights (embedders.shared_weights)."""
    return _build_embedder(name, BuildOptions(directory, placement, runtime, source=name))


def _build_embedder(name: str, options: BuildOptions) -> Embedder:
    from .embedders import OfflinePairEmbedder, OpenClipEmbedder

    target = options.models_dir
    where: dict[str, Any] = {"runtime": options.runtime, "models_dir": target,
                             "placement": options.placement}
    if name == "auto":
        try:
            return _build_embedder("clip", options)
        except MissingWeightsError as missing:
            note = (f"CLIP weights not found ({missing.args[0].split(',')[0]}); "
                    "using the offline pair EfficientNet-Lite0 + MiniLM")
            image, text = _offline_pair_files(target)
            return OfflinePairEmbedder(image, text, source="offline", note=note, **where)
    if name == "offline":
        return OfflinePairEmbedder(*_offline_pair_files(target), source="offline", **where)
    if name.startswith("clip:"):
        arch, _, pretrained = name[len("clip:"):].partition(":")
        config = Path(arch) if arch.endswith(".json") else None
        checkpoint = Path(pretrained).expanduser()
        if config is None or not checkpoint.is_file():
            raise UnknownModelError(
                f"custom CLIP {name!r}: use clip:CONFIG.json:CHECKPOINT with existing files, "
                "or a registered CLIP name (see `pinshop models list`)"
            )
        if not config.is_file():
            raise UnknownModelError(f"open_clip config not found: {config}")
        return OpenClipEmbedder(config.stem, checkpoint,
                                f"open_clip:{config.stem}@{checkpoint.name}", config_file=config,
                                source=name, **where)
    spec = get_spec(name)
    if spec.task != "embed":
        raise UnknownModelError(f"{spec.name} is a {spec.task} model, not an embedder "
                                "(use --embedder auto|clip|offline|<clip name>)")
    built: Embedder = build_model(spec, first_file(spec, target), options)
    return built


def _offline_pair_files(target: Path) -> tuple[Path, Path]:
    image = get_spec("efficientnet-lite0").files[0].resolve("efficientnet-lite0", target)
    text = get_spec("all-minilm-l6-v2").files[0].resolve("all-minilm-l6-v2", target)
    return image, text


def get_chat_model(name: str = "qwen2.5-coder-1.5b", directory: str | Path | None = None,
                   n_ctx: int = 4096, n_threads: int | None = None,
                   progress: Progress | None = None, device: str = "auto") -> ChatModel:
    """A registered chat model (resolved, joined and verified on first use) or a path to
    any GGUF file. Weights load on first generation; on a GPU, llama.cpp offloads its
    layers when the installed library was built with GPU support (models/llm.py)."""
    from .device import resolve_device

    target = models_dir(directory)
    options = BuildOptions(target, Placement(resolve_device(device)), n_ctx=n_ctx,
                           n_threads=n_threads)
    spec = find_spec(name)
    if spec is None:
        path = Path(name).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            file_spec = ModelSpec(path.name, "chat", "GGUF file", "", ())
            return llama_chat(file_spec, path, options)  # type: ignore[no-any-return]
        raise UnknownModelError(f"chat model {name!r} is neither registered nor a .gguf file "
                                "(see `pinshop models list`)")
    if spec.task != "chat":
        raise UnknownModelError(f"{spec.name} is a {spec.task} model, not a chat model")
    path = spec.files[0].resolve(spec.name, target, progress=progress)
    built: ChatModel = build_model(spec, path, options)
    return built
