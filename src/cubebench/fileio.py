"""Files on disk: durability (fsync, background flushes), page-cache state, sizes and removal.

Every storage path and the runner, convert and the sufficiency study use these, so that "written" means the
same everywhere (flushed and fsynced inside the timed write) and a removal frees the space also when a failed
writer still holds a file open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

__all__ = [
    "WritebackAhead",
    "drop_page_cache",
    "fsync_path",
    "fsync_tree",
    "fsync_written",
    "hdf5_for_writing",
    "remove",
    "stored_bytes",
    "sync_soon",
    "wait_synced",
]


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync one file or folder (a folder's fsync makes the entries created in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(target: Path) -> None:
    """fsync every file under ``target`` (or ``target`` itself), so write time includes reaching the disk."""
    paths = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    for path in paths:
        fsync_path(path)
    if target.is_dir():
        fsync_path(target)


def fsync_written(
    files: Iterable[str], folders: Iterable[str], root: str, run: Callable[..., Iterable[Any]] = map
) -> None:
    """Make new ``files`` durable, then the folders that got new entries (``folders``, the files' own, and every
    folder between them and ``root``), deepest level first, each level together through ``run`` (``map``, or a
    thread pool's ``map``: single-frame chunks make a folder per frame, and one by one their fsyncs took longer
    than the files').

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "a", "b"))
    >>> path = os.path.join(root, "a", "b", "c")
    >>> open(path, "wb").close()
    >>> fsync_written([path], [], root)
    """
    files = list(files)
    list(run(fsync_path, files))
    pending = set(folders) | {os.path.dirname(f) for f in files}
    for folder in list(pending):
        while len(folder) > len(root):
            folder = os.path.dirname(folder)
            pending.add(folder)
    levels: dict[int, list[str]] = {}
    for folder in pending:
        levels.setdefault(folder.count(os.sep), []).append(folder)
    for depth in sorted(levels, reverse=True):
        list(run(fsync_path, levels[depth]))


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
def hdf5_for_writing(target: Path, **options: Any) -> Iterator[Any]:
    """``h5py.File(target, "w", **options)``, flushed at the end of the block, that closes cleanly even after a
    failed write.

    HDF5 cannot close a file whose writes failed (a full disk): closing flushes the same dirty data again, fails
    again, and leaves the file open inside the library, which keeps its disk space and then crashes the process
    at exit (a segfault in libhdf5; with thread workers, the whole ``cubebench run``). So after any failure in the
    block (or in its final flush) the file's descriptor is pointed at ``/dev/null`` first: the closing flush then
    succeeds into nothing, the space is freed, and the caller removes the half-written file.
    """
    import h5py

    f = h5py.File(target, "w", **options)
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


def remove(target: Path) -> None:
    """Delete the file or folder ``target``, truncating its files first.

    A writer that failed (a full disk) may still hold them open, and an open file's space is freed only by
    truncation, not by unlinking. A missing ``target`` is not an error.
    """
    files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    for path in files:
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
