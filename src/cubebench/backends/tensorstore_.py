"""Zarr v3 written and read through tensorstore (Google's C++ library): the store a tensorstore user gets.

The array is created by tensorstore's ``zarr3`` driver on a ``file`` kvstore, with the codecs of the catalog's
Zarr face serialised as they are (:meth:`cubebench.codecs.CodecSpec.zarr_kwargs`, each codec's ``to_dict``): the
same Blosc (typesize = itemsize, the shuffle, blocksize 0), gzip and zstd parameters zarr-python stores, so
unsharded chunk files are byte for byte zarr-python's (gzip aside: another gzip header and deflate build, within
0.5 %). With ``zarr: {shards: true}`` the codec is ``sharding_indexed`` with zarr-python's layout (the chunk
strategy's shape as the shard, single frames inside, index at the end with a CRC-32C); tensorstore orders the
inner chunks in a shard file differently from zarr-python, so shard files differ while every inner chunk's bytes
agree. Codecs tensorstore has no form of (cubebench's HDF5-framed codecs, the pcodec serializer) are unavailable.

Each task opens the store itself and writes (or reads) its own whole chunks (or shards), so no two tasks touch one
file. Its thread pools are set explicitly per task: ``data_copy_concurrency`` (encode/decode threads) is the
experiment's ``cluster.codec_threads``, ``file_io_concurrency`` is ``zarr.concurrency``; both are recorded per
cell. tensorstore's own fsync per write (``file_io_sync``) is off: the workers fsync each chunk file in the
background as the other Zarr backends do (:func:`cubebench.fileio.sync_soon`), and the write ends when all are on
disk. ``write_empty_chunks: false`` is tensorstore's ``store_data_equal_to_fill_value: false``. On S3 the same
store goes through tensorstore's ``s3`` kvstore (:mod:`cubebench.backends.tensorstore_s3`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import Backend, ReadBack, WriteSettings
from cubebench.backends.zarr_ import ZarrBackend, fill_store
from cubebench.cube import Block, StagedCube, block_shape, checksum, largest_block_bytes, thread_buffer
from cubebench.errors import BackendError, CodecUnavailableError
from cubebench.fileio import sync_soon
from cubebench.parallel import BATCH_BYTES, run_batches, scan_batches
from cubebench.patterns import PatternResult, Selection, TilePart, Window, combine, pattern_batches, reduce_tile
from cubebench.storage import S3Storage

if TYPE_CHECKING:
    from distributed import Client

    from cubebench.codecs import CodecSpec
    from cubebench.storage import StorageSpec

ChunkIndex = tuple[int, ...]

#: Zarr v3 codec names tensorstore's zarr3 driver implements, of those the catalog's Zarr faces use.
TENSORSTORE_CODECS = ("blosc", "gzip", "zstd")
INSTALL_HINT = "tensorstore is not installed (pip install 'cubebench[peers]')"
DIMENSION_NAMES = ["scan_y", "scan_x", "det_y", "det_x"]
#: Options of a task's store, as a plain tuple (pickled to the workers): write_empty_chunks, data copy threads,
#: file I/O concurrency.
Options = tuple[bool, int, int]
#: Where a store lives: a local folder (tensorstore's ``file`` kvstore), or a kvstore spec (its ``s3`` driver).
Where = str | dict[str, Any]


class TensorstoreBackend(ZarrBackend):
    """Zarr v3 through tensorstore's ``zarr3`` driver, optional ``sharding_indexed`` (as the ``zarr`` backend)."""

    name = "tensorstore"
    chunk_seconds = 1.5e-3  # not measured at 65 536 chunks yet: the zarr backend's figure
    s3_unsupported = ""  # on S3 through its own s3 kvstore (backends.tensorstore_s3), without the link model

    def check_storage(self, storage: StorageSpec, settings: WriteSettings | None = None) -> None:
        """Refuse S3 storage with a link model: its waits cannot be applied inside tensorstore's HTTP client.

        The ``zarr.codec_pipeline`` setting is zarr-python's and does not apply (tensorstore has its own codecs).
        """
        Backend.check_storage(self, storage, settings)
        if isinstance(storage, S3Storage) and storage.link:
            raise BackendError(
                f"{self.name} on {storage.label}: the link model (latency_ms, bandwidth_MBps) cannot be applied "
                "inside tensorstore's own S3 client, so its cells would not compare; use an entry without it"
            )

    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Needs tensorstore, and a Zarr face made only of codecs tensorstore implements."""
        codec_json(codec, dtype)

    def check_settings(self, codec: CodecSpec, dtype: np.dtype[Any], settings: WriteSettings) -> None:
        """:meth:`check`: the ``zarr.codec_pipeline`` setting is zarr-python's, not tensorstore's."""
        self.check(codec, dtype)

    def codec_pipeline(self, settings: WriteSettings) -> str:
        """'': tensorstore has its own codecs."""
        return ""

    def stores_empty_chunks(self, settings: WriteSettings) -> bool:
        """The setting (tensorstore's ``store_data_equal_to_fill_value``)."""
        return settings.write_empty_chunks

    def recorded(self, settings: WriteSettings) -> dict[str, float]:
        """The thread-pool limits every task's tensorstore context had."""
        _, copies, io = options(settings)
        return {"data_copy_concurrency": float(copies), "file_io_concurrency": float(io)}

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        settings: WriteSettings,
    ) -> None:
        """Create the array here (its ``zarr.json``), then let each worker write its own chunks (or shards)."""
        dtype = np.dtype(staged.dtype)
        load_everywhere(client)
        create(target, staged.shape, dtype, codec, *self._layout(chunks, settings))
        block = self.storage_block(chunks, settings)
        work = scan_batches(client, staged.shape, block, dtype.itemsize)
        fill_store(client, target, _write_batch, work, staged, str(target), options(settings))

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Each worker reads and decodes whole chunks (or shards) of its batch into its reused buffer."""
        load_everywhere(client)
        store = _open(str(target), options(settings))
        itemsize = np.dtype(store.dtype.numpy_dtype).itemsize
        work = scan_batches(client, tuple(store.shape), self.storage_block(chunks, settings), itemsize)
        sums: dict[ChunkIndex, int] = {}
        for result in run_batches(client, _read_batch, work, str(target), options(settings)):
            sums.update(result)
        return ReadBack(sums)

    def stored_shape(self, target: Path) -> tuple[int, ...]:
        """The array's shape, from its metadata (read by tensorstore)."""
        return tuple(int(s) for s in _open(str(target), (True, 1, 1)).shape)

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """tensorstore slicing on the workers, one column of chunks (or shards) of the selection per tile."""
        store = _open(str(target), options(settings))
        layout = store.chunk_layout
        block = tuple(int(c) for c in layout.write_chunk.shape)
        work = pattern_batches(sel, block, np.dtype(store.dtype.numpy_dtype).itemsize, BATCH_BYTES)
        parts: list[TilePart] = []
        for result in run_batches(client, _pattern_batch, work, sel, str(target), options(settings)):
            parts.extend(result)
        return combine(sel, parts)


def load_everywhere(client: Client) -> None:
    """Import tensorstore on every worker (about 1.2 s here the first time, a few ms after).

    The warm-up pass runs one task, on one worker: without this, another worker would load the library inside
    the first timed cell.
    """
    client.run(_load)


def _load() -> None:
    import tensorstore  # noqa: F401


def options(settings: WriteSettings) -> Options:
    """A task's store options from ``settings``: what is stored, and the context's explicit thread-pool limits."""
    return (settings.write_empty_chunks, max(1, settings.codec_threads), max(1, settings.io_concurrency))


def codec_json(codec: CodecSpec, dtype: np.dtype[Any]) -> list[dict[str, Any]]:
    """The codec's Zarr face as tensorstore codec JSON (after the little-endian ``bytes`` codec).

    Raises
    ------
    CodecUnavailableError
        When tensorstore is missing, the codec has no Zarr face, or the face has a codec tensorstore lacks.
    """
    try:
        import tensorstore  # noqa: F401
    except ImportError:
        raise CodecUnavailableError(f"{codec.id}: {INSTALL_HINT}") from None
    kwargs = codec.zarr_kwargs(dtype)
    if kwargs.get("serializer") is not None or kwargs.get("filters"):
        what = type(kwargs.get("serializer") or kwargs["filters"][0]).__name__
        raise CodecUnavailableError(f"{codec.id}: tensorstore has no {what} (a zarr-python codec)")
    out: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    for compressor in kwargs.get("compressors", []):
        spec = compressor.to_dict()
        if spec["name"] not in TENSORSTORE_CODECS:
            raise CodecUnavailableError(
                f"{codec.id}: tensorstore's zarr3 driver has no {spec['name']} codec "
                f"(it has {', '.join(TENSORSTORE_CODECS)})"
            )
        out.append(spec)
    return out


def metadata(
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    codec: CodecSpec,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
) -> dict[str, Any]:
    """Zarr v3 array metadata as zarr-python's ``create_store`` makes it: same codecs, fill value, names, attribute.

    With ``shards``, the grid is of shards and the codec ``sharding_indexed`` of ``chunks``, index at the end
    (``bytes`` + ``crc32c``), as zarr-python writes it.
    """
    codecs = codec_json(codec, dtype)
    grid = shards or chunks
    if shards is not None:
        index = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
        sharding = {"chunk_shape": list(chunks), "codecs": codecs, "index_codecs": index, "index_location": "end"}
        codecs = [{"name": "sharding_indexed", "configuration": sharding}]
    return {
        "shape": list(shape),
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(grid)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "dimension_names": DIMENSION_NAMES,
        "attributes": {"cubebench_codec": codec.id},
    }


def create(
    target: Path | Where,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    codec: CodecSpec,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
) -> None:
    """Create the empty array at ``target`` (a folder or a kvstore spec) with tensorstore (writes its ``zarr.json``)."""
    import tensorstore as ts

    where = target if isinstance(target, dict) else str(target)
    spec = {**_spec(where, True), "metadata": metadata(shape, dtype, codec, chunks, shards)}
    ts.open(spec, create=True, context=context((True, 1, 1))).result()


def context(opts: Options) -> Any:
    """A tensorstore context with explicit thread-pool limits and no fsync per write (the workers fsync); the I/O
    limit is also the S3 driver's requests in flight."""
    import tensorstore as ts

    _, copies, io = opts
    return ts.Context(
        {
            "data_copy_concurrency": {"limit": copies},
            "file_io_concurrency": {"limit": io},
            "s3_request_concurrency": {"limit": io},
            "file_io_sync": False,
        }
    )


def _spec(where: Where, write_empty: bool) -> dict[str, Any]:
    return {
        "driver": "zarr3",
        "kvstore": where if isinstance(where, dict) else {"driver": "file", "path": where},
        "store_data_equal_to_fill_value": write_empty,
    }


def _open(path: Where, opts: Options) -> Any:
    import tensorstore as ts

    return ts.open(_spec(path, opts[0]), open=True, context=context(opts)).result()


def chunk_key(index: ChunkIndex) -> str:
    """The file of chunk (or shard) ``index`` under the store (the ``default`` key encoding, ``/``)."""
    return "/".join(["c", *(str(i) for i in index)])


def _write_batch(group: list[tuple[ChunkIndex, Block]], staged: StagedCube, path: Where, opts: Options) -> None:
    store = _open(path, opts)
    blocks = [block for _, block in group]
    for (index, block), data in zip(group, staged.iter_blocks(blocks), strict=True):
        store[block].write(data).result()  # returns when the chunk is stored (a local file: not yet fsynced)
        if isinstance(path, dict):
            continue  # an S3 object is durable when its PUT returns
        chunk_file = Path(path) / chunk_key(index)
        if chunk_file.exists():  # a chunk equal to the fill value may not have been stored
            sync_soon(path, [chunk_file])


def _read_batch(group: list[tuple[ChunkIndex, Block]], path: Where, opts: Options) -> dict[ChunkIndex, int]:
    """Read each chunk (or shard) into this thread's reused buffer (tensorstore writes into a view of it)."""
    import tensorstore as ts

    store = _open(path, opts)
    dtype = np.dtype(store.dtype.numpy_dtype)
    capacity = largest_block_bytes((block for _, block in group), dtype)
    sums: dict[ChunkIndex, int] = {}
    for index, block in group:
        out = thread_buffer(block_shape(block), dtype, capacity)
        ts.array(out, copy=False, write=True).write(store[block]).result()
        sums[index] = checksum(out)
    return sums


def _pattern_batch(tiles: list[Window], sel: Selection, path: Where, opts: Options) -> list[TilePart]:
    store = _open(path, opts)
    return [
        reduce_tile(sel, ys.start, xs.start, store[ys, xs, sel.det[0], sel.det[1]].read().result()) for ys, xs in tiles
    ]
