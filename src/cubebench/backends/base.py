"""The interface every storage backend implements, and helpers they share.

A backend writes a staged cube with one codec and one chunk shape into a target path, and reads it back
returning one hash (XXH3-64) per storage chunk, so that the runner can verify the round trip out-of-core. Work is
spread over a ``distributed.Client`` in batches of chunks (:mod:`cubebench.parallel`).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.codecs import ChunkEncoder, CodecSpec, get_codec, stores_raw
from cubebench.errors import BackendError
from cubebench.patterns import PatternResult, Selection, selection
from cubebench.storage import S3Storage

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from distributed import Client

    from cubebench.cube import StagedCube
    from cubebench.storage import StorageSpec

ChunkIndex = tuple[int, ...]


@dataclass(frozen=True)
class WriteSettings:
    """Backend options that change what is stored or how it is run, recorded with every result.

    ``codec_pipeline`` is the ``zarr`` backend's codec pipeline (``zarr-python`` or ``zarrs``, the Rust one);
    ``codec_threads`` and ``io_concurrency`` are the experiment's ``cluster.codec_threads`` and
    ``zarr.concurrency``, for backends that size their own thread pools (tensorstore); ``hdf5_page_size`` is the
    experiment's ``hdf5.page_size`` (paged aggregation, 0: off; :mod:`cubebench.backends.hdf5_paging`).
    """

    write_empty_chunks: bool = True
    shards: bool = False
    codec_pipeline: str = "zarr-python"
    codec_threads: int = 1
    io_concurrency: int = 2
    hdf5_page_size: int = 0


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
    #: Whether the ``hdf5.page_size`` setting applies (HDF5 files written with paged aggregation).
    pageable: bool = False
    #: Wall seconds each stored chunk (or shard) adds to a cell's write and read beyond its bytes, on two
    #: workers: a file or an index entry, a library call, an fsync. For the estimates only
    #: (:mod:`cubebench.runner.estimate`); measured from the 8 GiB run in README (single-frame against balanced
    #: chunks, blosc-zstd, 65 536 chunks).
    chunk_seconds: float = 0.0
    #: Why the backend does not run on S3 storage; '' when it does (through its face in
    #: :data:`cubebench.backends.S3_FACES`, same layout and codecs as on local disk).
    s3_unsupported: str = "it has no S3 path (it writes and reads through local file calls only)"

    def check_storage(self, storage: StorageSpec, settings: WriteSettings | None = None) -> None:
        """Raise :class:`~cubebench.errors.BackendError` (with the reason) if the backend cannot use ``storage``
        (under ``settings``, when given)."""
        if isinstance(storage, S3Storage) and self.s3_unsupported:
            raise BackendError(f"{self.name} on {storage.label}: {self.s3_unsupported}")

    #: How a write and a full read spread, for the scaling model (:mod:`cubebench.scaling`): ``"workers"`` (every
    #: worker thread encodes and stores its own chunks), ``"one_writer"`` (workers encode, one process stores
    #: everything) or ``"one_process"`` (the whole pass runs in one process, on one core).
    writes: str = "workers"
    reads: str = "workers"

    @abstractmethod
    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Raise :class:`~cubebench.errors.CodecUnavailableError` (with the reason) if ``codec`` cannot run here."""

    def check_settings(self, codec: CodecSpec, dtype: np.dtype[Any], settings: WriteSettings) -> None:
        """:meth:`check`, under ``settings`` (a codec pipeline may run fewer codecs); the runner asks this one."""
        self.check(codec, dtype)

    def codec_pipeline(self, settings: WriteSettings) -> str:
        """The codec pipeline a cell runs under ``settings``, recorded per cell ('' where the choice does not apply)."""
        return ""

    def stores_empty_chunks(self, settings: WriteSettings) -> bool:
        """Whether chunks equal to the fill value are stored under ``settings`` (recorded per cell as
        ``write_empty_chunks``): the setting, unless the library ignores it."""
        return settings.write_empty_chunks

    def page_size(self, settings: WriteSettings) -> int:
        """The HDF5 page size a cell writes under ``settings`` (recorded per cell as ``hdf5_page_size``; 0: none)."""
        return settings.hdf5_page_size if self.pageable else 0

    def recorded(self, settings: WriteSettings) -> dict[str, float]:
        """Numeric settings a cell of this backend records beyond the common fields (its thread-pool sizes)."""
        return {}

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
