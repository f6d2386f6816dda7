"""Zarr v3 on local disk, written and read in parallel by the workers.

Each task writes (or reads) a batch of whole chunks, or whole shards when sharding is on, so tasks never
touch the same stored object. ``write_empty_chunks`` is a recorded setting: Zarr skips chunks equal to the fill
value by default while HDF5 stores them, which changes sizes on very sparse data. ``codec_pipeline`` (a recorded
setting too) runs the same zarr-python calls through zarr-python's pipeline or the ``zarrs`` Rust one
(:mod:`cubebench.backends._pipelines`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends import _pipelines
from cubebench.backends.base import Backend, ReadBack, WriteSettings
from cubebench.cube import Block, StagedCube, block_shape, checksum, largest_block_bytes, thread_buffer
from cubebench.errors import BackendError
from cubebench.fileio import fsync_tree, sync_soon, wait_synced
from cubebench.parallel import BATCH_BYTES, run_batches, scan_batches
from cubebench.patterns import PatternResult, Selection, TilePart, Window, combine, pattern_batches, reduce_tile
from cubebench.storage import S3Storage

if TYPE_CHECKING:
    from distributed import Client

    from cubebench.codecs import CodecSpec
    from cubebench.storage import StorageSpec

ChunkIndex = tuple[int, ...]


class ZarrBackend(Backend):
    """Zarr v3 ``LocalStore``, optional sharding (shard = the chunk strategy, inner chunk = one frame)."""

    name = "zarr"
    s3_unsupported = ""  # on S3 through its face in backends.S3_FACES
    suffix = ".zarr"
    reads_blocks = True
    shardable = True
    chunk_seconds = 1.5e-3  # 8 GiB, 65 536 chunk files: write 86 s against 18.2, read 33.9 against 5.0

    def check_storage(self, storage: StorageSpec, settings: WriteSettings | None = None) -> None:
        """As every backend; and the zarrs pipeline only on local stores (the S3 face goes through zarr-python, so
        a zarrs cell there would record a pipeline it did not use)."""
        super().check_storage(storage, settings)
        if isinstance(storage, S3Storage) and settings is not None and settings.codec_pipeline != "zarr-python":
            raise BackendError(
                f"{self.name} on {storage.label}: the {settings.codec_pipeline} pipeline runs on local stores here "
                "(the S3 path uses zarr-python's)"
            )

    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Unavailable when the codec has no Zarr v3 form here."""
        codec.zarr_kwargs(dtype)

    def check_settings(self, codec: CodecSpec, dtype: np.dtype[Any], settings: WriteSettings) -> None:
        """:meth:`check`, and the codec pipeline's own refusal (zarrs runs no cubebench HDF5-framed codec)."""
        self.check(codec, dtype)
        _pipelines.check(codec, dtype, settings.codec_pipeline, settings.shards)

    def codec_pipeline(self, settings: WriteSettings) -> str:
        """``zarr-python`` or ``zarrs``: the experiment's ``zarr.codec_pipeline``."""
        return settings.codec_pipeline

    def stores_empty_chunks(self, settings: WriteSettings) -> bool:
        """The setting, except under zarrs: zarrs 0.2 stores no chunk equal to the fill value whatever it says."""
        return settings.write_empty_chunks and _pipelines.stores_empty_chunks(settings.codec_pipeline)

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        settings: WriteSettings,
    ) -> None:
        """Create the array here, then let the workers fill it batch by batch."""
        dtype = np.dtype(staged.dtype)
        create_store(target, staged.shape, dtype, codec, *self._layout(chunks, settings))
        block = self.storage_block(chunks, settings)
        work = scan_batches(client, staged.shape, block, dtype.itemsize)
        options = (settings.write_empty_chunks, settings.codec_pipeline)
        fill_store(client, target, _write_batch, work, staged, str(target), options)

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Each worker reads and decodes whole chunks (or shards) of its batch."""
        import zarr

        array = zarr.open_array(str(target), mode="r")
        block = self.storage_block(chunks, settings)
        work = scan_batches(client, array.shape, block, array.dtype.itemsize)
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(client, _read_batch, work, str(target), settings.codec_pipeline):
            sums.update(result)
        return ReadBack(sums)

    def stored_shape(self, target: Path) -> tuple[int, ...]:
        """The array's shape, from its metadata."""
        import zarr

        return tuple(int(s) for s in zarr.open_array(str(target), mode="r").shape)

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """Zarr slicing on the workers, one column of chunks (or shards) of the selection per tile."""
        import zarr

        array = zarr.open_array(str(target), mode="r")
        block = tuple(int(c) for c in (array.shards or array.chunks))
        parts: list[TilePart] = []
        work = pattern_batches(sel, block, array.dtype.itemsize, BATCH_BYTES)
        for result in run_batches(client, _pattern_batch, work, sel, str(target), settings.codec_pipeline):
            parts.extend(result)
        return combine(sel, parts)

    @staticmethod
    def _layout(chunks: tuple[int, ...], settings: WriteSettings) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        if settings.shards:
            return (1, 1, chunks[2], chunks[3]), chunks
        return chunks, None


def create_store(
    target: Path | Any,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    codec: CodecSpec,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
) -> Any:
    """Create the empty Zarr v3 array every Zarr backend writes into, and return it (open for writing).

    ``target`` is a local folder, or a zarr store (an S3 store of :func:`cubebench.storage.zarr_store`).

    Fill value 0, the cube's dimension names, and the catalog codec id as the ``cubebench_codec`` attribute.
    Whether chunks equal to the fill value are stored is decided by the writer (``write_empty_chunks``).
    """
    import zarr

    return zarr.create_array(
        store=str(target) if isinstance(target, Path) else target,
        shape=shape,
        chunks=chunks,
        shards=shards,
        dtype=dtype,
        fill_value=0,
        zarr_format=3,
        dimension_names=("scan_y", "scan_x", "det_y", "det_x"),
        attributes={"cubebench_codec": codec.id},
        **codec.zarr_kwargs(dtype),
    )


def fill_store(client: Client, target: Path, task: Any, work: list[Any], *args: Any) -> None:
    """Run ``task(batch, *args)`` for every batch of ``work``; return when every chunk file is on disk.

    The workers fsync each chunk (or shard) file they write in the background (:func:`sync_soon`); this waits
    for all of them, then makes the metadata durable, so the timed write ends only when the store is on disk.
    """
    workers = set(client.scheduler_info(n_workers=-1).get("workers", {}))
    for _ in run_batches(client, task, work, *args):
        pass
    client.run(wait_synced, str(target))
    if workers - set(client.scheduler_info(n_workers=-1).get("workers", {})):
        fsync_tree(target)  # a worker was lost with fsyncs pending: make the whole store durable from here
    fsync_tree(target / "zarr.json")


def _write_batch(
    group: list[tuple[ChunkIndex, Block]], staged: StagedCube, path: str, options: tuple[bool, str]
) -> None:
    write_empty, pipeline = options
    array = _pipelines.open_array(path, "r+", pipeline, write_empty)
    blocks = [block for _, block in group]
    for (index, block), data in zip(group, staged.iter_blocks(blocks), strict=True):
        array[block] = data
        # make the chunk (or shard) file durable here, in the background while the next one is encoded, rather
        # than file by file in the client; a chunk equal to the fill value may not have been stored
        chunk_file = Path(path) / array.metadata.encode_chunk_key(index)
        if chunk_file.exists():
            sync_soon(path, [chunk_file])


def _read_batch(group: list[tuple[ChunkIndex, Block]], path: str, pipeline: str) -> dict[ChunkIndex, int]:
    """Read each chunk (or shard) through zarr's ``get_basic_selection`` into this thread's reused buffer.

    Zarr's public API for a caller-owned output array: a fresh array per chunk costs its page faults again
    (measured in-process on 128 MiB chunks: blosc-zstd 0.63-0.66 GB/s with ``arr[block]``, 0.96-0.99 with ``out=``).
    """
    from zarr.core.buffer import default_buffer_prototype

    array = _pipelines.open_array(path, "r", pipeline)
    wrap = default_buffer_prototype().nd_buffer.from_numpy_array
    capacity = largest_block_bytes((block for _, block in group), array.dtype)
    sums: dict[ChunkIndex, int] = {}
    for index, block in group:
        out = thread_buffer(block_shape(block), array.dtype, capacity)
        array.get_basic_selection(block, out=wrap(out))
        sums[index] = checksum(out)
    return sums


def _pattern_batch(tiles: list[Window], sel: Selection, path: str, pipeline: str) -> list[TilePart]:
    array = _pipelines.open_array(path, "r", pipeline)
    return [reduce_tile(sel, ys.start, xs.start, array[ys, xs, sel.det[0], sel.det[1]]) for ys, xs in tiles]
