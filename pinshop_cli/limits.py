"""DuckDB's memory limits on this machine: what one statement may use, read back in bytes."""

from __future__ import annotations

import contextlib
import os
from typing import Any

MEMORY_SHARE = 0.5  # of the memory available at start, what one statement may use


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable), else free memory."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_memory_limit() -> str:
    return f"{max(256, int(available_memory() * MEMORY_SHARE) >> 20)}MB"


def memory_limit_bytes(con: Any) -> int:
    """The connection's memory limit, as DuckDB shows it ("3.7 GiB"), in bytes."""
    value, _, unit = str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
                         ).partition(" ")
    scale = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    return int(float(value) * scale.get(unit.strip(), 1 << 30))


def resident_bytes() -> int:
    """This process's resident memory now (Linux), else its peak so far."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
