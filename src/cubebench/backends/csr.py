"""The study's sparse method: every diffraction pattern as a SciPy CSR matrix, all frames in one file.

File format (an uncompressed HDF5 file, so any HDF5 tool can read it; root attribute
``cubebench_format = "csr"``, ``cubebench_format_version = 1``):

- ``data`` (nnz_total,), the cube's dtype, and ``indices`` (nnz_total,) int32: every frame's ``csr.data`` and
  ``csr.indices`` exactly as ``scipy.sparse.csr_matrix(frame)`` makes them, frames appended in arrival order
  (resizable, chunked 1-D datasets, no filter);
- ``indptr`` (scan_y, scan_x, det_y + 1) int32: each frame's ``csr.indptr``;
- ``offsets`` (scan_y, scan_x) int64: where each frame's entries start in ``data`` / ``indices``.

Frame ``(iy, ix)`` is ``csr_matrix((data[o:o + n], indices[o:o + n], indptr[iy, ix]), shape=(det_y, det_x))``
with ``o = offsets[iy, ix]`` and ``n = indptr[iy, ix, -1]``. Workers convert tiles of frames in parallel; one
writer in the client appends them as they arrive. A read is a *full read back to dense* (the study timed
loading two frames only): workers read their frames' entries and rebuild dense blocks. CSR drops ``-0.0``
(SciPy treats it as zero), so float data holding ``-0.0`` fails verification: an honest result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends._frames import frame_tiles, require_codec, require_dtype, tile_shape
from cubebench.backends.base import Backend, ReadBack, WriteSettings
from cubebench.cube import Block, StagedCube, block_grid, checksum_stream
from cubebench.fileio import WritebackAhead, fsync_tree, hdf5_for_writing
from cubebench.parallel import BATCH_BYTES, run_batches
from cubebench.patterns import PatternResult, Selection, TilePart, Window, combine, pattern_batches, reduce_tile

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.codecs import CodecSpec

ChunkIndex = tuple[int, ...]

#: Elements per HDF5 chunk of the resizable ``data`` / ``indices`` datasets.
ENTRY_CHUNK = 2**18
#: Entries a read may skip per frame rather than make two HDF5 calls for that frame.
SPAN_SLACK = 2**14
FORMAT = "csr"

#: One converted tile: its block, ``indptr`` (ny, nx, det_y + 1), and the frames' data and indices in C order.
CsrTile = tuple[Block, np.ndarray, np.ndarray, np.ndarray]


class CSRBackend(Backend):
    """SciPy CSR per frame in one uncompressed HDF5 file; parallel conversion, one appending writer."""

    name = "csr"
    s3_unsupported = "its CSR file set is written and read through local file calls; not ported to S3"
    writes = "one_writer"  # workers convert, one process appends
    suffix = ".csr.h5"
    chunked = False

    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Only codec ``none``: the arrays are stored raw."""
        require_codec(codec, ("none",), "csr stores raw CSR arrays; only codec 'none' applies")
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
        """Convert tiles of frames to CSR on the workers; append each tile's entries here as it arrives."""

        sy, sx, dy, _ = staged.shape
        dtype = np.dtype(staged.dtype)
        work = frame_tiles(staged.shape, chunks, dtype.itemsize)
        with hdf5_for_writing(target) as f, WritebackAhead(target) as writeback:
            f.attrs.update(
                {"cubebench_format": FORMAT, "cubebench_format_version": 1, "shape": staged.shape, "dtype": dtype.str}
            )
            data = f.create_dataset("data", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(ENTRY_CHUNK,))
            indices = f.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(ENTRY_CHUNK,))
            indptr = f.create_dataset("indptr", shape=(sy, sx, dy + 1), dtype=np.int32)
            offsets = f.create_dataset("offsets", shape=(sy, sx), dtype=np.int64)
            end = 0
            for tiles in run_batches(client, _to_csr, work, staged):
                for block, tile_indptr, tile_data, tile_indices in tiles:
                    n = int(tile_data.size)
                    if n:
                        data.resize((end + n,))
                        indices.resize((end + n,))
                        data[end : end + n] = tile_data
                        indices[end : end + n] = tile_indices
                    nnz = tile_indptr[..., -1].astype(np.int64)
                    indptr[block[0], block[1]] = tile_indptr
                    offsets[block[0], block[1]] = end + np.cumsum(nnz).reshape(nnz.shape) - nnz
                    end += n
                    writeback.wrote(tile_data.nbytes + tile_indices.nbytes + tile_indptr.nbytes)
        fsync_tree(target)

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Workers rebuild dense tiles from their frames' entries and checksum each block of ``chunks``."""
        shape, dtype = self._layout(target)
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(client, _read_tiles, frame_tiles(shape, chunks, dtype.itemsize), str(target), chunks):
            sums.update(result)
        return ReadBack(sums)

    def stored_shape(self, target: Path) -> tuple[int, ...]:
        """The cube's shape, from the file's attributes."""
        return self._layout(target)[0]

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Workers read only the selected frames, and of each only the rows of the detector window."""
        shape, dtype = self._layout(target)
        tile = tile_shape(shape, chunks, dtype.itemsize)
        parts: list[TilePart] = []
        for result in run_batches(
            client, _read_pattern, pattern_batches(sel, tile, dtype.itemsize, BATCH_BYTES), sel, str(target)
        ):
            parts.extend(result)
        return combine(sel, parts)

    @staticmethod
    def _layout(target: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
        import h5py

        with h5py.File(target, "r") as f:
            return tuple(int(s) for s in f.attrs["shape"]), f["data"].dtype


def _to_csr(group: list[Block], staged: StagedCube) -> list[CsrTile]:
    """Each tile of ``group`` as CSR, one piece per scan row of the tile, in C order.

    A scan row of a tile is read and converted at a time, and its entries kept as they are (not concatenated with
    the other rows'), so a task holds one row of dense frames plus the tile's entries once: the writer appends
    the pieces in order, which stores exactly what converting the whole tile at once stored.
    """
    from scipy.sparse import csr_matrix

    out: list[CsrTile] = []
    for block in group:
        for row in scan_rows(block):
            tile = staged.read_block(row)
            ny, nx, dy, _ = tile.shape
            matrices = [csr_matrix(frame) for frame in tile.reshape(ny * nx, *tile.shape[2:])]
            del tile
            indptr = np.stack([m.indptr for m in matrices]).astype(np.int32).reshape(ny, nx, dy + 1)
            data = np.concatenate([m.data for m in matrices])  # a row holds at least one frame
            indices = np.concatenate([m.indices for m in matrices]).astype(np.int32)
            out.append((row, indptr, data, indices))
    return out


def scan_rows(block: Block) -> list[Block]:
    """``block`` cut into its scan rows (one probe row, the block's columns and detector window, each).

    >>> scan_rows((slice(2, 4), slice(0, 3), slice(0, 8), slice(0, 8)))[1]
    (slice(3, 4, None), slice(0, 3, None), slice(0, 8, None), slice(0, 8, None))
    """
    ys, *rest = block
    return [(slice(y, y + 1), *rest) for y in range(ys.start, ys.stop)]


def dense_frames(f: Any, ys: slice, xs: slice, rows: slice, cols: slice) -> np.ndarray:
    """Frames ``[ys, xs]`` of an open CSR file, rows and columns ``[rows, cols]`` of each, as a dense array.

    Reads only the entries of the selected rows, in one contiguous span when the frames were stored together
    (they are, in the tiles they were written in) and the bytes skipped cost less than an HDF5 call per frame;
    else frame by frame.
    """
    indptr = f["indptr"][ys, xs].astype(np.int64)
    ny, nx, _ = indptr.shape
    n, r0, r1, c0, c1 = ny * nx, rows.start, rows.stop, cols.start, cols.stop
    out = np.zeros((ny, nx, r1 - r0, c1 - c0), dtype=f["data"].dtype)
    ip = indptr.reshape(n, -1)
    starts = f["offsets"][ys, xs].reshape(n) + ip[:, r0]
    lens = ip[:, r1] - ip[:, r0]
    total = int(lens.sum())
    if total == 0:
        return out
    used = lens > 0
    lo, hi = int(starts[used].min()), int((starts + lens)[used].max())
    if hi - lo - total <= total + SPAN_SLACK * int(used.sum()):
        gather = np.arange(total) + np.repeat(starts - lo - (np.cumsum(lens) - lens), lens)
        values, columns = f["data"][lo:hi][gather], f["indices"][lo:hi][gather]
    else:
        spans = [(int(s), int(s + k)) for s, k in zip(starts[used], lens[used], strict=True)]
        values = np.concatenate([f["data"][a:b] for a, b in spans])
        columns = np.concatenate([f["indices"][a:b] for a, b in spans])
    row = np.repeat(np.arange(n * (r1 - r0)), np.diff(ip[:, r0 : r1 + 1], axis=1).ravel())
    if c0 > 0 or c1 < int(f.attrs["shape"][3]):
        keep = (columns >= c0) & (columns < c1)
        row, columns, values = row[keep], columns[keep], values[keep]
    out.reshape(-1)[row * (c1 - c0) + (columns - c0)] = values
    return out


def _read_tiles(group: list[Block], path: str, chunks: tuple[int, ...]) -> dict[ChunkIndex, int]:
    """Hash every block of ``chunks`` in the tiles of ``group``, rebuilding one scan row of a tile at a time.

    A block's bytes in C order are its scan rows in order, so each block's hash is fed row by row: a task holds
    one row of dense frames, not its tile (a 128 MiB real-space block).
    """
    import h5py

    sums: dict[ChunkIndex, int] = {}
    with h5py.File(path, "r") as f:
        for ys, xs, rows, cols in group:
            origin = (ys.start, xs.start, 0, 0)
            hashers: dict[ChunkIndex, Any] = {}
            for row in scan_rows((ys, xs, rows, cols)):
                dense = dense_frames(f, *row)
                for index, block in block_grid(dense.shape, (1, *chunks[1:])):
                    key = ((row[0].start - ys.start) // chunks[0], *index[1:])
                    hashers.setdefault(key, checksum_stream()).update(np.ascontiguousarray(dense[block]).data)
            base = [o // c for o, c in zip(origin, chunks, strict=True)]
            sums.update({tuple(b + i for b, i in zip(base, k, strict=True)): h.intdigest() for k, h in hashers.items()})
    return sums


def _read_pattern(tiles: list[Window], sel: Selection, path: str) -> list[TilePart]:
    """Reduce the selected frames of each tile, one scan row at a time."""
    import h5py

    with h5py.File(path, "r") as f:
        return [
            reduce_tile(sel, y, xs.start, dense_frames(f, slice(y, y + 1), xs, *sel.det))
            for ys, xs in tiles
            for y in range(ys.start, ys.stop)
        ]
