"""Spread work over a Dask cluster in batches of neighbouring chunks, with a bounded number in flight.

Each task handles a *batch* of chunks (:data:`BATCH_BYTES` of raw data, :data:`STREAM_BATCH_BYTES` for work
that holds one chunk at a time, :data:`SCAN_BATCH_BYTES` for full passes that return only hashes), so that
single-frame chunkings (65536 chunks in an 8 GiB cube) do not drown in per-task overhead, and at most a small
window of tasks is in flight, so memory stays bounded by chunk (or batch) size x workers.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import Block, block_grid

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from distributed import Client

#: Raw bytes of source data handled by one task.
BATCH_BYTES = 32 * 2**20
#: Raw bytes per task for work that holds one chunk at a time whatever the batch (reads and checksums that hash
#: each chunk as it is decoded, Zarr writes that store each chunk as it is encoded, staging copies) or returns
#: only encoded bytes (``hdf5_direct`` writes). Each task costs the main process (client and scheduler) a few ms
#: of CPU, which it takes from the workers on a small machine: measured per GiB of blosc-lz4 with 32 MiB tasks,
#: 0.5 core-s in the main process against 0.95 in the workers; with 128 MiB tasks 0.27, and writes 1.3x faster.
STREAM_BATCH_BYTES = 4 * BATCH_BYTES
#: Raw bytes per task for full passes whose tasks return only hashes or nothing (reads, source checksums, Zarr
#: writes, staging copies), which :func:`scan_batches` cuts into as few tasks as keep every worker thread busy.
#: The task machinery costs about 5 ms of CPU per task here, taken from the workers on a small machine, and the
#: first chunk of each task runs slower beside it: reading 1 GiB of blosc-lz4 on 2 thread workers, tasks of
#: 128 MiB gave 4.2 GB/s, of 256 MiB 4.9, of 512 MiB 5.0.
SCAN_BATCH_BYTES = 4 * STREAM_BATCH_BYTES
#: Fewest batches a cube is cut into (when it has that many chunks).
MIN_BATCHES = 8
#: Fewest batches per worker thread for :func:`scan_batches`: one to run and one queued behind it.
SCAN_BATCHES_PER_THREAD = 2

ChunkIndex = tuple[int, ...]

#: Callbacks watching finished tasks in this process (see :func:`observe`).
_OBSERVERS: list[Callable[[Any], None]] = []


@contextlib.contextmanager
def observe(callback: Callable[[Any], None]) -> Iterator[None]:
    """Within the block, call ``callback(item)`` here each time a task of :func:`run_batches` finishes.

    For progress bars: ``item`` is the task's work item (for the backends, a list of ``(index, block, ...)``).
    """
    _OBSERVERS.append(callback)
    try:
        yield
    finally:
        _OBSERVERS.remove(callback)


def _notify(item: Any) -> None:
    for callback in list(_OBSERVERS):
        callback(item)


def batches(
    shape: Sequence[int], block: Sequence[int], itemsize: int, limit: int = BATCH_BYTES, least: int = MIN_BATCHES
) -> list[list[tuple[ChunkIndex, Block]]]:
    """Group the chunk grid of ``shape`` into runs of consecutive chunks of about ``limit`` raw bytes.

    Small cubes are cut into at least ``least`` batches (when they have that many chunks), so that every worker
    gets work.
    """
    per_chunk = max(1, int(np.prod(block, dtype=np.int64)) * itemsize)
    grid = block_grid(tuple(shape), tuple(block))
    size = max(1, min(limit // per_chunk, -(-len(grid) // max(1, least))))
    return [grid[i : i + size] for i in range(0, len(grid), size)]


def worker_threads(client: Client) -> int:
    """Threads of all the cluster's workers (at least 1)."""
    return sum(client.nthreads().values()) or 1


def scan_batches(
    client: Client, shape: Sequence[int], block: Sequence[int], itemsize: int
) -> list[list[tuple[ChunkIndex, Block]]]:
    """:func:`batches` for a full pass whose tasks return little: as few tasks as keep ``client``'s threads busy.

    Up to :data:`SCAN_BATCH_BYTES` per task, and at least :data:`SCAN_BATCHES_PER_THREAD` tasks per worker thread
    (when the cube has that many chunks).
    """
    return batches(shape, block, itemsize, SCAN_BATCH_BYTES, SCAN_BATCHES_PER_THREAD * worker_threads(client))


def run_batches(
    client: Client, func: Any, items: Iterable[Any], *args: Any, window: int | None = None
) -> Iterator[Any]:
    """Submit ``func(item, *args)`` for each item with a bounded number in flight; yield results as they finish.

    The first window of tasks is submitted at once, before the first result is asked for, so the workers start
    while the caller still prepares (creates the file the results go to). The window (default: 2 tasks per worker
    thread) bounds the memory held by results not yet consumed.
    """
    from distributed import as_completed

    window = window or 2 * worker_threads(client)
    pending = iter(items)
    submitted: dict[Any, Any] = {}
    inflight: dict[Any, Any] = {}

    def track(item: Any, future: Any) -> Any:
        submitted[future.key] = item
        inflight[future.key] = future
        return future

    first = _take(pending, window)
    queue = as_completed([track(i, f) for i, f in zip(first, submit_all(client, func, first, args), strict=True)])

    def drain() -> Iterator[Any]:
        for future in queue:
            del inflight[future.key]
            result = _result(future, inflight.values())
            done = submitted.pop(future.key)
            future.release()
            for item in _take(pending, 1):
                queue.add(track(item, client.submit(func, item, *args, pure=False)))
            _notify(done)
            yield result

    return drain()


def submit_all(client: Client, func: Any, items: list[Any], args: tuple[Any, ...]) -> list[Any]:
    """Submit ``func(item, *args)`` for every item in one message to the scheduler; return the futures in order.

    One ``client.map`` instead of a ``client.submit`` per item: the scheduler takes the window in one graph update
    and hands it out at once. Measured here, four trivial tasks on two workers: the first started 2.1 ms after
    the call against 10.3 ms (thread workers) and 3.5 against 5.4 ms (processes); all four were done after 8.5
    against 16.4 ms and 21.6 against 26.2 ms (medians of 30). Each pass of a cell starts this way.
    """
    if not items:
        return []
    from dask.utils import funcname

    keys = [f"{funcname(func)}-{uuid.uuid4()}" for _ in items]  # named as client.submit names the later ones
    futures: list[Any] = client.map(_call, items, key=keys, task=func, task_args=args)
    return futures


def _call(item: Any, task: Any, task_args: tuple[Any, ...]) -> Any:
    """``task(item, *task_args)``: what :func:`submit_all` maps (``client.map`` passes constants as keywords)."""
    return task(item, *task_args)


def run_ordered(
    client: Client, func: Any, items: Iterable[Any], *args: Any, window: int | None = None
) -> Iterator[Any]:
    """Like :func:`run_batches`, but yield results in the order of ``items``, for writers of a sequential stream.

    At most ``window`` tasks (default: 2 per worker thread) are submitted ahead of the next result to yield, so
    results held while waiting for an earlier one stay bounded too.
    """
    from collections import deque

    window = window or 2 * worker_threads(client)
    pending = iter(items)
    first = _take(pending, window)
    queue = deque(zip(first, submit_all(client, func, first, args), strict=True))

    def drain() -> Iterator[Any]:
        while queue:
            done, future = queue.popleft()
            result = _result(future, [f for _, f in queue])
            future.release()
            for item in _take(pending, 1):
                queue.append((item, client.submit(func, item, *args, pure=False)))
            _notify(done)
            yield result

    return drain()


#: Seconds to wait for the tasks still running when one task of a batch run fails.
SETTLE_SECONDS = 120.0


def _result(future: Any, others: Iterable[Any]) -> Any:
    """``future.result()``; if it raises, first let ``others`` (the tasks still in flight) finish.

    A failed cell's files are removed right after the error: no task of it may still be writing then (a Zarr
    store would be re-created in scratch by a straggler).
    """
    try:
        return future.result()
    except Exception:
        from distributed import wait

        with contextlib.suppress(Exception):
            wait(list(others), timeout=SETTLE_SECONDS)
        raise


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out
