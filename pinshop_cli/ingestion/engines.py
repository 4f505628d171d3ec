"""Engines: run a list of stages over a plan table and yield one receipt per batch.

`local` runs in this process: reader threads prefetch the light leading stages (decoding)
of the next batch while the models run on the current one. `ray` is Ray Data batch
inference: light stages run as tasks, model stages as pools of actors that load their model
once, and batches stream from the plan to the receipts. Either way the driver (pipeline.py)
commits each receipt as it arrives, so what a killed run finished stays finished.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from .stages import Stage

if TYPE_CHECKING:
    import pyarrow as pa

#: Logical CPUs held by one light (decode, write) Ray task.
LIGHT_TASK_CPUS = 0.5


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
    from ..models.device import gpu_batch_size, resolve_device

    placed = resolve_device(device)
    if placed.is_gpu:
        batch_size = gpu_batch_size(placed, GPU_BYTES_PER_IMAGE, batch_size)
        reader_threads = max(reader_threads, os.cpu_count() or 1)
    return EngineOptions(batch_size, reader_threads, workers)


def run_stages(engine: str, plan: pa.Table, stages: list[Stage],
               options: EngineOptions) -> Iterator[pa.Table]:
    if plan.num_rows == 0:
        return iter(())
    return run_ray(plan, stages, options) if engine == "ray" else run_local(plan, stages, options)


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


def actor_placement(stages: list[Stage], workers: int | None) -> ActorPlacement:
    """By default one actor per node (with CPUs) and model stage, whose torch threads share
    the node's cores, as the local engine uses this machine. Actors reserve at most a CPU
    each and leave every node room for one light task (Ray Data would otherwise wait
    forever for a CPU to decode on); `workers` that cannot fit so are refused."""
    import ray

    alive = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    node_cpus = [cpus for resources in alive if (cpus := float(resources.get("CPU", 0))) > 0]
    if not node_cpus:
        raise PinshopError("the Ray cluster has no CPUs to run on")
    models = max(1, sum(stage.model for stage in stages))
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
    """Ray Data over the cluster joined by cluster.engine_session()."""
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


def _cause(exc: BaseException) -> str:
    """The user's error inside Ray's wrapping (a PinshopError from a worker, say)."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    if isinstance(cause, BaseException) and cause is not exc:
        return _cause(cause)
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
