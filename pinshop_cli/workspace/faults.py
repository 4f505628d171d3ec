"""Test hooks read from the environment, kept in this one module: crash injection for
tests and bench/stress_kill.py (die like `kill -9` at a chosen file operation,
deterministically instead of by timing luck), and a smaller compaction fan-out.

Every atomic write (temp file complete, before its rename), every rename and every unlink a
writer makes passes `fault_point`. With `PINSHOP_FAULT_AT=N` set, the process calls
os._exit(137) at its Nth such operation: no finally blocks, no flushing, exactly what
SIGKILL leaves. `PINSHOP_FAULT_LOG=FILE` appends "N op path" per operation, so a harness can
count a clean run's operations and then kill at each in turn. Unset (always, outside
tests), a fault point costs one environment lookup.

Only the process that imported this first counts: worker processes (index shards built in
a process pool) inherit PINSHOP_FAULT_PID and skip, so N names the same operation of the
same command every time.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_count = 0

if os.environ.get("PINSHOP_FAULT_AT") or os.environ.get("PINSHOP_FAULT_LOG"):
    os.environ.setdefault("PINSHOP_FAULT_PID", str(os.getpid()))


def fault_point(operation: str, path: object) -> None:
    """Count one file operation ("write", "rename", "unlink") and die at the chosen one."""
    at, log = os.environ.get("PINSHOP_FAULT_AT"), os.environ.get("PINSHOP_FAULT_LOG")
    if not (at or log) or os.environ.get("PINSHOP_FAULT_PID") != str(os.getpid()):
        return
    global _count
    with _lock:
        _count += 1
        number = _count
        if log:
            with open(log, "a") as handle:
                handle.write(f"{number} {operation} {path}\n")
        if at and number == int(at):
            os._exit(137)


def compaction_fanout(default: int) -> int:
    """Files per level before a merge: `default`, or PINSHOP_COMPACT_FANOUT (at least 2),
    which tests and the kill stress script lower so a handful of rows compacts."""
    return max(2, int(os.environ.get("PINSHOP_COMPACT_FANOUT") or default))
