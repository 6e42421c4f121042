"""Running independent pieces of labeling work (row blocks, LFs) on a thread pool: numpy releases the GIL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence


def run_each(fn: Callable[[Any], None], items: Sequence[Any], n_jobs: int) -> None:
    """Call ``fn`` on every item: on ``n_jobs`` threads when that is more than one and there is more than one
    item, else in order on this thread; the first exception propagates."""
    if n_jobs and n_jobs > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            list(pool.map(fn, items))
    else:
        for item in items:
            fn(item)
