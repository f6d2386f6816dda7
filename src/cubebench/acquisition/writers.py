"""Paced writers: completed chunks are encoded on the cluster and stored as they come; durability is recorded.

- ``hdf5_direct``: workers encode each task's chunks with the catalog encoder (the bytes HDF5's filter would
  store); one writer thread in this process appends them with ``write_direct_chunk`` into a dataset created at
  the scan's final shape, and commits durability in batches: ``flush`` + ``fsync`` whenever no encoded task is
  waiting, and at least every ``sync_interval`` seconds while they keep coming. A chunk is durable at the end of
  the first commit after it was written.
- ``zarr_direct``: workers encode each chunk and write its file at the key the store's metadata names (``events``:
  a group per chunk, :mod:`~cubebench.acquisition.zarr_events`); then the
  task fsyncs all its files at once from :data:`SYNC_THREADS` threads (concurrent fsyncs share the filesystem's
  journal commits: one after another, single-frame files capped a run here at about 190 files/s on two
  workers), and then the new folders; a chunk is durable when this process learns that its task ended.

Both create the file or store (and make it durable) before the clock starts. Times are ``time.perf_counter``
seconds of this process. A sink says what one batch of completed chunks costs (:meth:`Sink.job`: a function the
workers run, with its arguments) and what to do with its result (:meth:`Sink.accept`); how batches reach the
workers is the dispatch's business: a cluster task per batch (:meth:`Sink.submit`), or the long-running tasks of
:mod:`cubebench.acquisition.stream`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from cubebench.acquisition.forms import create_events_file, encode_dense, encode_events, store_events
from cubebench.acquisition.zarr_events import create_events_store, write_events
from cubebench.backends.base import encoder_for, padded
from cubebench.backends.hdf5_filter import create_emd_dataset
from cubebench.backends.zarr_ import create_store
from cubebench.codecs import stores_raw
from cubebench.fileio import fsync_tree, fsync_written, hdf5_for_writing

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from distributed import Client

    from cubebench.codecs import CodecSpec
    from cubebench.cube import Block, StagedCube
    from cubebench.sufficiency.representations import Layout

ChunkIndex = tuple[int, ...]
Items = list[tuple[ChunkIndex, "Block"]]
#: A batch job: ``function(batch, *args)``, its arguments, and how a chunk (index, block) becomes a batch item.
Job: TypeAlias = "tuple[Callable[..., Any], tuple[Any, ...], Callable[[ChunkIndex, Block], Any]]"

#: Threads per worker process that fsync a task's chunk files together.
SYNC_THREADS = 8
_pool: Any = None
_pool_lock = threading.Lock()


def _sync_pool() -> Any:
    """This process's fsync threads (started on first use)."""
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="cubebench-acquire-fsync")
        return _pool


class Sink:
    """Where completed chunks go: :meth:`submit` hands a task on, :meth:`close` waits until all are durable."""

    def __init__(self) -> None:
        #: Chunk index -> the time it became durable.
        self.durable: dict[ChunkIndex, float] = {}
        #: Seconds spent committing durability (fsync) in this process, and the number of commits.
        self.sync_seconds = 0.0
        self.commits = 0
        self.error: BaseException | None = None
        self.client: Any = None

    def job(self) -> Job:
        """What a worker runs for a batch: ``function(batch, *args)``, and how a chunk becomes an item of the batch."""
        raise NotImplementedError

    def accept(self, indices: list[ChunkIndex], result: Any) -> None:
        """A batch of ``indices`` ran on a worker and returned ``result``."""
        raise NotImplementedError

    def submit(self, items: Items) -> None:
        """Encode and store ``items`` (chunk index, block) as one cluster task; return at once."""
        function, args, item = self.job()
        future = self.client.submit(function, [item(*i) for i in items], *args, pure=False)
        self.submitted(future, [index for index, _ in items])

    def submitted(self, future: Any, indices: list[ChunkIndex]) -> None:
        """A cluster task of ``indices`` was submitted: :meth:`accept` its result once it ends."""
        raise NotImplementedError

    def close(self) -> None:
        """Wait until every submitted chunk is durable; raise the first failure."""
        raise NotImplementedError


class HDF5Sink(Sink):
    """Workers encode; one writer thread appends direct chunk writes and commits them in batches."""

    def __init__(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        sync_interval: float,
        shape: tuple[int, ...],
        layout: Layout | None = None,
    ) -> None:
        super().__init__()
        self.client, self.staged, self.codec, self.chunks = client, staged, codec, chunks
        self.target, self.sync_interval, self.layout = target, sync_interval, layout
        self._stack = contextlib.ExitStack()
        self._file = self._stack.enter_context(hdf5_for_writing(target))
        self._ds: Any = None
        self._events: Any = None
        if layout is None:
            self._ds = create_emd_dataset(self._file, shape, np.dtype(staged.dtype), chunks, codec)
        elif layout.kind == "events":
            self._events = create_events_file(self._file, shape, layout, codec.id)
        else:
            stored = np.dtype(layout.stored_dtype)
            self._ds = create_emd_dataset(self._file, layout.stored_shape, stored, layout.stored_chunks, codec)
        self._fd = int(self._file.id.get_vfd_handle())
        self._commit()  # the empty dataset is on disk before the clock starts
        self.sync_seconds, self.commits = 0.0, 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._write, name="cubebench-hdf5-writer", daemon=True)
        self._thread.start()

    def job(self) -> Job:
        """Workers encode (or transform and encode); this process's writer thread stores the results in order."""
        if self.layout is None:
            return _encode, (self.staged, self.codec.id, self.chunks), _as_item
        if self._events is not None:
            return encode_events, (self.staged, self.codec.id, self.layout), _as_item
        return encode_dense, (self.staged, self.codec.id, self.layout, False), _as_item

    def accept(self, indices: list[ChunkIndex], result: Any) -> None:
        """Hand an encoded batch to the writer thread."""
        self._queue.put(result)

    def submitted(self, future: Any, indices: list[ChunkIndex]) -> None:
        """The writer thread gathers the task's result in submission (scan) order."""
        self._queue.put(future)

    def _commit(self) -> None:
        start = time.perf_counter()
        self._file.flush()
        os.fsync(self._fd)
        self.sync_seconds += time.perf_counter() - start
        self.commits += 1

    def _write(self) -> None:
        pending: list[ChunkIndex] = []
        last = time.perf_counter()
        try:
            stop = False
            while not stop:
                waiting = [self._queue.get()]
                while not self._queue.empty():  # everything waiting; task results gathered in one round trip
                    waiting.append(self._queue.get_nowait())
                stop = waiting[-1] is None
                for result in self._results([w for w in waiting if w is not None]):
                    for item in result:
                        if self._events is not None:
                            pending.append(store_events(self._events, item, self.codec.id))
                            continue
                        index, offset, data = item
                        self._ds.id.write_direct_chunk(offset, data)
                        pending.append(index)
                if pending and (self._queue.empty() or time.perf_counter() - last >= self.sync_interval):
                    self._commit()
                    last = time.perf_counter()
                    self.durable.update(dict.fromkeys(pending, last))
                    pending.clear()
            if pending:
                self._commit()
                self.durable.update(dict.fromkeys(pending, time.perf_counter()))
        except BaseException as exc:  # reported by close(), in the caller's thread
            self.error = exc

    def _results(self, waiting: list[Any]) -> list[Any]:
        """The batches' results in order: task futures gathered (in one call), streamed results as they are."""
        from distributed import Future

        futures = [w for w in waiting if isinstance(w, Future)]
        gathered = iter(self.client.gather(futures) if futures else [])
        return [next(gathered) if isinstance(w, Future) else w for w in waiting]

    def close(self) -> None:
        """Stop the writer after the last task, close the file and fsync it."""
        self._queue.put(None)
        self._thread.join()
        self._stack.close()
        fsync_tree(self.target)
        if self.error is not None:
            raise self.error


class ZarrSink(Sink):
    """Workers encode, write and fsync each chunk file; durability is noted when a task's end is known here."""

    def __init__(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        shape: tuple[int, ...],
        layout: Layout | None = None,
    ) -> None:
        super().__init__()
        self.client, self.staged, self.codec, self.chunks, self.target = client, staged, codec, chunks, target
        self.layout = layout
        self._events = layout is not None and layout.kind == "events"
        if layout is None:
            self._array = create_store(target, shape, np.dtype(staged.dtype), codec, chunks, None)
        elif self._events:
            self._array = create_events_store(target, shape, chunks, layout, codec)  # frame_counts: keys by scan
        else:
            stored = np.dtype(layout.stored_dtype)
            self._array = create_store(target, layout.stored_shape, stored, codec, layout.stored_chunks, None)
        fsync_tree(target)
        self._futures: list[Any] = []
        self._lock = threading.Lock()

    def job(self) -> Job:
        """Workers encode, write and fsync; each chunk goes with the key zarr stores it under."""
        if self._events:
            function: Callable[..., Any] = write_events
            key = self._events_key
        else:
            function, key = _write_files, self._array.metadata.encode_chunk_key
        args = (self.staged, str(self.target), self.codec.id, self.chunks, self.layout)
        return function, args, lambda index, block: (index, block, key(index))

    def _events_key(self, index: ChunkIndex) -> str:
        """An events chunk's key: its scan block's ``frame_counts`` chunk."""
        return str(self._array.metadata.encode_chunk_key(index[:2]))

    def accept(self, indices: list[ChunkIndex], result: Any) -> None:
        """The batch's files are durable: note the time."""
        now = time.perf_counter()
        with self._lock:
            self.durable.update(dict.fromkeys(indices, now))

    def submitted(self, future: Any, indices: list[ChunkIndex]) -> None:
        """Note durability when the task's end is known here (or its failure)."""

        def noted(done: Any) -> None:
            if done.status == "finished":
                self.accept(indices, None)
            else:
                with self._lock:
                    if self.error is None:
                        self.error = done.exception()

        future.add_done_callback(noted)
        self._futures.append(future)

    def close(self) -> None:
        """Wait for every task (their callbacks included) and raise the first failure."""
        from distributed import wait

        wait(self._futures)
        deadline = time.perf_counter() + 30
        expected = sum(1 for f in self._futures if f.status == "finished")
        while self.error is None and time.perf_counter() < deadline:
            with self._lock:
                noted = len(self.durable)
            if noted >= expected and all(f.done() for f in self._futures):
                break
            time.sleep(0.001)
        fsync_tree(self.target / "zarr.json")
        if self.error is not None:
            raise self.error
        failed = [f for f in self._futures if f.status != "finished"]
        if failed:
            raise RuntimeError(f"{len(failed)} write tasks did not finish: {failed[0].exception()}")


def _as_item(index: ChunkIndex, block: Block) -> tuple[ChunkIndex, Block]:
    """A chunk as the encode functions take it."""
    return index, block


def _encode(items: Items, staged: StagedCube, codec_id: str, chunks: tuple[int, ...]) -> list[Any]:
    """A task's chunks encoded as HDF5 stores them: (index, chunk offset, uint8 array) each."""
    encoder = encoder_for(codec_id, staged.dtype)
    blocks = [block for _, block in items]
    return [
        (index, tuple(b.start for b in block), np.frombuffer(encoder.encode(padded(data, chunks)), dtype=np.uint8))
        for (index, block), data in zip(items, staged.iter_blocks(blocks), strict=True)
    ]


def _write_files(
    work: list[tuple[ChunkIndex, Block, str]],
    staged: StagedCube,
    root: str,
    codec_id: str,
    chunks: tuple[int, ...],
    layout: Layout | None = None,
) -> int:
    """Encode each chunk (transformed by ``layout`` if given), write its file; fsync the files together, then their
    folders; the number of files."""
    if layout is not None:
        chunks = layout.stored_chunks
    encoder = encoder_for(codec_id, layout.stored_dtype if layout else staged.dtype, zarr=True)
    folders: set[str] = set()
    paths: list[str] = []
    blocks = [block for _, block, _ in work]
    for (_, _, key), data in zip(work, staged.iter_blocks(blocks), strict=True):
        full = padded(data if layout is None else layout.transform(data)["data"], chunks)
        payload: Any = full if stores_raw(encoder) else encoder.encode(full)
        path = os.path.join(root, key)
        folder = os.path.dirname(path)
        if folder not in folders:
            os.makedirs(folder, exist_ok=True)
            folders.add(folder)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(payload).cast("B")
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        paths.append(path)
    fsync_written(paths, folders, root, _sync_pool().map)
    return len(work)
