"""The study's 8-bit method made lossless: a uint8 array plus a map of the pixels that do not fit.

A pixel fits when its value is an integer in ``[0, 254]`` (for floats: equal to its uint8 cast, not ``-0.0``,
not NaN); every other pixel is stored as 255 in the 8-bit array and listed in the overflow map with its original
value, so the method is lossless for any data. On float (binned) data most pixels overflow and the file grows
beyond the source: that is the honest result.

File format (one uncompressed HDF5 file; root attribute ``cubebench_format = "uint8_overflow"``, version 1):

- ``data``: uint8, the cube's shape, chunked by the chunk shape, no filter (chunks written with
  ``write_direct_chunk``), 255 where a pixel overflows;
- ``overflow_index`` (n,): flat C-order index of each overflowing pixel *within its storage block* (the block
  clipped to the cube), uint16 / uint32 / uint64, the smallest that holds a block's size;
- ``overflow_value`` (n,): the pixel's original value, in the cube's dtype;
- ``overflow_start``, ``overflow_count`` (the block grid's shape) int64: each block's entries in the two lists,
  so that workers read their blocks in parallel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends._frames import require_codec, require_dtype
from cubebench.backends.base import Backend, ReadBack, WriteSettings
from cubebench.cube import Block, StagedCube, block_shape, checksum_stream, grid_counts
from cubebench.fileio import WritebackAhead, fsync_tree, hdf5_for_writing
from cubebench.parallel import BATCH_BYTES, batches, run_batches
from cubebench.patterns import (
    PatternResult,
    Selection,
    TilePart,
    Window,
    assemble,
    combine,
    pattern_batches,
    reduce_tile,
)

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.codecs import CodecSpec

ChunkIndex = tuple[int, ...]

FORMAT = "uint8_overflow"
#: Marks an overflowing pixel in the 8-bit array.
SENTINEL = 255
#: Elements per HDF5 chunk of the resizable overflow lists.
ENTRY_CHUNK = 2**18

#: One encoded block: its index and slices, the padded uint8 chunk, overflow indices and values.
EncodedBlock = tuple[ChunkIndex, Block, np.ndarray, np.ndarray, np.ndarray]


class Uint8OverflowBackend(Backend):
    """uint8 + overflow map in one uncompressed HDF5 file; parallel encode, one writer, parallel read."""

    name = "uint8_overflow"
    s3_unsupported = "its byte planes and overflow list are written through local file calls; not ported to S3"
    writes = "one_writer"  # workers convert, one process appends
    suffix = ".u8.h5"
    chunked = False

    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Only codec ``none``: the 8-bit array and the overflow map are stored raw."""
        require_codec(codec, ("none",), "uint8_overflow stores a raw 8-bit array + overflow; only codec 'none' applies")
        require_dtype(codec, dtype, self.name)

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        settings: WriteSettings,
    ) -> None:
        """Split each block into uint8 + overflow on the workers; store them here as they arrive."""

        dtype = np.dtype(staged.dtype)
        index_dtype = overflow_index_dtype(chunks)
        grid = grid_counts(staged.shape, chunks)
        with hdf5_for_writing(target) as f, WritebackAhead(target) as writeback:
            f.attrs.update(
                {
                    "cubebench_format": FORMAT,
                    "cubebench_format_version": 1,
                    "shape": staged.shape,
                    "dtype": dtype.str,
                    "sentinel": SENTINEL,
                }
            )
            ds = f.create_dataset("data", shape=staged.shape, dtype=np.uint8, chunks=chunks)
            index = f.create_dataset("overflow_index", (0,), maxshape=(None,), dtype=index_dtype, chunks=(ENTRY_CHUNK,))
            value = f.create_dataset("overflow_value", (0,), maxshape=(None,), dtype=dtype, chunks=(ENTRY_CHUNK,))
            starts = np.zeros(grid, dtype=np.int64)
            counts = np.zeros(grid, dtype=np.int64)
            end = 0
            for encoded in run_batches(
                client, _encode_batch, batches(staged.shape, chunks, dtype.itemsize), staged, chunks, index_dtype.str
            ):
                for chunk_index, block, raw, idx, val in encoded:
                    ds.id.write_direct_chunk(tuple(b.start for b in block), raw)
                    writeback.wrote(raw.nbytes + idx.nbytes + val.nbytes)
                    n = int(idx.size)
                    if n:
                        index.resize((end + n,))
                        value.resize((end + n,))
                        index[end : end + n] = idx
                        value[end : end + n] = val
                    starts[chunk_index], counts[chunk_index] = end, n
                    end += n
            f.create_dataset("overflow_start", data=starts)
            f.create_dataset("overflow_count", data=counts)
        fsync_tree(target)

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Workers read their blocks' 8-bit chunks and overflow entries, rebuild and checksum them."""
        shape, dtype = self._layout(target)
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(client, _read_batch, batches(shape, chunks, dtype.itemsize), str(target)):
            sums.update(result)
        return ReadBack(sums)

    def stored_shape(self, target: Path) -> tuple[int, ...]:
        """The cube's shape, from the file's attributes."""
        return self._layout(target)[0]

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Workers rebuild only the blocks overlapping ``sel``."""
        _, dtype = self._layout(target)
        parts: list[TilePart] = []
        for result in run_batches(
            client, _pattern_batch, pattern_batches(sel, chunks, dtype.itemsize, BATCH_BYTES), sel, str(target)
        ):
            parts.extend(result)
        return combine(sel, parts)

    @staticmethod
    def _layout(target: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
        import h5py

        with h5py.File(target, "r") as f:
            return tuple(int(s) for s in f.attrs["shape"]), np.dtype(str(f.attrs["dtype"]))


def overflow_index_dtype(chunks: tuple[int, ...]) -> np.dtype[Any]:
    """The smallest unsigned integer that holds a flat index within one storage block."""
    size = int(np.prod(chunks, dtype=np.int64))
    for candidate in (np.uint16, np.uint32):
        if size - 1 <= np.iinfo(candidate).max:
            return np.dtype(candidate)
    return np.dtype(np.uint64)


def split(block: np.ndarray, index_dtype: Any = np.uint32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``block`` into its uint8 array (255 where a pixel does not fit) and the overflow indices and values."""
    if block.dtype.kind == "f":
        fits = ~np.signbit(block) & (block < SENTINEL) & (np.trunc(block) == block)
    else:
        fits = (block >= 0) & (block < SENTINEL)
    small = np.where(fits, block, SENTINEL).astype(np.uint8)
    flat = block.reshape(-1)
    idx = np.flatnonzero(~fits.reshape(-1))
    return small, idx.astype(index_dtype), flat[idx]


def _encode_batch(
    group: list[tuple[ChunkIndex, Block]], staged: StagedCube, chunks: tuple[int, ...], index_dtype: str
) -> list[EncodedBlock]:
    """Split each block of ``group``, one scan row of it at a time, into its padded uint8 chunk and overflow map.

    A task holds the uint8 chunks it returns and one scan row of source data (not a whole source block and its
    temporaries); the result is exactly :func:`split` of the whole block, zero-padded.
    """
    out: list[EncodedBlock] = []
    for chunk_index, block in group:
        shape = block_shape(block)
        row = int(np.prod(shape[1:], dtype=np.int64))
        inside = tuple(slice(0, n) for n in shape[1:])
        small = np.zeros(chunks, dtype=np.uint8)
        idx_parts: list[np.ndarray] = []
        val_parts: list[np.ndarray] = []
        for y in range(shape[0]):
            piece = staged.read_block((slice(block[0].start + y, block[0].start + y + 1), *block[1:]))
            small[(slice(y, y + 1), *inside)], idx, val = split(piece, np.int64)
            idx_parts.append((idx + y * row).astype(index_dtype))
            val_parts.append(val)
        out.append((chunk_index, block, small, np.concatenate(idx_parts), np.concatenate(val_parts)))
    return out


class _BlockReader:
    """Rebuilds blocks of an open uint8 + overflow file."""

    def __init__(self, f: Any) -> None:
        self.data = f["data"]
        self.chunks = tuple(int(c) for c in self.data.chunks)
        self.shape = tuple(int(s) for s in self.data.shape)
        self.dtype = np.dtype(str(f.attrs["dtype"]))
        self.starts, self.counts = f["overflow_start"][()], f["overflow_count"][()]
        self.index, self.value = f["overflow_index"], f["overflow_value"]

    def _stored(self, index: ChunkIndex) -> tuple[np.ndarray, tuple[slice, ...], np.ndarray, np.ndarray]:
        """Block ``index``'s uint8 chunk, its part inside the cube, and its overflow indices (int64) and values."""
        origin = tuple(i * c for i, c in zip(index, self.chunks, strict=True))
        _, raw = self.data.id.read_direct_chunk(origin)
        small = np.frombuffer(raw, dtype=np.uint8).reshape(self.chunks)
        valid = tuple(slice(0, min(c, s - o)) for c, s, o in zip(self.chunks, self.shape, origin, strict=True))
        start, count = int(self.starts[index]), int(self.counts[index])
        if not count:
            return small, valid, np.empty(0, np.int64), np.empty(0, self.dtype)
        entries = slice(start, start + count)
        return small, valid, self.index[entries].astype(np.int64), self.value[entries]

    def block(self, index: ChunkIndex) -> np.ndarray:
        """Block ``index`` (clipped to the cube), in the cube's dtype."""
        small, valid, idx, val = self._stored(index)
        out = small[valid].astype(self.dtype, order="C")
        out.reshape(-1)[idx] = val
        return out

    def checksum(self, index: ChunkIndex) -> int:
        """:func:`~cubebench.cube.checksum` of :meth:`block`, rebuilt and hashed one scan row at a time."""
        small, valid, idx, val = self._stored(index)
        row = int(np.prod([v.stop for v in valid[1:]], dtype=np.int64))
        hasher = checksum_stream()
        for y in range(valid[0].stop):
            piece = small[(slice(y, y + 1), *valid[1:])].astype(self.dtype, order="C")
            lo, hi = np.searchsorted(idx, (y * row, (y + 1) * row))  # a block's overflow indices ascend
            piece.reshape(-1)[idx[lo:hi] - y * row] = val[lo:hi]
            hasher.update(piece.data)
        return int(hasher.intdigest())


def _read_batch(group: list[tuple[ChunkIndex, Block]], path: str) -> dict[ChunkIndex, int]:
    import h5py

    with h5py.File(path, "r") as f:
        reader = _BlockReader(f)
        return {index: reader.checksum(index) for index, _ in group}


def _pattern_batch(tiles: list[Window], sel: Selection, path: str) -> list[TilePart]:
    import h5py

    with h5py.File(path, "r") as f:
        reader = _BlockReader(f)
        return [
            reduce_tile(sel, t[0].start, t[1].start, assemble(sel, t, reader.chunks, reader.dtype, reader.block))
            for t in tiles
        ]
