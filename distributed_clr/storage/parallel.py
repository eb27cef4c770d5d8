"""Work on a dataset's shards or a large array's slices spread over a thread per usable CPU.

Reading Parquet, hashing files and copying large numpy arrays release the GIL, so threads keep
every core busy in one process without Ray: the reader (``reader.map_shards``), shard
verification (``verify.problems``) and the assembly of evaluation inputs use this one helper.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["thread_map", "usable_cpus"]

T = TypeVar("T")
R = TypeVar("R")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which ``taskset`` and container
    limits narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_map(work: Callable[[T], R], items: Sequence[T], threads: int | None = None) -> list[R]:
    """``[work(item) for item in items]``, run on ``threads`` threads (default
    ``usable_cpus()``), in the order of ``items``. The first exception an item raises is raised
    here once the items under way have finished."""
    count = max(1, min(threads or usable_cpus(), len(items)))
    if count == 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(count, thread_name_prefix="dclr") as pool:
        return list(pool.map(work, items))
