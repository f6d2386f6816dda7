"""What every backend's S3 face shares: where a cell's objects go, a face's interface, fetching ahead.

A backend that runs on S3 has an :class:`S3Face` (registered in :data:`cubebench.backends.S3_FACES`) that writes
and reads the same stored layout as its local path, through cubebench's one S3 client
(:mod:`cubebench.storage.client`). Requests made anywhere (here, or in a Dask task) count into the counters named
by the target's ``tally`` (:mod:`cubebench.storage.tally`), which the runner gathers after each cell.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cubebench.backends.base import Location, PatternRead, ReadBack, WriteSettings
from cubebench.codecs import ChunkEncoder, stores_raw
from cubebench.storage.tally import tally as counter_named

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

    import numpy as np
    from distributed import Client

    from cubebench.codecs import CodecSpec
    from cubebench.cube import StagedCube
    from cubebench.patterns import PatternResult
    from cubebench.storage import RequestCounter, S3Storage

T = TypeVar("T")
R = TypeVar("R")

#: Requests a task keeps in flight while it decodes or encodes (parallel GETs and PUTs within a task).
FETCH_AHEAD = 4


@dataclass(frozen=True)
class S3Target:
    """Where one cell's store lives on S3: ``key`` (a Zarr prefix or an HDF5 object) under ``storage``'s prefix
    (the cell's own); ``local`` is a scratch path for a local copy (HDF5 is written there, then uploaded)."""

    storage: S3Storage
    key: str
    local: Path
    tally: str

    @property
    def counter(self) -> RequestCounter:
        """This process's counter for the cell's requests."""
        return counter_named(self.tally)

    @property
    def store_storage(self) -> S3Storage:
        """The storage rooted at the store itself (Zarr keys relative to it)."""
        return self.storage.under(self.key)


class S3Face(ABC):
    """A backend's path on S3: the same layout and codecs as on local disk, every chunk verified by the runner."""

    #: Why this face's requests are not counted by cubebench ('' when they are): a library with its own HTTP
    #: client. The cell then records its request counts as NaN, never a partial count.
    uncounted: str = ""

    @abstractmethod
    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: S3Target,
        settings: WriteSettings,
    ) -> dict[str, float]:
        """Write the whole staged cube to ``target``; return extra timings (e.g. ``upload_seconds``)."""

    @abstractmethod
    def read(self, client: Client, target: S3Target, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Read every stored chunk back, decoded, and return its hash."""

    @abstractmethod
    def stored_shape(self, target: S3Target) -> tuple[int, ...]:
        """The stored cube's shape, from the store's metadata."""

    @abstractmethod
    def pattern_result(
        self, client: Client, target: S3Target, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Read the access pattern ``pattern`` (its selection from the store's shape, read once with the rest of the
        metadata; only the chunks it overlaps, as the format allows) and reduce it."""

    def read_pattern(
        self, client: Client, target: S3Target, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternRead:
        """One timed access-pattern read, metadata included (as :meth:`Backend.read_pattern`)."""
        start = time.perf_counter()
        result = self.pattern_result(client, target, pattern, chunks, settings)
        return PatternRead(pattern, time.perf_counter() - start, result.checksum, result.image)


def fetched(fetch: Callable[[T], R], items: Iterable[T], ahead: int = FETCH_AHEAD) -> Iterator[tuple[T, R]]:
    """``(item, fetch(item))`` in order, with up to ``ahead`` fetches in flight on threads (GETs overlap decoding).

    Memory stays bounded: at most ``ahead`` fetched results wait for the caller.
    """
    with ThreadPoolExecutor(ahead) as pool:
        queue: deque[tuple[T, Any]] = deque()
        for item in items:
            queue.append((item, pool.submit(fetch, item)))
            if len(queue) >= ahead:
                head, future = queue.popleft()
                yield head, future.result()
        while queue:
            head, future = queue.popleft()
            yield head, future.result()


#: Adjacent chunks of one object are fetched by one ranged GET up to this many bytes, as kerchunk-style readers
#: merge ranges: one writer stores a task's chunks back to back, so a batch is often one request, not one a chunk.
COALESCE_BYTES = 8 * 2**20


def fetched_ranges(
    fetch: Callable[[int, int], bytes],
    locations: Sequence[Location],
    ahead: int = FETCH_AHEAD,
    limit: int = COALESCE_BYTES,
) -> Iterator[tuple[int, memoryview | None]]:
    """``(i, bytes of locations[i])`` for every location (None for a chunk never written), in file order, where
    ``fetch(start, length)`` is one ranged GET; adjacent ranges merge into one GET of at most ``limit`` bytes
    (:func:`fsspec.utils.merge_offset_ranges`), ``ahead`` GETs in flight.

    >>> blob = b"abcdefghijklmnopqrstuvwxyz" * 4
    >>> calls = []
    >>> def fetch(start, length):
    ...     calls.append((start, length))
    ...     return blob[start : start + length]
    >>> parts = dict(fetched_ranges(fetch, [(10, 5, 0), None, (0, 10, 0), (50, 2, 0)]))
    >>> [None if p is None else bytes(p) for _, p in sorted(parts.items())]
    [b'klmno', None, b'abcdefghij', b'yz']
    >>> sorted(calls)  # the two adjacent chunks in one GET
    [(0, 15), (50, 2)]
    """
    from fsspec.utils import merge_offset_ranges

    stored = sorted((loc[0], loc[0] + loc[1], i) for i, loc in enumerate(locations) if loc is not None)
    yield from ((i, None) for i, loc in enumerate(locations) if loc is None)
    if not stored:
        return
    merged = merge_offset_ranges(["o"] * len(stored), [s[0] for s in stored], [s[1] for s in stored], max_block=limit)
    spans = [(int(start), int(end or 0)) for start, end in zip(merged[1], merged[2], strict=True)]
    members: list[list[tuple[int, int, int]]] = [[] for _ in spans]
    span = 0
    for start, end, i in stored:
        while start >= spans[span][1]:
            span += 1
        members[span].append((start, end, i))

    def fetch_span(n: int) -> bytes:
        return fetch(spans[n][0], spans[n][1] - spans[n][0])

    for n, data in fetched(fetch_span, range(len(spans)), ahead):
        view = memoryview(data)
        for start, end, i in members[n]:
            yield i, view[start - spans[n][0] : end - spans[n][0]]


def overlapped(run: Callable[[T], object], items: Iterable[T], ahead: int = FETCH_AHEAD) -> None:
    """``run(item)`` for every item on threads, at most ``ahead`` in flight, the caller producing the next items
    meanwhile (PUTs overlap encoding); returns when all finished and raises the first error.

    Memory stays bounded: at most ``ahead`` produced items wait for their request.

    >>> done = []
    >>> overlapped(done.append, range(10), ahead=3)
    >>> sorted(done)
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    with ThreadPoolExecutor(ahead) as pool:
        pending: deque[Any] = deque()
        for item in items:
            pending.append(pool.submit(run, item))
            if len(pending) >= ahead:
                pending.popleft().result()
        for future in pending:
            future.result()


def decode_into(
    data: bytes | memoryview | None, name: str, location: Location, encoder: ChunkEncoder, out: np.ndarray
) -> None:
    """Decode one stored chunk's bytes ``data`` (fetched from ``location``) into ``out``; None is the fill value."""
    if data is None or location is None:
        out[...] = 0
        return
    if location[2]:
        raise OSError(f"chunk {name} was stored with filter mask {location[2]}")
    if len(data) != location[1]:
        raise OSError(f"chunk {name}: got {len(data)} of its {location[1]} stored bytes")
    if stores_raw(encoder) and len(data) == out.nbytes:
        out.reshape(-1).view("u1")[:] = memoryview(data).cast("B")
    else:
        encoder.decode(data, out)
