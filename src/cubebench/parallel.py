"""Spread work over a Dask cluster in batches of neighbouring chunks, with a bounded number in flight.

Each task handles a *batch* of chunks (about :data:`BATCH_BYTES` of raw data), so that single-frame chunkings
(65536 chunks in an 8 GiB cube) do not drown in per-task overhead, and at most a small window of tasks is in
flight, so memory stays bounded by chunk size x workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import Block, block_grid

if TYPE_CHECKING:
    from distributed import Client

#: Raw bytes of source data handled by one task.
BATCH_BYTES = 32 * 2**20

ChunkIndex = tuple[int, ...]


def batches(
    shape: Sequence[int], block: Sequence[int], itemsize: int, limit: int = BATCH_BYTES
) -> list[list[tuple[ChunkIndex, Block]]]:
    """Group the chunk grid of ``shape`` into runs of consecutive chunks of about ``limit`` raw bytes."""
    per_chunk = max(1, int(np.prod(block, dtype=np.int64)) * itemsize)
    size = max(1, limit // per_chunk)
    grid = block_grid(tuple(shape), tuple(block))
    return [grid[i : i + size] for i in range(0, len(grid), size)]


def run_batches(client: Client, func: Any, items: Iterable[Any], *args: Any, window: int | None = None) -> Iterator[Any]:
    """Submit ``func(item, *args)`` for each item with a bounded number in flight; yield results as they finish.

    The window (default: 2 tasks per worker thread) bounds the memory held by results not yet consumed.
    """
    from distributed import as_completed

    threads = sum(client.nthreads().values()) or 1
    window = window or 2 * threads
    pending = iter(items)
    futures = [client.submit(func, item, *args, pure=False) for item in _take(pending, window)]
    queue = as_completed(futures)
    for future in queue:
        result = future.result()
        future.release()
        for item in _take(pending, 1):
            queue.add(client.submit(func, item, *args, pure=False))
        yield result


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out
