"""What the ingest benchmarks share: each measured case in a fresh spawned process (its imports, memory
and peak RSS its own), and that process's peak RSS."""

from __future__ import annotations

import multiprocessing as mp
import resource
from pathlib import Path
from typing import Any, Callable


def peak_mb() -> float:
    """This process's peak resident memory in MB (VmHWM: ru_maxrss would carry the parent's peak across
    exec on Linux)."""
    status = Path("/proc/self/status")
    if status.is_file():  # Linux; elsewhere ru_maxrss is this process's own
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_fresh_process(child: Callable[..., None], *args: Any) -> Any:
    """Run ``child(*args, queue)`` (a module-level function) in a spawned process and return what it puts
    on the queue."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out
