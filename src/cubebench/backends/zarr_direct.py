"""Zarr v3 written and read in parallel without zarr-python's per-chunk path: the Zarr twin of ``hdf5_direct``.

zarr-python creates the store (metadata, codecs, fill value), exactly as the ``zarr`` backend does. The workers
then encode each chunk with the catalog's encoder for the bytes that store's codecs hold
(:meth:`cubebench.codecs.CodecSpec.zarr_encoder`) and write the chunk file at the key the store's metadata names;
reading opens each chunk file, reads it into a reused buffer and decodes it straight into the thread's chunk
buffer. zarr-python goes through an asyncio pipeline per chunk, decodes into a fresh buffer and copies it into
the output, which caps it well below the codec's own speed (see README, "Performance"). The stores are ordinary
Zarr v3 stores: plain zarr-python reads them back (tested for every codec, sharded or not).

With sharding, a task writes whole shards in Zarr's ``sharding_indexed`` layout: the inner chunks' encoded bytes,
then the index of ``(offset, nbytes)`` pairs (``2**64 - 1`` for a chunk not stored) and its CRC-32C, at the end,
in one ``writev``. Reading decodes all the inner chunks of a shard in one call of the encoder
(:meth:`~cubebench.codecs.ChunkEncoder.decode_many`) into views of the thread's buffer made once per task: a shard
holds hundreds of small chunks, where Python's work per chunk, and the codec library's per call, count.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import (
    Location,
    ReadBack,
    WriteSettings,
    encoder_for,
    padded,
    read_exactly,
    read_stored_chunk,
    stored_buffer,
)
from cubebench.backends.zarr_ import ZarrBackend, create_store, fill_store
from cubebench.codecs import ChunkEncoder, stores_raw
from cubebench.cube import Block, StagedCube, block_grid, checksum, thread_buffer
from cubebench.errors import BackendError, CodecUnavailableError
from cubebench.fileio import sync_soon
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
)

if TYPE_CHECKING:
    from distributed import Client

    from cubebench.codecs import CodecSpec

ChunkIndex = tuple[int, ...]

#: A shard index entry for an inner chunk that is not stored (Zarr's sharding specification).
MISSING = 2**64 - 1


class ZarrDirectBackend(ZarrBackend):
    """Zarr v3 store made by zarr-python; chunk (or shard) files encoded, written, read and decoded by the workers."""

    name = "zarr_direct"
    chunk_seconds = 4.2e-4  # 8 GiB, 65 536 chunk files: write 41.2 s against 18.3, read 7.6 against 2.8

    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Needs the Zarr face (the store's codecs), an encoder of the bytes it stores, and a little-endian host.

        The stores' ``bytes`` codec is little-endian, and the encoders take the chunk's bytes as they are in memory.
        """
        if sys.byteorder != "little":
            raise CodecUnavailableError(f"{codec.id}: zarr_direct writes little-endian chunks; this host is big-endian")
        codec.zarr_kwargs(dtype)
        codec.zarr_encoder(dtype)

    def check_settings(self, codec: CodecSpec, dtype: np.dtype[Any], settings: WriteSettings) -> None:
        """:meth:`check`: no Zarr codec pipeline runs here (the workers encode and decode), so none refuses."""
        self.check(codec, dtype)

    def codec_pipeline(self, settings: WriteSettings) -> str:
        """'': zarr_direct runs the catalog's own encoders, whatever ``zarr.codec_pipeline`` says."""
        return ""

    def stores_empty_chunks(self, settings: WriteSettings) -> bool:
        """The setting (its own encoders honour it, whatever the pipeline)."""
        return settings.write_empty_chunks

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        settings: WriteSettings,
    ) -> None:
        """Create the store here, then let the workers encode and write its chunk (or shard) files."""
        array = create_store(target, staged.shape, np.dtype(staged.dtype), codec, *self._layout(chunks, settings))
        layout = _Layout.of(array, codec.id, str(target))
        work = _file_batches(client, array, layout)
        fill_store(client, target, _write_batch, work, staged, layout, settings.write_empty_chunks)

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Each worker reads and decodes the chunk (or shard) files of its batch."""
        import zarr

        array = zarr.open_array(str(target), mode="r")
        layout = _Layout.of(array, _codec_of(array, target), str(target))
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(client, _read_batch, _file_batches(client, array, layout), layout):
            sums.update(result)
        return ReadBack(sums)

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Read and decode only the chunk (or shard) files overlapping ``sel``, in parallel."""
        import zarr

        array = zarr.open_array(str(target), mode="r")
        layout = _Layout.of(array, _codec_of(array, target), str(target))
        work = pattern_batches(sel, layout.block, array.dtype.itemsize, BATCH_BYTES)
        items = [
            (
                tiles,
                {
                    index: array.metadata.encode_chunk_key(index)
                    for tile in tiles
                    for index in overlapping_chunks(sel, tile, layout.block)
                },
            )
            for tiles in work
        ]
        parts: list[TilePart] = []
        for result in run_batches(client, _pattern_batch, items, sel, layout):
            parts.extend(result)
        return combine(sel, parts)


def _file_batches(client: Client, array: Any, layout: _Layout) -> list[list[tuple[ChunkIndex, Block, str]]]:
    """:func:`scan_batches` over the store's files (chunks, or shards), each with the key zarr stores it under."""
    return [
        [(index, block, array.metadata.encode_chunk_key(index)) for index, block in group]
        for group in scan_batches(client, array.shape, layout.block, array.dtype.itemsize)
    ]


def _codec_of(array: Any, target: Path) -> str:
    """The catalog codec a cubebench store was written with (its ``cubebench_codec`` attribute)."""
    codec_id = array.attrs.get("cubebench_codec")
    if not isinstance(codec_id, str):
        raise BackendError(f"{target}: not a cubebench Zarr store (no 'cubebench_codec' attribute)")
    return codec_id


@dataclass(frozen=True)
class _Layout:
    """What a worker needs to find and decode a store's chunk files: root, shapes, dtype, codec, sharding."""

    root: str
    #: The unit of one file: a chunk, or a shard.
    block: tuple[int, ...]
    #: The inner chunk of a shard, or None when not sharded.
    inner: tuple[int, ...] | None
    dtype: str
    codec_id: str

    @classmethod
    def of(cls, array: Any, codec_id: str, root: str) -> _Layout:
        """The layout of an open zarr array written by cubebench."""
        chunks = tuple(int(c) for c in array.chunks)
        shards = tuple(int(c) for c in array.shards) if array.shards else None
        return cls(root, shards or chunks, chunks if shards else None, array.dtype.str, codec_id)

    def encoder(self) -> ChunkEncoder:
        """The chunk encoder of the store's bytes (cached per process)."""
        return encoder_for(self.codec_id, self.dtype, zarr=True)

    def path(self, key: str) -> str:
        """The file holding the chunk (or shard) stored under ``key``."""
        return os.path.join(self.root, key)

    @functools.cached_property
    def inner_grid(self) -> list[tuple[ChunkIndex, Block]]:
        """The inner chunks of one shard, in the index's (C) order (computed once, not per shard)."""
        return block_grid(self.block, self.inner or self.block)

    def inner_views(self, shard: np.ndarray) -> list[np.ndarray]:
        """Views of ``shard`` (a whole shard's array) per inner chunk, in the index's order."""
        return [shard[block] for _, block in self.inner_grid]

    def inner_inside(self, valid: tuple[int, ...]) -> list[int]:
        """The index positions of the inner chunks that start inside ``valid``, a shard's part inside the array."""
        if valid == self.block:
            return list(range(len(self.inner_grid)))
        return [
            n
            for n, (_, block) in enumerate(self.inner_grid)
            if all(b.start < v for b, v in zip(block, valid, strict=True))
        ]


def _write_batch(
    group: list[tuple[ChunkIndex, Block, str]], staged: StagedCube, layout: _Layout, write_empty: bool
) -> None:
    encoder = layout.encoder()
    blocks = [block for _, block, _ in group]
    for (_, _, key), data in zip(group, staged.iter_blocks(blocks), strict=True):
        full = padded(data, layout.block)  # Zarr stores edge chunks at full size too
        if layout.inner is None:
            if not write_empty and _is_fill(full):
                continue  # equal to the fill value: Zarr does not store it
            parts = [full if stores_raw(encoder) else encoder.encode(full)]
        else:
            parts = _encode_shard(full, data.shape, layout, encoder, write_empty)
            if not parts:
                continue
        path = layout.path(key)
        _write_file(path, parts)
        sync_soon(layout.root, [Path(path)])


def _is_fill(chunk: np.ndarray) -> bool:
    """Whether every byte of ``chunk`` is zero: the fill value, bit for bit.

    Compared as bytes, not values, so that a chunk of ``-0.0`` (equal to 0 as a number) is stored and reads back
    as it was, as zarr-python stores it too.
    """
    return not np.ascontiguousarray(chunk).view(np.uint8).any()


def _encode_shard(
    shard: np.ndarray, valid: tuple[int, ...], layout: _Layout, encoder: ChunkEncoder, write_empty: bool
) -> list[Any]:
    """A shard file's parts: encoded inner chunks, then the index and its CRC-32C; [] if no chunk is stored.

    ``valid`` is the part of the (padded) shard inside the array: as zarr-python does, inner chunks wholly
    outside it are not stored.
    """
    chunks = layout.inner_views(np.asarray(shard))  # a plain array: slicing a np.memmap costs more per slice
    stored = [n for n in layout.inner_inside(valid) if write_empty or not _is_fill(chunks[n])]
    if not stored:
        return []
    parts = [encoder.encode(chunks[n]) for n in stored]
    return [*parts, _shard_index(stored, [len(part) for part in parts], len(chunks))]


def _shard_index(stored: list[int], sizes: list[int], count: int) -> bytes:
    """The index of a shard of ``count`` inner chunks, of which ``stored`` are stored in turn (``sizes`` bytes
    each), then its CRC-32C: ``(offset, nbytes)`` per chunk, :data:`MISSING` twice for a chunk not stored."""
    import google_crc32c

    entries = [MISSING] * (2 * count)
    offset = 0
    for n, size in zip(stored, sizes, strict=True):
        entries[2 * n], entries[2 * n + 1] = offset, size
        offset += size
    index = np.array(entries, dtype="<u8").tobytes()
    return index + int(google_crc32c.value(index)).to_bytes(4, "little")


def _write_file(path: str, parts: list[Any]) -> None:
    """Write ``parts`` (bytes-like) one after the other into a new file ``path``, in as few calls as the OS takes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    views = [view for view in (memoryview(part).cast("B") for part in parts) if view]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        first = 0
        while first < len(views):
            written = os.writev(fd, views[first : first + _IOV_MAX])
            if not written:
                raise OSError(f"{path}: writev wrote nothing")
            while first < len(views) and written >= len(views[first]):
                written -= len(views[first])
                first += 1
            if written:
                views[first] = views[first][written:]
    finally:
        os.close(fd)


#: Most buffers one ``writev`` takes (POSIX guarantees 16; Linux takes 1024).
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))


def _read_batch(group: list[tuple[ChunkIndex, Block, str]], layout: _Layout) -> dict[ChunkIndex, int]:
    encoder = layout.encoder()
    target = _Target.of(layout)
    paths = [layout.path(key) for _, _, key in group]
    locations = [_file_location(path) for path in paths]
    stored = stored_buffer(locations)
    sums: dict[ChunkIndex, int] = {}
    for (index, block, _), path, location in zip(group, paths, locations, strict=True):
        _read_file(path, location, index, layout, encoder, target, stored)
        sums[index] = checksum(target.whole[tuple(slice(0, b.stop - b.start) for b in block)])
    return sums


@dataclass(frozen=True)
class _Target:
    """Where a task decodes each file: this thread's buffer of a whole block, and its views per inner chunk."""

    whole: np.ndarray
    #: Views of ``whole`` per inner chunk of a shard, in the index's order (made once per task, not per shard);
    #: empty when not sharded.
    inner: list[np.ndarray]

    @classmethod
    def of(cls, layout: _Layout) -> _Target:
        """This thread's buffer (:func:`thread_buffer`) for ``layout``'s files."""
        whole = thread_buffer(layout.block, layout.dtype)
        return cls(whole, layout.inner_views(whole) if layout.inner is not None else [])


def _file_location(path: str) -> Location:
    """The whole file as one stored chunk, or None when it does not exist (never written: the fill value)."""
    try:
        return (0, os.stat(path).st_size, 0)
    except FileNotFoundError:
        return None


def _read_file(
    path: str,
    location: Location,
    index: ChunkIndex,
    layout: _Layout,
    encoder: ChunkEncoder,
    target: _Target,
    stored: memoryview,
) -> None:
    """Decode the chunk (or shard) file ``path`` (found by :func:`_file_location`) into ``target``."""
    if location is None:
        target.whole[...] = 0
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if layout.inner is None:
            read_stored_chunk(fd, path, index, location, encoder, target.whole, stored)
            return
        data = stored[: location[1]]
        read_exactly(fd, path, index, data, 0)
    finally:
        os.close(fd)
    _decode_shard(data, path, encoder, target.inner)


def _decode_shard(data: memoryview, path: str, encoder: ChunkEncoder, inner: list[np.ndarray]) -> None:
    """Decode a shard file's bytes into ``inner`` (a shard's buffer per inner chunk, in the index's order).

    First checks the index: its CRC-32C, and that every entry lies within the chunk data. Inner chunks not stored
    are the fill value (0).
    """
    import google_crc32c

    end = len(data) - 16 * len(inner) - 4  # where the chunk data ends and the index begins
    if end < 0:
        raise OSError(f"{path}: {len(data)} bytes, too short for a shard index of {len(inner)} chunks")
    raw_index = bytes(data[end : len(data) - 4])  # google_crc32c takes only bytes
    if google_crc32c.value(raw_index) != int.from_bytes(data[len(data) - 4 :], "little"):
        raise OSError(f"{path}: the shard index fails its CRC-32C check")
    spans: list[list[int]] = []
    outs: list[np.ndarray] = []
    for entry, out in zip(np.frombuffer(raw_index, dtype="<u8").reshape(-1, 2).tolist(), inner, strict=True):
        offset, nbytes = entry
        if offset == MISSING:
            out[...] = 0
        elif offset > end or nbytes > end - offset:
            raise OSError(f"{path}: a shard index entry points past the chunk data ({offset} + {nbytes} > {end})")
        else:
            spans.append(entry)
            outs.append(out)
    encoder.decode_many(data, spans, outs)


def _pattern_batch(item: tuple[list[Window], dict[ChunkIndex, str]], sel: Selection, layout: _Layout) -> list[TilePart]:
    tiles, keys = item
    encoder = layout.encoder()
    target = _Target.of(layout)
    locations = {index: _file_location(layout.path(key)) for index, key in keys.items()}
    stored = stored_buffer(locations.values())

    def read_chunk(index: ChunkIndex) -> np.ndarray:
        _read_file(layout.path(keys[index]), locations[index], index, layout, encoder, target, stored)
        return target.whole

    return [
        reduce_tile(sel, t[0].start, t[1].start, assemble(sel, t, layout.block, target.whole.dtype, read_chunk))
        for t in tiles
    ]
