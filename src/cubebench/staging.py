"""Stage a lazy cube once into an uncompressed ``.npy`` copy in scratch, and checksum it per storage chunk.

Source production is not codec time: generating a synthetic cube or decoding a compressed input costs more than
many codecs, so every cell reads from this staged copy instead, and the time to read it once is recorded as the
floor under every write.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cubebench.analysis import CubeStats, blocks_partial, combine_partials, stats_from_partial
from cubebench.cube import (
    Block,
    Cube,
    StagedCube,
    block_shape,
    checksum,
    data_offset,
    grid_counts,
    is_contiguous,
    npy_map,
)
from cubebench.errors import ConfigError, CubebenchError
from cubebench.fileio import fsync_tree
from cubebench.lazy_dask import import_dask_array
from cubebench.parallel import BATCH_BYTES, STREAM_BATCH_BYTES, batches, run_batches, scan_batches
from cubebench.patterns import PatternResult, Selection, TilePart, Window, combine, pattern_batches, reduce_tile
from cubebench.patterns import selection as pattern_selection

if TYPE_CHECKING:
    from distributed import Client

ChunkIndex = tuple[int, ...]


class _NpyTarget:
    """A picklable ``__setitem__`` target for ``dask.array.store`` that writes into a ``.npy`` file."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str) -> None:
        self.path, self.shape, self.dtype = path, shape, dtype

    def __setitem__(self, key: Block, value: np.ndarray) -> None:
        mm = npy_map(self.path, mode="r+")
        try:
            mm[key] = value
            mm.flush()
        finally:
            del mm


def stage_cube(client: Client, cube: Cube, folder: Path) -> StagedCube:
    """Write ``cube`` chunk by chunk on the cluster into ``folder/<name>.npy`` and return its handle.

    Raises
    ------
    DatasetError
        When the source cannot be read (or the copy not written), naming the dataset and its file.
    """
    da = import_dask_array()

    shape = tuple(int(s) for s in cube.data.shape)
    dtype = np.dtype(cube.data.dtype)
    path = folder / f"{_safe(cube.info.name)}.npy"
    try:
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # a sparse file, full size
        del header
        reserve(path)
        target = _NpyTarget(path, shape, dtype.str)
        client.compute(da.store(cube.data, cast("Any", target), lock=False, compute=False)).result()
    except CubebenchError:  # no room for the copy: said as such
        raise
    except Exception as exc:  # the workers failed to read the source (or to write the copy): one line, named
        raise cube.info.unreadable("staging", exc) from exc
    fsync_tree(path)  # its write-back must not fall into a timed cell
    return StagedCube(path=path, shape=shape, dtype=dtype.str, name=cube.info.name)


def needs_layout(shape: tuple[int, ...], chunks: tuple[int, ...]) -> bool:
    """Whether blocks of ``chunks`` are scattered in a C-ordered cube of ``shape`` (so a chunk-major copy helps).

    A block is one run of memory when, from the last axis, it spans whole axes up to one partial axis and then
    single elements (single-frame chunks, or whole-row bands of frames).
    """
    return not is_contiguous(tuple(slice(0, min(c, s)) for c, s in zip(chunks, shape, strict=True)), shape)


def stage_layout(client: Client, staged: StagedCube, chunks: tuple[int, ...], folder: Path) -> StagedCube:
    """Copy ``staged`` chunk-major into ``folder``: every block of ``chunks`` one contiguous run, edges zero-padded.

    Cells then encode each chunk straight from the page cache instead of gathering it from scattered rows, so a
    write times the codec and the store, as in the study, where the cube sat in memory before the clock started.
    Costs one uncompressed copy of the cube per such chunking in the staging folder (``layout: source`` skips it).
    Workers ``pwrite`` whole chunks (writing through a shared map would fault in every page) and the copy is
    fsynced, so that its write-back does not fall into a timed cell.
    """
    grid = grid_counts(staged.shape, chunks)
    name = "x".join(str(c) for c in chunks)
    path = folder / f"{staged.path.stem}.{name}.npy"
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(staged.dtype), shape=grid + tuple(chunks))
    del header
    reserve(path)
    work = scan_batches(client, staged.shape, chunks, np.dtype(staged.dtype).itemsize)
    try:
        for _ in run_batches(client, _layout_batch, work, staged, str(path), tuple(chunks), grid):
            pass
        fsync_tree(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return staged.with_layout(path, chunks)


def _layout_batch(
    group: list[tuple[ChunkIndex, Block]],
    staged: StagedCube,
    path: str,
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
) -> None:
    chunk = np.zeros(chunks, dtype=np.dtype(staged.dtype))
    start = data_offset(Path(path))
    fd = os.open(path, os.O_WRONLY)
    try:
        for index, block in group:
            sizes = block_shape(block)
            if sizes != chunks:
                chunk[...] = 0  # an edge block: zero the padding
            chunk[tuple(slice(0, n) for n in sizes)] = staged.read_block(block)
            offset = start + int(np.ravel_multi_index(index, grid)) * chunk.nbytes
            _write_fully(fd, chunk.data.cast("B"), offset)
    finally:
        os.close(fd)


def _write_fully(fd: int, view: memoryview, offset: int) -> None:
    """``pwrite`` until all of ``view`` is written (a single call may write less)."""
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def reserve(path: Path) -> None:
    """Allocate every block of the (sparse) file ``path`` now, so a full disk is one clear error here.

    Without it, workers writing through a memory map into a full filesystem die of SIGBUS, one after another.

    Raises
    ------
    ConfigError
        When the filesystem has no room for the file.
    """
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            path.unlink()
            free = shutil.disk_usage(path.parent).free
            raise ConfigError(
                f"staging folder {path.parent}: no space left for the uncompressed copy of {path.stem} "
                f"({size / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free); point 'staging:' at a bigger folder"
            ) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # filesystems without fallocate
            raise
    finally:
        os.close(fd)


def source_checksums(client: Client, staged: StagedCube, block: tuple[int, ...]) -> tuple[dict[ChunkIndex, int], float]:
    """XXH3-64 hash of every storage block of the staged cube, and the seconds one full read of it took."""
    start = time.perf_counter()
    sums: dict[ChunkIndex, int] = {}
    work = scan_batches(client, staged.shape, block, np.dtype(staged.dtype).itemsize)
    for result in run_batches(client, _checksum_batch, work, staged):
        sums.update(result)
    return sums, time.perf_counter() - start


def staged_stats(client: Client, staged: StagedCube) -> CubeStats:
    """:class:`~cubebench.analysis.CubeStats` of the staged cube, one pass over bands of whole frames on the cluster.

    Bands of whole frames are single runs of the file, so workers count them in place through memory maps.
    """
    itemsize = np.dtype(staged.dtype).itemsize
    frame = int(np.prod(staged.shape[2:], dtype=np.int64)) * itemsize
    band = (1, min(staged.shape[1], max(1, STREAM_BATCH_BYTES // max(1, frame))), *staged.shape[2:])
    work = batches(staged.shape, band, itemsize, STREAM_BATCH_BYTES)
    parts = list(run_batches(client, _stats_batch, work, staged))
    return stats_from_partial(combine_partials(parts), staged.shape, np.dtype(staged.dtype))


def _stats_batch(group: list[tuple[ChunkIndex, Block]], staged: StagedCube) -> Any:
    return blocks_partial(staged.iter_blocks([block for _, block in group]))


def source_pattern(client: Client, staged: StagedCube, pattern: str) -> PatternResult:
    """An access pattern of the staged cube: the checksum (and virtual image) every backend must reproduce."""
    sel = pattern_selection(pattern, staged.shape)
    tile = (16, 16, staged.shape[2], staged.shape[3])
    parts: list[TilePart] = []
    work = pattern_batches(sel, tile, np.dtype(staged.dtype).itemsize, BATCH_BYTES)
    for result in run_batches(client, _pattern_batch, work, staged, sel):
        parts.extend(result)
    return combine(sel, parts)


def _pattern_batch(tiles: list[Window], staged: StagedCube, sel: Selection) -> list[TilePart]:
    return [reduce_tile(sel, ys.start, xs.start, staged.read_block((ys, xs, *sel.det))) for ys, xs in tiles]


def _checksum_batch(group: list[tuple[ChunkIndex, Block]], staged: StagedCube) -> dict[ChunkIndex, int]:
    blocks = [block for _, block in group]
    return {index: checksum(data) for (index, _), data in zip(group, staged.iter_blocks(blocks), strict=True)}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def reusable_npy(path: str | os.PathLike[str], name: str | None = None) -> StagedCube | None:
    """``path`` as a staged cube when it already is one (a native, C-ordered 4-D ``.npy``), else None.

    Staging such a file would copy uncompressed data into uncompressed data: the cells read it in place.
    """
    path = Path(path)
    if path.suffix != ".npy" or not path.is_file():
        return None
    array = npy_map(path)
    try:
        if array.ndim != 4 or not array.flags.c_contiguous or not array.dtype.isnative:
            return None
        return StagedCube(path=path, shape=tuple(array.shape), dtype=array.dtype.str, name=name or path.stem)
    finally:
        del array
