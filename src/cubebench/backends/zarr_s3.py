"""``zarr`` and ``zarr_direct`` on S3: the same Zarr v3 stores, in an S3 bucket instead of a local folder.

``zarr``: zarr-python on each worker through ``zarr.storage.ObjectStore`` over obstore
(:func:`cubebench.storage.zarr_store`, counted and paced), each task writing or reading whole chunks (or shards).
``zarr_direct``: zarr-python writes only the metadata; each task encodes its chunks (or shards, in Zarr's
``sharding_indexed`` layout) and PUTs each as one object, and reads GET each object whole (a few in flight while
it decodes) and decode it straight into the chunk buffer. Both make ordinary Zarr v3 stores: plain zarr-python over
an ``ObjectStore`` reads them back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import ReadBack, WriteSettings, padded
from cubebench.backends.s3_io import S3Face, S3Target, decode_into, fetched, overlapped
from cubebench.backends.s3_shards import decode_shard_window, fetch_shard_window
from cubebench.backends.zarr_ import ZarrBackend, create_store
from cubebench.backends.zarr_direct import _codec_of, _decode_shard, _encode_shard, _is_fill, _Layout
from cubebench.codecs import stores_raw
from cubebench.cube import Block, StagedCube, block_shape, checksum, largest_block_bytes, thread_buffer
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
    selection,
)
from cubebench.storage import get_object, put, zarr_store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from distributed import Client

    from cubebench.codecs import CodecSpec

ChunkIndex = tuple[int, ...]


def open_s3_array(target: S3Target, mode: str, write_empty_chunks: bool = True) -> Any:
    """The target's Zarr array through a counted (and paced) ``ObjectStore``, in this process."""
    import zarr

    import cubebench.codecs.adapter  # noqa: F401  (registers cubebench's chunk codec in this process)

    store = zarr_store(target.storage, target.key, target.counter)
    # zarr_format=3: without it zarr also probes for v2 metadata, two more GETs per open
    return zarr.open_array(store=store, mode=mode, zarr_format=3).with_config(
        {"write_empty_chunks": write_empty_chunks}
    )


class ZarrS3(S3Face):
    """zarr-python on every worker, whole chunks (or shards) per task, through ``ObjectStore``."""

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: S3Target,
        settings: WriteSettings,
    ) -> dict[str, float]:
        """Create the array's metadata here, then let the workers fill it batch by batch."""
        dtype = np.dtype(staged.dtype)
        store = zarr_store(target.storage, target.key, target.counter)
        create_store(store, staged.shape, dtype, codec, *ZarrBackend._layout(chunks, settings))
        block = ZarrBackend().storage_block(chunks, settings)
        work = scan_batches(client, staged.shape, block, dtype.itemsize)
        for _ in run_batches(client, _write_batch, work, staged, target, settings.write_empty_chunks):
            pass
        return {}

    def read(self, client: Client, target: S3Target, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Each worker reads and decodes whole chunks (or shards) of its batch."""
        array = open_s3_array(target, "r")
        block = tuple(int(c) for c in (array.shards or array.chunks))
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(
            client, _read_batch, scan_batches(client, array.shape, block, array.dtype.itemsize), target
        ):
            sums.update(result)
        return ReadBack(sums)

    def stored_shape(self, target: S3Target) -> tuple[int, ...]:
        """The array's shape, from its metadata."""
        return tuple(int(s) for s in open_s3_array(target, "r").shape)

    def pattern_result(
        self, client: Client, target: S3Target, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Zarr slicing on the workers, one column of chunks (or shards) of the selection per tile."""
        array = open_s3_array(target, "r")
        sel = selection(pattern, tuple(int(s) for s in array.shape))
        block = tuple(int(c) for c in (array.shards or array.chunks))
        parts: list[TilePart] = []
        for result in run_batches(
            client, _pattern_batch, pattern_batches(sel, block, array.dtype.itemsize, BATCH_BYTES), sel, target
        ):
            parts.extend(result)
        return combine(sel, parts)


def _write_batch(group: list[tuple[ChunkIndex, Block]], staged: StagedCube, target: S3Target, empty: bool) -> None:
    array = open_s3_array(target, "r+", empty)
    blocks = [block for _, block in group]
    for block, data in zip(blocks, staged.iter_blocks(blocks), strict=True):
        array[block] = data


def _read_batch(group: list[tuple[ChunkIndex, Block]], target: S3Target) -> dict[ChunkIndex, int]:
    from zarr.core.buffer import default_buffer_prototype

    array = open_s3_array(target, "r")
    wrap = default_buffer_prototype().nd_buffer.from_numpy_array
    capacity = largest_block_bytes((block for _, block in group), array.dtype)
    sums: dict[ChunkIndex, int] = {}
    for index, block in group:
        out = thread_buffer(block_shape(block), array.dtype, capacity)
        array.get_basic_selection(block, out=wrap(out))
        sums[index] = checksum(out)
    return sums


def _pattern_batch(tiles: list[Window], sel: Selection, target: S3Target) -> list[TilePart]:
    array = open_s3_array(target, "r")
    return [reduce_tile(sel, ys.start, xs.start, array[ys, xs, sel.det[0], sel.det[1]]) for ys, xs in tiles]


class ZarrDirectS3(S3Face):
    """zarr-python writes the metadata; workers encode and PUT chunk (or shard) objects, GET and decode them."""

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: S3Target,
        settings: WriteSettings,
    ) -> dict[str, float]:
        """Create the metadata here, then let the workers encode and PUT its chunk (or shard) objects."""
        store = zarr_store(target.storage, target.key, target.counter)
        layout_args = ZarrBackend._layout(chunks, settings)
        array = create_store(store, staged.shape, np.dtype(staged.dtype), codec, *layout_args)
        layout = _Layout.of(array, codec.id, "")
        for _ in run_batches(client, _put_batch, _keyed(client, array, layout), staged, layout, target, settings):
            pass
        return {}

    def read(self, client: Client, target: S3Target, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Each worker GETs and decodes the chunk (or shard) objects of its batch, a few in flight."""
        array = open_s3_array(target, "r")
        layout = _Layout.of(array, _codec_of(array, target.key), "")  # type: ignore[arg-type]
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(client, _get_batch, _keyed(client, array, layout), layout, target):
            sums.update(result)
        return ReadBack(sums)

    def stored_shape(self, target: S3Target) -> tuple[int, ...]:
        """The array's shape, from its metadata."""
        return tuple(int(s) for s in open_s3_array(target, "r").shape)

    def pattern_result(
        self, client: Client, target: S3Target, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """GET and decode only the chunk (or shard) objects overlapping the selection, in parallel."""
        array = open_s3_array(target, "r")
        sel = selection(pattern, tuple(int(s) for s in array.shape))
        layout = _Layout.of(array, _codec_of(array, target.key), "")  # type: ignore[arg-type]
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
        for result in run_batches(client, _pattern_objects, items, sel, layout, target):
            parts.extend(result)
        return combine(sel, parts)


def _keyed(client: Client, array: Any, layout: _Layout) -> list[list[tuple[ChunkIndex, Block, str]]]:
    return [
        [(index, block, array.metadata.encode_chunk_key(index)) for index, block in group]
        for group in scan_batches(client, array.shape, layout.block, array.dtype.itemsize)
    ]


def _put_batch(
    group: list[tuple[ChunkIndex, Block, str]],
    staged: StagedCube,
    layout: _Layout,
    target: S3Target,
    settings: WriteSettings,
) -> None:
    """Encode the batch's chunks (or shards) in order and PUT each object, a few in flight while the next encodes."""
    storage, counter = target.store_storage, target.counter
    overlapped(lambda item: put(storage, item[0], item[1], counter), _encoded_objects(group, staged, layout, settings))


def _encoded_objects(
    group: list[tuple[ChunkIndex, Block, str]], staged: StagedCube, layout: _Layout, settings: WriteSettings
) -> Iterator[tuple[str, memoryview]]:
    """``(key, body)`` of each object the batch stores (fill-only chunks skipped unless empty chunks are written)."""
    encoder = layout.encoder()
    blocks = [block for _, block, _ in group]
    for (_, _, key), data in zip(group, staged.iter_blocks(blocks), strict=True):
        full = padded(data, layout.block)
        if layout.inner is None:
            if not settings.write_empty_chunks and _is_fill(full):
                continue
            # a raw chunk is copied: the source's buffer is reused for the next block while its PUT is in flight
            parts: list[Any] = [full.tobytes() if stores_raw(encoder) else encoder.encode(full)]
        else:
            parts = _encode_shard(full, data.shape, layout, encoder, settings.write_empty_chunks)
            if not parts:
                continue
        body = parts[0] if len(parts) == 1 else b"".join(memoryview(p).cast("B") for p in parts)
        yield key, memoryview(body).cast("B")


def _fetch(target: S3Target) -> Any:
    storage, counter = target.store_storage, target.counter
    return lambda key: get_object(storage, key, counter)


def _decode(data: bytes | None, key: str, layout: _Layout, out: np.ndarray) -> None:
    encoder = layout.encoder()
    if layout.inner is None or data is None:
        decode_into(data, key, None if data is None else (0, len(data), 0), encoder, out)
    else:
        _decode_shard(memoryview(data), key, encoder, layout.inner_views(out))


def _get_batch(group: list[tuple[ChunkIndex, Block, str]], layout: _Layout, target: S3Target) -> dict[ChunkIndex, int]:
    buffer = thread_buffer(layout.block, layout.dtype)
    sums: dict[ChunkIndex, int] = {}
    for (index, block, key), data in _fetched(group, target):
        _decode(data, key, layout, buffer)
        sums[index] = checksum(buffer[tuple(slice(0, b.stop - b.start) for b in block)])
    return sums


def _fetched(group: list[tuple[ChunkIndex, Block, str]], target: S3Target) -> Any:
    fetch = _fetch(target)
    return fetched(lambda item: fetch(item[2]), group)


def _pattern_objects(
    item: tuple[list[Window], dict[ChunkIndex, str]], sel: Selection, layout: _Layout, target: S3Target
) -> list[TilePart]:
    """A batch of tiles: whole chunk objects, or (sharded) each shard's index and only the inner chunks needed."""
    tiles, keys = item
    buffer = thread_buffer(layout.block, layout.dtype)
    if layout.inner is None:
        fetch = _fetch(target)
        data = dict(fetched(lambda index: fetch(keys[index]), list(keys)))

        def read_chunk(index: ChunkIndex) -> np.ndarray:
            _decode(data[index], keys[index], layout, buffer)
            return buffer
    else:
        storage, counter, grid = target.store_storage, target.counter, layout.inner_grid
        windows = {
            index: (tile[0], tile[1], sel.det[0], sel.det[1])
            for tile in tiles
            for index in overlapping_chunks(sel, tile, layout.block)
        }

        def fetch_part(index: ChunkIndex) -> Any:
            origin = tuple(i * b for i, b in zip(index, layout.block, strict=True))
            return fetch_shard_window(storage, keys[index], grid, origin, windows[index], counter)

        shards = dict(fetched(fetch_part, list(keys)))

        def read_chunk(index: ChunkIndex) -> np.ndarray:
            decode_shard_window(shards[index], grid, layout.encoder(), buffer)
            return buffer

    return [
        reduce_tile(sel, t[0].start, t[1].start, assemble(sel, t, layout.block, buffer.dtype, read_chunk))
        for t in tiles
    ]
