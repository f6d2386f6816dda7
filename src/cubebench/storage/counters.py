"""Requests, bytes and objects a cell asks of its storage, counted the same way for local folders and S3.

What a request costs is what differs between storages (a local write is a syscall, an S3 PUT a round trip and a
fee), so cubebench counts requests rather than guessing: :class:`RequestCounter` is updated by the client helpers
(:mod:`cubebench.storage.client`) and by :class:`CountingStore`, a zarr store wrapper that counts whatever zarr asks
of the store it wraps, a ``LocalStore`` or an ``ObjectStore`` alike. :func:`folder_usage` gives a local folder's
files and bytes, the local face of :func:`cubebench.storage.client.list_keys`. Counts are plain numbers
(:class:`RequestCounts`), so each Dask task can return its own and the runner add them up.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Self

from zarr.abc.store import Store
from zarr.storage import WrapperStore

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterable
    from pathlib import Path

    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot of counted requests; adds with ``+`` (tasks' counts summed into a cell's)."""

    gets: int = 0
    puts: int = 0
    lists: int = 0
    deletes: int = 0
    heads: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    objects_written: int = 0

    @property
    def requests(self) -> int:
        """All requests together (what a per-request latency model charges)."""
        return self.gets + self.puts + self.lists + self.deletes + self.heads

    def __add__(self, other: RequestCounts) -> RequestCounts:
        return RequestCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, int]:
        """Plain ints for a results log line."""
        return asdict(self)


class RequestCounter:
    """Thread-safe running counts: helpers call :meth:`add`; :meth:`snapshot` reads them all at one instant.

    >>> c = RequestCounter()
    >>> c.add(puts=1, bytes_out=10, objects_written=1)
    >>> c.add(gets=2, bytes_in=6)
    >>> c.snapshot().requests
    3
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = RequestCounts()

    def add(self, **counts: int) -> None:
        """Add to the named counts (``gets``, ``puts``, ``lists``, ``deletes``, ``heads``, ``bytes_in``, ...)."""
        delta = RequestCounts(**counts)
        with self._lock:
            self._counts = self._counts + delta

    def snapshot(self) -> RequestCounts:
        """The counts so far."""
        with self._lock:
            return self._counts

    def reset(self) -> RequestCounts:
        """Return the counts so far and start again from zero (one cell's counts, then the next's)."""
        with self._lock:
            counts, self._counts = self._counts, RequestCounts()
        return counts


def folder_usage(folder: Path) -> RequestCounts:
    """Files and bytes under a local folder, as ``objects_written`` and ``bytes_out``: what a local cell stored.

    Counts regular files only (no folders, no symlinks followed), so it matches what an S3 listing of the same
    cell's keys would report.
    """
    files = nbytes = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            stat = os.lstat(os.path.join(dirpath, name))
            if stat.st_mode & 0o170000 == 0o100000:  # S_ISREG
                files += 1
                nbytes += stat.st_size
    return RequestCounts(objects_written=files, bytes_out=nbytes)


class CountingStore(WrapperStore[Store]):
    """A zarr store that counts every request zarr makes of the store it wraps into a :class:`RequestCounter`.

    Works the same around ``zarr.storage.LocalStore`` (a request = a file operation) and ``ObjectStore`` (a request
    = an HTTP request), which is what makes local and S3 rows comparable. A ranged read counts as one GET, as on S3.
    """

    def __init__(self, store: Store, counter: RequestCounter) -> None:
        super().__init__(store)
        self.counter = counter

    def _with_store(self, store: Store) -> Self:
        return type(self)(store, self.counter)

    def __repr__(self) -> str:
        return f"CountingStore({self._store!r})"

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        value = await self._store.get(key, prototype, byte_range)
        self.counter.add(gets=1, bytes_in=0 if value is None else len(value))
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        ranges = list(key_ranges)
        values = await self._store.get_partial_values(prototype, ranges)
        self.counter.add(gets=len(ranges), bytes_in=sum(len(v) for v in values if v is not None))
        return values

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def exists(self, key: str) -> bool:
        self.counter.add(heads=1)
        return await self._store.exists(key)

    async def set(self, key: str, value: Buffer) -> None:
        await self._store.set(key, value)
        self.counter.add(puts=1, bytes_out=len(value), objects_written=1)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        await self._store.set_if_not_exists(key, value)
        self.counter.add(puts=1, bytes_out=len(value), objects_written=1)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        for key, value in values:
            await self.set(key, value)

    async def delete(self, key: str) -> None:
        await self._store.delete(key)
        self.counter.add(deletes=1)

    async def delete_dir(self, prefix: str) -> None:
        keys = [key async for key in self.list_prefix(prefix)]
        for key in keys:
            await self.delete(key)

    def list(self) -> AsyncIterator[str]:
        self.counter.add(lists=1)
        return self._store.list()

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        self.counter.add(lists=1)
        return self._store.list_prefix(prefix)

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        self.counter.add(lists=1)
        return self._store.list_dir(prefix)
