"""The interface every storage backend implements, and helpers they share.

A backend writes a staged cube with one codec and one chunk shape into a target path, and reads it back
returning one hash (XXH3-64) per storage chunk, so that the runner can verify the round trip out-of-core. Work is
spread over a ``distributed.Client`` in batches of chunks (:mod:`cubebench.parallel`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.codecs import ChunkEncoder, CodecSpec, get_codec, stores_raw
from cubebench.patterns import PatternResult, Selection, selection

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from distributed import Client

    from cubebench.cube import StagedCube

ChunkIndex = tuple[int, ...]


@dataclass(frozen=True)
class WriteSettings:
    """Backend options that change what is stored, recorded with every result."""

    write_empty_chunks: bool = True
    shards: bool = False


@dataclass
class ReadBack:
    """What a full read returned: one hash per storage chunk, keyed by chunk index."""

    checksums: dict[ChunkIndex, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PatternRead:
    """One timed access-pattern read: seconds, the pattern's checksum (see :mod:`cubebench.patterns`), the image."""

    pattern: str
    seconds: float
    checksum: int
    image: np.ndarray | None = None


class Backend(ABC):
    """A storage path for a cube: write it with a codec and chunk shape, read it all back."""

    #: Registry id, e.g. ``"hdf5"``.
    name: str = ""
    #: Suffix of the target path (``".h5"``, ``".zarr"``).
    suffix: str = ""
    #: Whether the work spreads over all worker threads (False: one process does it all).
    parallel: bool = True
    #: Whether the chunk shape changes what is stored (False: it only groups tasks; measured under one chunking).
    chunked: bool = True
    #: Whether a write reads the staged cube one :meth:`storage_block` at a time (then the runner stages a
    #: chunk-major layout for it, see :func:`cubebench.staging.stage_layout`).
    reads_blocks: bool = False
    #: Whether the ``shards`` setting applies (Zarr: each storage block is one shard of single-frame chunks).
    shardable: bool = False
    #: Wall seconds each stored chunk (or shard) adds to a cell's write and read beyond its bytes, on two
    #: workers: a file or an index entry, a library call, an fsync. For the estimates only (:mod:`cubebench.estimate`);
    #: measured from the 8 GiB run in README (single-frame against balanced chunks, blosc-zstd, 65 536 chunks).
    chunk_seconds: float = 0.0

    @abstractmethod
    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Raise :class:`~cubebench.errors.CodecUnavailableError` (with the reason) if ``codec`` cannot run here."""

    @abstractmethod
    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        settings: WriteSettings,
    ) -> None:
        """Write the whole staged cube to ``target`` and make it durable (flush and fsync)."""

    @abstractmethod
    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Read every stored chunk back into memory, decoded, and return its hash."""

    def storage_block(self, chunks: tuple[int, ...], settings: WriteSettings) -> tuple[int, ...]:
        """The unit a task writes and a checksum covers (a chunk, or a shard when sharding)."""
        return chunks

    def read_pattern(
        self, client: Client, target: Path, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternRead:
        """Read one access pattern (``frame``, ``region``, ``virtual_detector``) through the storage, timed.

        Only the stored chunks overlapping the selection are read and decoded (as the format allows); the time
        covers opening the target, reading, decoding, the per-frame hash and the disk sum.
        """
        start = time.perf_counter()
        result = self.pattern_result(client, target, selection(pattern, self.stored_shape(target)), chunks, settings)
        seconds = time.perf_counter() - start
        return PatternRead(pattern, seconds, result.checksum, result.image)

    def stored_shape(self, target: Path) -> tuple[int, ...]:
        """The cube shape stored in ``target`` (read from its metadata)."""
        raise NotImplementedError(f"backend {self.name!r} does not read access patterns")

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Read ``sel`` from ``target`` and reduce it (:func:`cubebench.patterns.reduce_tile` / ``combine``)."""
        raise NotImplementedError(f"backend {self.name!r} does not read access patterns")


@lru_cache(maxsize=64)
def encoder_for(codec_id: str, dtype: str, zarr: bool = False) -> ChunkEncoder:
    """The codec's chunk encoder, cached per worker process: HDF5's chunk bytes, or with ``zarr`` Zarr's."""
    spec = get_codec(codec_id)
    return spec.zarr_encoder(np.dtype(dtype)) if zarr else spec.encoder(np.dtype(dtype))


def padded(data: np.ndarray, chunks: tuple[int, ...]) -> np.ndarray:
    """``data`` zero-padded to the full chunk shape (HDF5 stores edge chunks at full size)."""
    if data.shape == tuple(chunks):
        return data
    out = np.zeros(chunks, dtype=data.dtype)
    out[tuple(slice(0, s) for s in data.shape)] = data
    return out


#: Where a chunk's stored bytes are: ``(offset, size, HDF5 filter mask)`` in a file, or None for a chunk never
#: written (it reads as the fill value, 0).
Location = tuple[int, int, int] | None


def stored_buffer(locations: Iterable[Location]) -> memoryview:
    """One buffer for the stored bytes of a task's chunks, as large as the largest of them.

    A fresh ``bytes`` per chunk (``os.pread``) costs its page faults again: measured here with two threads reading,
    decoding and hashing 16 MiB blosc-lz4 chunks, 5.5-6.1 GB/s that way against 7.1 GB/s into reused memory. It
    lives as long as the task, so nothing stays held between passes.
    """
    largest = max((location[1] for location in locations if location is not None), default=0)
    return np.empty(largest, dtype=np.uint8).data


def read_stored_chunk(
    fd: int,
    path: str,
    index: ChunkIndex,
    location: Location,
    encoder: ChunkEncoder,
    out: np.ndarray,
    stored: memoryview,
) -> None:
    """Read one stored chunk at ``location`` of the open file ``fd`` and decode it into ``out``.

    The stored bytes go into ``stored`` (see :func:`stored_buffer`); a chunk stored without a filter goes
    straight into ``out``. A chunk never written is HDF5's fill value (0).
    """
    if location is None:
        out[...] = 0
        return
    offset, size, mask = location
    if mask:
        raise OSError(f"chunk {index} of {path} was stored with filter mask {mask}")
    raw = stores_raw(encoder) and size == out.nbytes
    target = out.reshape(-1).view(np.uint8).data if raw else stored[:size]
    read_exactly(fd, path, index, target, offset)
    if not raw:
        encoder.decode(target, out)


def read_exactly(fd: int, path: str, index: ChunkIndex, target: memoryview, offset: int) -> None:
    """Fill ``target`` from the open file ``fd`` at ``offset``; a short read is an error naming chunk and file."""
    got = os.preadv(fd, [target], offset)
    if got != len(target):
        raise OSError(f"chunk {index} of {path}: read {got} of its {len(target)} stored bytes (the file is truncated)")


def fsync_tree(target: Path) -> None:
    """fsync every file under ``target`` (or ``target`` itself), so write time includes reaching the disk."""
    paths = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if target.is_dir():
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: Disk flushes one process runs at once in the background (:func:`sync_soon`, :class:`WritebackAhead`): they
#: wait on the disk, not the CPU, and concurrent ones share the filesystem's journal commits.
SYNC_THREADS = 4
_sync_pool: Any = None
_sync_pending: dict[str, list[Any]] = {}
_sync_lock = threading.Lock()


def _flusher() -> Any:
    """This process's thread pool for background flushes (started on first use, kept for the process)."""
    global _sync_pool
    from concurrent.futures import ThreadPoolExecutor

    with _sync_lock:
        if _sync_pool is None:
            _sync_pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="cubebench-fsync")
        return _sync_pool


def sync_soon(key: str, paths: Iterable[Path]) -> None:
    """fsync ``paths`` in this process's background threads, so the worker goes on encoding meanwhile.

    Files written by many workers (a Zarr store's chunk files) are made durable where they were written, while
    the write goes on; :func:`wait_synced` with the same ``key`` (on every worker, after the write) waits for them,
    so the timed write still ends only when every file is on disk.
    """
    futures = [_flusher().submit(fsync_tree, path) for path in paths]
    with _sync_lock:
        _sync_pending.setdefault(key, []).extend(futures)


async def wait_synced(key: str) -> int:
    """Wait for this process's fsyncs started under ``key``; raise the first one's error. Returns their number.

    A coroutine, so that ``client.run(wait_synced, key)`` waits inside each worker's event loop without blocking it.
    """
    import asyncio

    with _sync_lock:
        futures = _sync_pending.pop(key, [])
    for future in futures:
        await asyncio.wrap_future(future)
    return len(futures)


@contextlib.contextmanager
def hdf5_for_writing(target: Path) -> Iterator[Any]:
    """``h5py.File(target, "w")``, flushed at the end of the block, that closes cleanly even after a failed write.

    HDF5 cannot close a file whose writes failed (a full disk): closing flushes the same dirty data again, fails
    again, and leaves the file open inside the library, which keeps its disk space and then crashes the process
    at exit (a segfault in libhdf5; with thread workers, the whole ``cubebench run``). So after any failure in the
    block (or in its final flush) the file's descriptor is pointed at ``/dev/null`` first: the closing flush then
    succeeds into nothing, the space is freed, and the caller removes the half-written file.
    """
    import h5py

    f = h5py.File(target, "w")
    try:
        yield f
        f.flush()
    except BaseException:
        _point_at_devnull(f)
        with contextlib.suppress(Exception):  # the write's own error is the one to report
            f.close()
        raise
    f.close()


def _point_at_devnull(f: Any) -> None:
    """Let HDF5 flush and close ``f`` into ``/dev/null`` (its sec2 driver writes through one file descriptor)."""
    with contextlib.suppress(Exception):  # another driver, or the file already closed: nothing to redirect
        fd = int(f.id.get_vfd_handle())
        sink = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(sink, fd)
        finally:
            os.close(sink)


#: Bytes a single writer stores between two background flushes (:class:`WritebackAhead`).
WRITEBACK_STEP = 64 * 2**20


class WritebackAhead:
    """Flush a file to disk from a helper thread while its single writer is still appending to it.

    Every :data:`WRITEBACK_STEP` bytes stored (see :meth:`wrote`), an ``fdatasync`` starts in the background
    unless the previous one still runs, so the disk works while the workers encode and the final fsync (inside
    the timed write, as always) waits for the tail only. An error of a flush (ENOSPC, EIO) is raised by
    :meth:`close`.
    """

    def __init__(self, path: Path, step: int = WRITEBACK_STEP) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.step = step
        self.since = 0
        self.pending: Any = None

    def wrote(self, nbytes: int) -> None:
        """Count ``nbytes`` just stored; start a flush when a step is full and none is running."""
        self.since += nbytes
        if self.since >= self.step and (self.pending is None or self.pending.done()):
            self._check()
            self.pending = _flusher().submit(os.fdatasync, self.fd)
            self.since = 0

    def _check(self) -> None:
        if self.pending is not None:
            self.pending.result()

    def close(self) -> None:
        """Wait for the running flush and release the descriptor; raise a flush's error."""
        try:
            self._check()  # waits for the running flush, which uses the descriptor
        finally:
            os.close(self.fd)

    def __enter__(self) -> WritebackAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drop_page_cache(target: Path) -> None:
    """Ask the kernel to drop ``target``'s cached pages (``posix_fadvise(DONTNEED)``; no root needed)."""
    paths = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def stored_bytes(target: Path) -> int:
    """Bytes on disk under ``target``: every file, metadata included."""
    if target.is_file():
        return target.stat().st_size
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
