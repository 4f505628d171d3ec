"""Where heavy work runs: in this process, or on a Ray cluster joined for one command.

A multi-machine run needs the same pinshop and models on every node, and a workspace path
every node can read and write (a shared file system mounted at the same path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from .errors import PinshopError, first_line

ENGINES = ("local", "ray")


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise PinshopError(f"unknown engine {engine!r}: use local or ray")


def engine_session(engine: str, ray_address: str | None = None) -> Any:
    """What an engine holds for a whole command: a Ray connection, or nothing."""
    check_engine(engine)
    return ray_session(ray_address) if engine == "ray" else nullcontext()


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join the cluster at `address` (else RAY_ADDRESS), or start a local Ray, for the
    length of the block; leave Ray as found when a caller (a notebook) already joined."""
    import logging

    try:
        import ray
    except ImportError:
        raise PinshopError("--engine ray needs Ray: pip install 'pinshop[ray]'") from None
    if ray.is_initialized():
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target:
        _check_reachable(target)
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = first_line(exc)
        raise PinshopError(f"cannot join the Ray cluster at {target}: {first}") from None
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
