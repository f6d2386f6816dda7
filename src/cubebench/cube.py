"""The neutral data model shared by sources, backends and the runner: a lazy cube and its description.

A :class:`Cube` wraps a Dask array of shape ``(scan_y, scan_x, det_y, det_x)``; nothing here ever loads it.
A :class:`StagedCube` is an uncompressed copy of a cube in scratch that any worker can read chunk by chunk, so
that a benchmark's write time measures compression and storage, not the source (decoding a compressed input or
generating a synthetic cube costs more than many codecs).
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xxhash

from cubebench.errors import DatasetError, one_line

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

#: Index tuple selecting one block of a cube.
Block = tuple[slice, ...]

_SCRATCH = threading.local()


def block_shape(block: Block) -> tuple[int, ...]:
    """The shape a block of step-1 slices selects."""
    return tuple(b.stop - b.start for b in block)


def largest_block_bytes(blocks: Iterable[Block], dtype: Any) -> int:
    """Bytes of the largest of ``blocks``: the :func:`thread_buffer` capacity that serves a whole batch."""
    itemsize = np.dtype(dtype).itemsize
    return max((int(np.prod(block_shape(block), dtype=np.int64)) * itemsize for block in blocks), default=0)


def thread_buffer(shape: tuple[int, ...], dtype: Any, capacity: int | None = None) -> np.ndarray:
    """A C-contiguous array of ``shape``: this thread's one scratch buffer, reused from task to task.

    Valid until the next call in the same thread, so a task uses one at a time (a gathered source block to
    encode, or a chunk to decode into, never both). A fresh chunk-sized array per chunk costs its page faults
    again: measured here, gathering a 128 MiB real-space chunk took 34-289 ms into new memory and 34-58 ms into
    reused memory. The buffer holds ``capacity`` bytes (default: the array's), and is replaced when a call asks
    for another capacity, so it follows the chunk size of the pass at hand: one chunk per worker thread.
    """
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    capacity = max(nbytes, capacity or 0)
    held: np.ndarray | None = getattr(_SCRATCH, "buffer", None)
    if held is None or held.nbytes != capacity:
        held = _SCRATCH.buffer = None  # let the old one go before the new one is allocated
        held = _SCRATCH.buffer = np.empty(capacity, dtype=np.uint8)
    view: np.ndarray = held[:nbytes].view(dt).reshape(shape)
    return view


@dataclass(frozen=True)
class DatasetInfo:
    """What a source is: its name, where it came from, and its array layout.

    Statistics (zero fraction, entropy, ...) are computed separately by :mod:`cubebench.analysis`.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    source: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def unreadable(self, doing: str, exc: BaseException) -> DatasetError:
        """The one-line error for a failure while ``doing`` something with this source's data (reading a corrupt
        compressed chunk, say: a source can open well and still fail when its chunks are read)."""
        return DatasetError(f"dataset {self.name!r} ({self.source}): {doing} failed: {one_line(exc)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-able) for provenance attributes."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "source": self.source,
            "kind": self.kind,
            "nbytes": self.nbytes,
            **{k: v for k, v in self.attrs.items() if isinstance(v, (str, int, float, bool))},
        }


@dataclass(frozen=True)
class Cube:
    """A lazy 4-D data cube: a Dask array plus its :class:`DatasetInfo`."""

    data: Any  # dask.array.Array; typed loosely so this module needs no dask import
    info: DatasetInfo


#: Bytes of mapped blocks after which :meth:`StagedCube.iter_blocks` reopens its memory maps.
REMAP_BYTES = 64 * 2**20


@dataclass(frozen=True)
class StagedCube:
    """An uncompressed C-ordered ``.npy`` copy of a cube in scratch.

    Workers read blocks through a short-lived memory map that is dropped after each copy, so resident memory
    stays bounded by the block size, not by the cube size.
    """

    path: Path
    shape: tuple[int, ...]
    dtype: str
    name: str
    #: A chunk-major copy (see :func:`cubebench.staging.stage_layout`): ``.npy`` of shape ``grid + chunk``, every
    #: block of ``layout_chunks`` one contiguous run, so that it is encoded straight from the page cache.
    layout: Path | None = None
    layout_chunks: tuple[int, ...] | None = None

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def with_layout(self, path: Path, chunks: tuple[int, ...]) -> StagedCube:
        """This cube, reading blocks of ``chunks`` from the chunk-major copy at ``path``."""
        return replace(self, layout=path, layout_chunks=tuple(chunks))

    def iter_blocks(self, blocks: Iterable[Block]) -> Iterator[np.ndarray]:
        """Yield each of ``blocks`` as a read-only array, valid until the next one is yielded.

        Without copying where the bytes already lie in one run: a block of the chunk-major layout, or a
        C-contiguous run of whole frames; those are views of a memory map, so the encoder reads the page cache
        directly. Other blocks are copied by :meth:`read_block` into this thread's :func:`thread_buffer`, so
        no yielded array outlives the next one. The maps are reopened every
        :data:`REMAP_BYTES`: pages a map has touched count as resident memory until it is closed.
        """
        blocks = list(blocks)
        capacity = largest_block_bytes(blocks, self.dtype)
        maps: tuple[np.ndarray, np.ndarray | None] | None = None
        mapped = 0
        for block in blocks:
            if maps is None or mapped >= REMAP_BYTES:
                maps, mapped = None, 0  # drop the old maps (a view yielded last still holds its own)
                maps = (npy_map(self.path), self._layout_map())
            source, views = maps
            index = self._layout_index(block) if views is not None else None
            if views is not None and index is not None:
                view = views[index][tuple(slice(0, b.stop - b.start) for b in block)]
            elif is_contiguous(block, self.shape):
                view = source[block]
            else:
                yield self.read_block(block, out=thread_buffer(block_shape(block), self.dtype, capacity))
                continue
            mapped += view.nbytes
            yield view

    def _layout_map(self) -> np.ndarray | None:
        return npy_map(self.layout) if self.layout is not None else None

    def _layout_index(self, block: Block) -> tuple[int, ...] | None:
        """The grid index of ``block`` in the layout, or None when it is not exactly one of its blocks."""
        chunks = self.layout_chunks
        if chunks is None or len(block) != len(chunks):
            return None
        index = []
        for b, c, s in zip(block, chunks, self.shape, strict=True):
            if b.start % c or b.stop != min(b.start + c, s):
                return None
            index.append(b.start // c)
        return tuple(index)

    def read_block(self, block: Block, out: np.ndarray | None = None) -> np.ndarray:
        """Return a C-contiguous copy of ``block`` from the staged file (into ``out`` when given).

        Blocks of whole frames are read with ``os.preadv``, one call per scan row (about 9 GB/s from the page cache
        here); other blocks through a short-lived memory map (2-3 GB/s for strided detector tiles).
        """
        dtype = np.dtype(self.dtype)
        shape = block_shape(block)
        if shape[2:] == self.shape[2:]:
            out = np.empty(shape, dtype=dtype) if out is None else out
            frame = int(np.prod(self.shape[2:])) * dtype.itemsize
            start = data_offset(self.path)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                for i, y in enumerate(range(block[0].start, block[0].stop)):
                    _read_fully(fd, memoryview(out[i]).cast("B"), start + (y * self.shape[1] + block[1].start) * frame)
            finally:
                os.close(fd)
            return out
        mm = npy_map(self.path)
        try:
            if out is None:
                return np.array(mm[block], copy=True)
            np.copyto(out, mm[block])
            return out
        finally:
            del mm


NpyHeader = tuple[tuple[int, ...], bool, np.dtype, int]

#: Serializes the parsing of ``.npy`` headers: numpy parses them with ``ast.literal_eval``, and on CPython 3.11
#: two threads compiling at once can fail with "SystemError: AST constructor recursion depth mismatch" (seen
#: here with thread workers hashing blocks through ``np.load``).
_HEADER_LOCK = threading.Lock()


def npy_header(path: str | os.PathLike[str]) -> NpyHeader:
    """``(shape, fortran_order, dtype, data_offset)`` of a ``.npy`` file, parsed once per file version.

    Raises ``ValueError`` (or ``OSError``) when the file is not a readable ``.npy`` file.
    """
    st = os.stat(path)
    return _parse_header(os.fspath(path), (st.st_ino, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _parse_header(path: str, version_stamp: tuple[int, int, int]) -> NpyHeader:
    """Parse a ``.npy`` header once per ``(path, inode, size, mtime)``: a rewritten file is parsed again."""
    with _HEADER_LOCK, open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            shape, fortran, dtype = np.lib.format._read_array_header(fh, version)  # type: ignore[attr-defined]
        return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype), fh.tell()


def npy_map(path: str | os.PathLike[str], mode: Literal["r", "r+"] = "r") -> np.memmap[Any, np.dtype[Any]]:
    """A memory map of a ``.npy`` file's array, like ``np.load(path, mmap_mode=mode)`` but from the cached header.

    Safe to call from many threads at once (see :data:`_HEADER_LOCK`).
    """
    shape, fortran, dtype, offset = npy_header(path)
    return np.memmap(path, dtype=dtype, mode=mode, offset=offset, shape=shape, order="F" if fortran else "C")


def data_offset(path: str | os.PathLike[str]) -> int:
    """Byte offset of the array data in a ``.npy`` file (after its header)."""
    return npy_header(path)[3]


def _read_fully(fd: int, view: memoryview, offset: int) -> None:
    """``pread`` until ``view`` is full (a single call may return less)."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise EOFError(f"staged file ends at byte {offset + got}")
        got += n


def is_contiguous(block: Block, shape: tuple[int, ...]) -> bool:
    """Whether ``block`` (unit-step slices, one per axis) of a C-ordered array of ``shape`` is one run of memory.

    It is when, reading the axes from the last, every axis after the first partial one spans one element.
    """
    if len(block) != len(shape):
        return False
    later_full = True  # every axis after the current one spans its whole length
    for b, s in zip(reversed(block), reversed(shape), strict=True):
        size = b.stop - b.start
        if size > 1 and not later_full:
            return False
        later_full = later_full and size == s
    return True


def grid_counts(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of ``chunks`` along each axis of ``shape``, edge chunks included."""
    return tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))


def block_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[tuple[int, ...], Block]]:
    """List ``(chunk_index, slices)`` for every chunk of a regular grid, edge chunks clipped to ``shape``."""
    counts = grid_counts(shape, chunks)
    out: list[tuple[tuple[int, ...], Block]] = []
    for index in np.ndindex(*counts):
        block = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape, strict=True))
        out.append((tuple(int(i) for i in index), block))
    return out


def checksum(array: np.ndarray) -> int:
    """64-bit XXH3 hash of an array's bytes in C order.

    About 35 GB/s on one core here (zlib's CRC-32 gives 4 GB/s), so verifying every chunk costs little of a read
    even for the fastest codecs, and 64 bits make a missed corruption vanishingly unlikely.
    """
    return int(xxhash.xxh3_64_intdigest(np.ascontiguousarray(array).data))


def checksum_stream() -> xxhash.xxh3_64:
    """A hasher to feed a chunk piece by piece (C order); its ``intdigest()`` equals :func:`checksum` of the whole."""
    return xxhash.xxh3_64()
