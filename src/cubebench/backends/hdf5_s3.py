"""``hdf5`` and ``hdf5_direct`` on S3: the same HDF5 files, written locally as today and uploaded.

HDF5 cannot write to an object store: both paths write the file in scratch exactly as on local disk (the filter
pipeline, or parallel encode + one ``write_direct_chunk`` writer), then upload it with a multipart upload; both
times are recorded (``local_write_seconds``, ``upload_seconds``; the cell's write time is their sum). Reading:

- ``hdf5`` reads as users do, through h5py on a :class:`~cubebench.storage.RangedFile` (ranged GETs with a block
  cache), on one worker;
- ``hdf5_direct`` reads the chunk index (``chunk_iter``, or ``get_chunk_info`` for a few chunks) from the file's
  metadata through the same ranged file, then the workers fetch the chunks with parallel ranged GETs (a few in
  flight per task, adjacent chunks merged into one GET of up to 8 MiB) and decode them: HDF5's chunks are byte
  ranges of one object, as kerchunk/VirtualiZarr read them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import Location, ReadBack, WriteSettings, encoder_for
from cubebench.backends.hdf5_direct import HDF5DirectBackend, _chunk_locator
from cubebench.backends.hdf5_filter import DATA_PATH, PATTERN_BYTES, HDF5FilterBackend, _read, codec_of
from cubebench.backends.hdf5_paging import open_options
from cubebench.backends.s3_io import S3Face, S3Target, decode_into, fetched_ranges
from cubebench.cube import Block, StagedCube, checksum, thread_buffer
from cubebench.fileio import remove
from cubebench.parallel import BATCH_BYTES, run_batches, scan_batches
from cubebench.patterns import (
    PatternResult,
    Selection,
    TilePart,
    Window,
    assemble,
    combine,
    overlapping_chunks,
    pattern_batches,
    reduce_tile,
    scan_tiles,
    selection,
)
from cubebench.storage import RangedFile, get_range, multipart_upload
from cubebench.storage.rangefile import BLOCK, BLOCKS

if TYPE_CHECKING:
    from distributed import Client

    from cubebench.backends.base import Backend
    from cubebench.codecs import CodecSpec

ChunkIndex = tuple[int, ...]


def ranged(target: S3Target, page_size: int = 0) -> RangedFile:
    """A read-only file object over the target's HDF5 object (counted into the cell's counters).

    For a paged file (``page_size``) its blocks are at least a page, so the first GET brings the whole first
    metadata page and each page the page buffer asks for is one GET; the cache keeps the same bytes as otherwise.
    """
    block = max(BLOCK, page_size)
    return RangedFile(target.storage, target.key, target.tally, block, max(2, BLOCK * BLOCKS // block))


class _UploadedHDF5(S3Face):
    """Write with the local backend into scratch, then upload the file (multipart)."""

    local: Backend

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: S3Target,
        settings: WriteSettings,
    ) -> dict[str, float]:
        """The local write (flush and fsync included), then the upload; the local copy is removed after it."""
        start = time.perf_counter()
        try:
            self.local.write(client, staged, codec, chunks, target.local, settings)
            written = time.perf_counter()
            multipart_upload(target.storage, target.key, target.local, counter=target.counter)
        finally:
            remove(target.local)
        return {"local_write_seconds": written - start, "upload_seconds": time.perf_counter() - written}

    def stored_shape(self, target: S3Target) -> tuple[int, ...]:
        """The dataset's shape, from the file's metadata (ranged GETs)."""
        import h5py

        with h5py.File(ranged(target), "r") as f:
            return tuple(int(s) for s in f[DATA_PATH].shape)


class HDF5S3(_UploadedHDF5):
    """h5py's filter pipeline; read through h5py on a ranged file object, on one worker."""

    local = HDF5FilterBackend()

    def read(self, client: Client, target: S3Target, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Read on one worker, chunk by chunk through h5py and the filter pipeline."""
        page_size = self.local.page_size(settings)
        return ReadBack(client.submit(_read, ranged(target, page_size), page_size, pure=False).result())

    def pattern_result(
        self, client: Client, target: S3Target, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """h5py slicing on one worker over the ranged file object (opened once)."""
        page_size = self.local.page_size(settings)
        file = ranged(target, page_size)
        sel, parts = client.submit(_read_named_pattern, file, pattern, page_size, pure=False).result()
        return combine(sel, parts)


class HDF5DirectS3(_UploadedHDF5):
    """Parallel encode, one local writer, multipart upload; the chunk index from the metadata, parallel ranged GETs."""

    local = HDF5DirectBackend()

    def read(self, client: Client, target: S3Target, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """The chunk index from the file's metadata, then ranged GETs and decoding on the workers."""
        import h5py

        page_size = self.local.page_size(settings)
        with h5py.File(ranged(target, page_size), "r", **open_options(page_size)) as f:
            ds = f[DATA_PATH]
            shape, dtype, codec_id = ds.shape, ds.dtype.str, codec_of(ds)
            chunks = tuple(int(c) for c in ds.chunks)
            locations: dict[ChunkIndex, Location] = {}

            def visit(info: Any) -> None:
                index = tuple(o // c for o, c in zip(info.chunk_offset, chunks, strict=True))
                locations[index] = (int(info.byte_offset), int(info.size), int(info.filter_mask))

            ds.id.chunk_iter(visit)
        work = [
            [(index, block, locations.get(index)) for index, block in group]
            for group in scan_batches(client, shape, chunks, np.dtype(dtype).itemsize)
        ]
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(client, _read_batch, work, target, codec_id, dtype, chunks):
            sums.update(result)
        return ReadBack(sums)

    def pattern_result(
        self, client: Client, target: S3Target, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Locate only the chunks overlapping the selection in the index; fetch and decode them in parallel."""
        import h5py

        page_size = self.local.page_size(settings)
        with h5py.File(ranged(target, page_size), "r", **open_options(page_size)) as f:
            ds = f[DATA_PATH]
            sel = selection(pattern, tuple(int(s) for s in ds.shape))
            dtype, codec_id = ds.dtype.str, codec_of(ds)
            chunks = tuple(int(c) for c in ds.chunks)
            work = pattern_batches(sel, chunks, np.dtype(dtype).itemsize, BATCH_BYTES)
            needed = [[overlapping_chunks(sel, tile, chunks) for tile in tiles] for tiles in work]
            locate = _chunk_locator(ds, chunks, sum(len(c) for group in needed for c in group))
            items = [
                (tiles, {index: locate(index) for per_tile in group for index in per_tile})
                for tiles, group in zip(work, needed, strict=True)
            ]
        parts: list[TilePart] = []
        for result in run_batches(client, _pattern_batch, items, sel, target, codec_id, dtype, chunks):
            parts.extend(result)
        return combine(sel, parts)


def _read_named_pattern(file: RangedFile, pattern: str, page_size: int = 0) -> tuple[Selection, list[TilePart]]:
    """The selection of ``pattern`` and its tile parts, through h5py with the file opened once (on a worker)."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filters in this worker)

    with h5py.File(file, "r", **open_options(page_size)) as f:
        ds = f[DATA_PATH]
        sel = selection(pattern, tuple(int(s) for s in ds.shape))
        cy, cx = ds.chunks[:2]
        per_column = cy * cx * sel.det_shape[0] * sel.det_shape[1] * ds.dtype.itemsize
        tiles = scan_tiles(sel, (cy, cx * max(1, PATTERN_BYTES // per_column)))  # as the local hdf5 path reads
        return sel, [reduce_tile(sel, ys.start, xs.start, ds[ys, xs, sel.det[0], sel.det[1]]) for ys, xs in tiles]


def _fetch(target: S3Target) -> Any:
    storage, key, counter = target.storage, target.key, target.counter
    return lambda start, length: get_range(storage, key, start, length, counter)


def _read_batch(
    group: list[tuple[ChunkIndex, Block, Location]],
    target: S3Target,
    codec_id: str,
    dtype: str,
    chunks: tuple[int, ...],
) -> dict[ChunkIndex, int]:
    encoder = encoder_for(codec_id, dtype)
    buffer = thread_buffer(chunks, dtype)
    sums: dict[ChunkIndex, int] = {}
    for i, data in fetched_ranges(_fetch(target), [location for _, _, location in group]):
        index, block, location = group[i]
        decode_into(data, f"{index} of {target.key}", location, encoder, buffer)
        sums[index] = checksum(buffer[tuple(slice(0, b.stop - b.start) for b in block)])
    return sums


def _pattern_batch(
    item: tuple[list[Window], dict[ChunkIndex, Location]],
    sel: Selection,
    target: S3Target,
    codec_id: str,
    dtype: str,
    chunks: tuple[int, ...],
) -> list[TilePart]:
    tiles, locations = item
    encoder = encoder_for(codec_id, dtype)
    buffer = thread_buffer(chunks, dtype)
    indices = list(locations)
    data = {indices[i]: part for i, part in fetched_ranges(_fetch(target), [locations[i] for i in indices])}

    def read_chunk(index: ChunkIndex) -> np.ndarray:
        decode_into(data[index], f"{index} of {target.key}", locations[index], encoder, buffer)
        return buffer

    return [reduce_tile(sel, t[0].start, t[1].start, assemble(sel, t, chunks, buffer.dtype, read_chunk)) for t in tiles]
