"""Engines: where heavy work runs. One protocol (`Engine`), two engines behind it.

An engine does two kinds of work for the commands:
- `stream`: run a list of ingest stages over a plan table, yielding one receipt per batch;
  the driver (ingestion/pipeline.py) commits each receipt as it arrives, so what a killed
  run finished stays finished;
- `map`: independent CPU jobs, e.g. the shards of an index (index/shards.py).

`local` runs on this machine: reader threads prefetch the light leading stages (decoding)
of the next batch while the models run on the current one, and jobs run in processes.
`ray` is Ray Data batch inference on a cluster joined for one command (`session`): light
stages run as tasks, model stages as pools of actors that load their model once, and jobs
run as Ray tasks. A multi-machine run needs the same pinshop and models on every node, and
a workspace path every node can read and write (a shared file system mounted at one path).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import PinshopError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

#: Logical CPUs held by one light (decode, write) Ray task.
LIGHT_TASK_CPUS = 0.5


@dataclass(frozen=True)
class Stage:
    """A stage as an engine needs it: the class, its constructor arguments, and whether it
    holds a model (one instance per worker, Ray actors) or is light per-batch work."""

    factory: type
    args: dict[str, Any]
    model: bool = False

    def build(self) -> Any:
        return self.factory(**self.args)


@dataclass(frozen=True)
class EngineOptions:
    batch_size: int
    reader_threads: int = 2
    #: Ray: actors per model stage (default: one per node).
    workers: int | None = None


#: A generous estimate of one image's activations in the embedders at fp32 (CLIP ViT-B/32
#: and EfficientNet-Lite0 at 224 px stay well under it); sizes batches on a GPU.
GPU_BYTES_PER_IMAGE = 48 << 20


def engine_options(device: str, batch_size: int, reader_threads: int,
                   workers: int | None) -> EngineOptions:
    """The options a run uses where its models run: on a GPU, batches sized to the device's
    free memory and a decoding thread per core, so the GPU is not left waiting."""
    from .models.device import gpu_batch_size, resolve_device

    placed = resolve_device(device)
    if placed.is_gpu:
        batch_size = gpu_batch_size(placed, GPU_BYTES_PER_IMAGE, batch_size)
        reader_threads = max(reader_threads, os.cpu_count() or 1)
    return EngineOptions(batch_size, reader_threads, workers)


def _split(batch: pa.Table, pieces: int) -> list[pa.Table]:
    size = max(1, -(-batch.num_rows // pieces))
    return [batch.slice(start, size) for start in range(0, batch.num_rows, size)]


def run_local(plan: pa.Table, stages: list[Stage], options: EngineOptions
              ) -> Iterator[pa.Table]:
    import pyarrow as pa

    built = [stage.build() for stage in stages]
    light = next((i for i, stage in enumerate(stages) if stage.model), len(stages))
    head, tail = built[:light], built[light:]

    def run_head(batch: pa.Table) -> pa.Table:
        for stage in head:
            batch = stage(batch)
        return batch

    def finish(futures: list[Future[pa.Table]]) -> pa.Table:
        batch = pa.concat_tables([future.result() for future in futures])
        for stage in tail:
            batch = stage(batch)
        return batch

    with ThreadPoolExecutor(max_workers=options.reader_threads) as pool:
        pending: list[Future[pa.Table]] | None = None
        for start in range(0, plan.num_rows, options.batch_size):
            batch = plan.slice(start, options.batch_size)
            futures = [pool.submit(run_head, piece)
                       for piece in _split(batch, options.reader_threads)]
            if pending is not None:
                yield finish(pending)
            pending = futures
        if pending is not None:
            yield finish(pending)


@dataclass(frozen=True)
class ActorPlacement:
    """How model stages occupy the cluster."""

    actors: int  # per model stage
    cpus: float  # logical CPUs each actor reserves
    threads: int  # torch threads inside each actor
    gpus: float = 0.0  # GPUs each actor reserves (a share when actors outnumber GPUs)


def actor_placement(stages: list[Stage], workers: int | None, models: int | None = None
                    ) -> ActorPlacement:
    """By default one actor per node (with CPUs) and model stage, whose torch threads share
    the node's cores, as the local engine uses this machine. Actors reserve at most a CPU
    each and leave every node room for one light task (Ray Data would otherwise wait
    forever for a CPU to decode on); `workers` that cannot fit so are refused."""
    import ray

    alive = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    node_cpus = [cpus for resources in alive if (cpus := float(resources.get("CPU", 0))) > 0]
    if not node_cpus:
        raise PinshopError("the Ray cluster has no CPUs to run on")
    models = models or max(1, sum(stage.model for stage in stages))
    actors = workers or len(node_cpus)
    per_node = -(-actors * models // len(node_cpus))
    cpus = min(1.0, (min(node_cpus) - LIGHT_TASK_CPUS) / per_node)
    if cpus < 0.1:
        raise PinshopError(f"--workers {actors} does not fit: {len(node_cpus)} node(s) with "
                           f"{min(node_cpus):g} CPUs each cannot hold {actors * models} model "
                           "actors and still decode; use fewer workers")
    gpus = actor_gpus([stage.args.get("device", "auto") for stage in stages if stage.model],
                      sum(float(resources.get("GPU", 0)) for resources in alive),
                      actors * models)
    return ActorPlacement(actors, cpus, max(1, int(sum(node_cpus) // (actors * models))), gpus)


def actor_gpus(devices: list[str], cluster_gpus: float, model_actors: int) -> float:
    """The GPU share each model actor reserves: none when every stage runs on the CPU or
    `auto` finds no GPU; otherwise the cluster's GPUs split over the actors, at most one
    each (Ray then sets each actor's CUDA_VISIBLE_DEVICES). Decoding stays on CPU tasks."""
    wants = [device for device in devices if device != "cpu"]
    if not wants:
        return 0.0
    if cluster_gpus <= 0:
        named = next((device for device in wants if device != "auto"), None)
        if named:
            raise PinshopError(f"--device {named}: the Ray cluster has no GPUs; use "
                               "--device cpu or auto")
        return 0.0
    return min(1.0, cluster_gpus / max(1, model_actors))


def run_ray(plan: pa.Table, stages: list[Stage], options: EngineOptions
            ) -> Iterator[pa.Table]:
    """Ray Data over the cluster joined by RayEngine.session()."""
    import ray
    import ray.data

    try:
        placement = actor_placement(stages, options.workers)
        # One block per batch: Ray hands blocks to workers, so this is the parallelism.
        dataset: ray.data.Dataset = ray.data.from_arrow(
            [plan.slice(s, options.batch_size)
             for s in range(0, plan.num_rows, options.batch_size)])
        for stage in stages:
            common: dict[str, Any] = {"batch_size": options.batch_size,
                                      "batch_format": "pyarrow"}
            if stage.model:
                dataset = dataset.map_batches(
                    stage.factory,
                    fn_constructor_kwargs={**stage.args, "threads": placement.threads},
                    compute=ray.data.ActorPoolStrategy(size=placement.actors),
                    num_cpus=placement.cpus, num_gpus=placement.gpus, **common)
            else:  # an instance, not a class: Ray runs it as stateless tasks
                dataset = dataset.map_batches(stage.build(), num_cpus=LIGHT_TASK_CPUS, **common)
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    except ray.exceptions.RayError as exc:
        raise PinshopError(f"the Ray engine failed: {_cause(exc)}") from None


#: A line of a worker's traceback naming the error it raised ("OSError: disk full").
_RAISED = re.compile(r"^([\w.]*?)(\w+(?:Error|Exception)): (.+)$", re.M)


def _cause(exc: BaseException) -> str:
    """The user's error inside Ray's wrapping: a PinshopError from a worker says its
    message, another error raised in a worker its name and message (Ray passes on the
    worker's traceback as text, under its own advice on retries)."""
    inner = exc
    while isinstance(deeper := getattr(inner, "cause", None) or inner.__cause__,
                     BaseException) and deeper is not inner:
        inner = deeper
    if isinstance(inner, PinshopError):
        return first_line(inner)
    for module, name, message in _RAISED.findall(str(exc)):
        if not module.startswith("ray."):
            return message if name == "PinshopError" else f"{name}: {message}"
    lines = [line for line in str(inner).splitlines() if line.strip()]
    return lines[-1] if lines else type(inner).__name__


class Engine(ABC):
    """Where a command's heavy work runs (see the module docstring)."""

    name: str

    def session(self) -> AbstractContextManager[None]:
        """What the engine holds for a whole command (a Ray connection), or nothing."""
        return nullcontext()

    def stream(self, plan: pa.Table, stages: list[Stage], options: EngineOptions
               ) -> Iterator[pa.Table]:
        """`stages` over `plan`, one receipt table per batch, as batches finish."""
        return self._stream(plan, stages, options) if plan.num_rows else iter(())

    @abstractmethod
    def _stream(self, plan: pa.Table, stages: list[Stage], options: EngineOptions
                ) -> Iterator[pa.Table]: ...

    @abstractmethod
    def map(self, function: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        """`function(*job)` for every job, in parallel; results in job order. `function`
        must be importable by name (it runs in another process)."""

    @abstractmethod
    def job_threads(self, jobs: int) -> int:
        """Threads each of `jobs` parallel map jobs may use."""

    @abstractmethod
    def check_workers(self, model_stages: int, workers: int | None) -> None:
        """Refuse, before any work, `workers` that a run's stages holding `model_stages`
        models at once cannot fit (inside session())."""


class LocalEngine(Engine):
    name = "local"

    def _stream(self, plan: pa.Table, stages: list[Stage], options: EngineOptions
                ) -> Iterator[pa.Table]:
        return run_local(plan, stages, options)

    def map(self, function: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        with ProcessPoolExecutor(max_workers=max(1, min(len(jobs), cpus()))) as pool:
            return list(pool.map(function, *zip(*jobs, strict=True)))

    def job_threads(self, jobs: int) -> int:
        return max(1, cpus() // max(1, jobs))  # the jobs share this machine's cores

    def check_workers(self, model_stages: int, workers: int | None) -> None:
        return None  # --workers is a Ray option: each local stage runs one model


class RayEngine(Engine):
    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def session(self) -> AbstractContextManager[None]:
        return ray_session(self.address)

    def check_workers(self, model_stages: int, workers: int | None) -> None:
        actor_placement([], workers, model_stages)

    def _stream(self, plan: pa.Table, stages: list[Stage], options: EngineOptions
                ) -> Iterator[pa.Table]:
        return run_ray(plan, stages, options)

    def map(self, function: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        import ray

        task = ray.remote(num_cpus=1)(function)
        return list(ray.get([task.remote(*job) for job in jobs]))

    def job_threads(self, jobs: int) -> int:
        return 1  # a Ray task holds one CPU


ENGINES: dict[str, Callable[[str | None], Engine]] = {
    "local": lambda address: LocalEngine(), "ray": RayEngine}


def get_engine(name: str, ray_address: str | None = None) -> Engine:
    """The engine `name` (local or ray); a Ray engine joins `ray_address` in its session."""
    if name not in ENGINES:
        raise PinshopError(f"unknown engine {name!r}: use {' or '.join(ENGINES)}")
    return ENGINES[name](ray_address)


def cpus() -> int:
    """The cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join the cluster at `address` (else RAY_ADDRESS), or start a local Ray of the run's
    own, for the length of the block; leave Ray as found when a caller (a notebook) already
    joined."""
    import logging

    try:
        import ray
    except ImportError:
        raise PinshopError("--engine ray needs Ray: pip install -e '.[ray]' in pinshop's "
                           "checkout") from None
    if ray.is_initialized():
        yield
        return
    # "local" starts a Ray of the run's own: without it, Ray joins whichever cluster was
    # started last on the machine (another user's, another checkout's). "auto" joins one.
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    if target != "local":
        _check_reachable(target)
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = first_line(exc)
        where = "start a local Ray" if target == "local" else f"join the Ray cluster at {target}"
        raise PinshopError(f"cannot {where}: {first}") from None
    import ray.data

    # pinshop shows its own progress: Ray Data's INFO lines go to its log file only.
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a HOST:PORT nothing listens on: Ray itself retries for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": Ray's own resolution
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise PinshopError(f"cannot reach the Ray cluster at {address}: "
                           f"{exc.strerror or exc} (is `ray start --head` running there?)"
                           ) from None
