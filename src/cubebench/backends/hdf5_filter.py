"""HDF5 through h5py's filter pipeline: what a user gets from ``create_dataset(compression=...)``.

h5py serialises every HDF5 call, so this path compresses on one core whatever the cluster: the writer and the
reader each run as a single task on one worker, streaming chunk by chunk from the staged cube. The gap between
this path and :mod:`cubebench.backends.hdf5_direct` is one of cubebench's results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import Backend, ReadBack, WriteSettings
from cubebench.backends.hdf5_paging import create_options, open_options, page_size_of
from cubebench.cube import StagedCube, block_grid, checksum
from cubebench.fileio import WritebackAhead, fsync_tree, hdf5_for_writing
from cubebench.patterns import PatternResult, Selection, TilePart, combine, reduce_tile, scan_tiles

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.codecs import CodecSpec

#: In-file path of the data, as in EMD 1.0, so the files open in py4DSTEM and friends.
DATA_PATH = "version_1/data/datacubes/datacube_000/data"
#: Selected bytes an access-pattern read asks h5py for in one call.
PATTERN_BYTES = 32 * 2**20


class HDF5FilterBackend(Backend):
    """h5py + hdf5plugin filter pipeline, one writer and one reader process."""

    name = "hdf5"
    s3_unsupported = ""  # on S3 through its face in backends.S3_FACES
    suffix = ".h5"
    pageable = True
    parallel = False
    reads_blocks = True
    chunk_seconds = 2.8e-4  # 8 GiB, 65 536 chunks: write 40.8 s against 29.2, read 12.4 against 5.9
    writes = reads = "one_process"

    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Unavailable when this HDF5 build lacks the codec's filter."""
        codec.hdf5_filter(dtype)

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        settings: WriteSettings,
    ) -> None:
        """Write on one worker, chunk by chunk through the filter pipeline (paged under ``hdf5.page_size``)."""
        page_size = self.page_size(settings)
        client.submit(_write, staged, codec, chunks, target, page_size, pure=False).result()

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Read on one worker, chunk by chunk through the filter pipeline (a page buffer for a paged file)."""
        return ReadBack(client.submit(_read, target, self.page_size(settings), pure=False).result())

    def stored_shape(self, target: Path) -> tuple[int, ...]:
        """The dataset's shape, from the file."""
        import h5py

        with h5py.File(target, "r") as f:
            return tuple(int(s) for s in f[DATA_PATH].shape)

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """h5py slicing on one worker, one chunk column of the selection at a time (HDF5 decodes what overlaps)."""
        page_size = self.page_size(settings)
        parts: list[TilePart] = client.submit(_read_pattern, target, sel, page_size, pure=False).result()
        return combine(sel, parts)


def emd_group(f: Any) -> Any:
    """Create the EMD 1.0 file attributes and datacube group (the ``data`` dataset goes in it); return the group."""
    f.attrs["version_major"] = 1
    f.attrs["version_minor"] = 0
    group = f.require_group("version_1/data/datacubes/datacube_000")
    group.attrs["emd_group_type"] = 1
    return group


def codec_of(ds: Any) -> str:
    """The codec id a cubebench HDF5 dataset records ('' when none), whether stored fixed-length or not."""
    value = ds.attrs.get("cubebench_codec", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def emd_dims(group: Any, shape: tuple[int, ...]) -> None:
    """Add the EMD dimension vectors of a 4-D cube of ``shape`` to its datacube ``group``."""
    for axis, name in enumerate(("scan_y", "scan_x", "det_y", "det_x")):
        dim = group.create_dataset(f"dim{axis + 1}", data=np.arange(shape[axis], dtype=np.int32))
        dim.attrs["name"] = name
        dim.attrs["units"] = "pixel"


def create_emd_dataset(f: Any, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...], codec: CodecSpec) -> Any:
    """Create the EMD 1.0 group layout and its chunked dataset with ``codec``'s filter; return the dataset.

    In a paged file the codec attribute is a fixed-length string: a variable-length one lives in HDF5's global
    heap, which paged aggregation puts in a raw-data page, so reading it would cost a reader one more page.
    """
    import h5py

    group = emd_group(f)
    ds = group.create_dataset("data", shape=shape, dtype=dtype, chunks=chunks, **codec.hdf5_filter(np.dtype(dtype)))
    ds.attrs["cubebench_codec"] = np.bytes_(codec.id) if page_size_of(f) else codec.id
    emd_dims(group, shape)
    if not isinstance(ds, h5py.Dataset):
        raise TypeError(f"{DATA_PATH} is not a dataset")
    return ds


def _write(staged: StagedCube, codec: CodecSpec, chunks: tuple[int, ...], target: Path, page_size: int = 0) -> None:
    dtype = np.dtype(staged.dtype)
    with hdf5_for_writing(target, **create_options(page_size)) as f, WritebackAhead(target) as writeback:
        ds = create_emd_dataset(f, staged.shape, dtype, chunks, codec)
        blocks = [block for _, block in block_grid(staged.shape, chunks)]
        for block, data in zip(blocks, staged.iter_blocks(blocks), strict=True):
            ds[block] = data
            writeback.wrote(data.nbytes)  # raw bytes: flushes more often than needed, each one short
    fsync_tree(target)


def _read(target: Any, page_size: int = 0) -> dict[tuple[int, ...], int]:
    """Every chunk's hash, read through h5py from ``target`` (a path or a file object)."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filters in this worker, which may not be the writer)

    with h5py.File(target, "r", **open_options(page_size)) as f:
        ds = f[DATA_PATH]
        chunks = ds.chunks
        buffer = np.empty(chunks, dtype=ds.dtype)
        sums: dict[tuple[int, ...], int] = {}
        for index, block in block_grid(ds.shape, chunks):
            if tuple(b.stop - b.start for b in block) == chunks:
                ds.read_direct(buffer, source_sel=block)
                sums[index] = checksum(buffer)
            else:  # an edge chunk: a fresh, smaller array
                sums[index] = checksum(ds[block])
    return sums


def _read_pattern(target: Path, sel: Selection, page_size: int = 0) -> list[TilePart]:
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filters in this worker)

    with h5py.File(target, "r", **open_options(page_size)) as f:
        ds = f[DATA_PATH]
        cy, cx = ds.chunks[:2]
        # one h5py call per band of chunk rows, widened (by whole chunks) up to about 32 MiB of selected data
        per_column = cy * cx * sel.det_shape[0] * sel.det_shape[1] * ds.dtype.itemsize
        tiles = scan_tiles(sel, (cy, cx * max(1, PATTERN_BYTES // per_column)))
        return [reduce_tile(sel, ys.start, xs.start, ds[ys, xs, sel.det[0], sel.det[1]]) for ys, xs in tiles]
