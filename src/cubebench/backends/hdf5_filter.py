"""HDF5 through h5py's filter pipeline: what a user gets from ``create_dataset(compression=...)``.

h5py serialises every HDF5 call, so this path compresses on one core whatever the cluster: the writer and the
reader each run as a single task on one worker, streaming chunk by chunk from the staged cube. The gap between
this path and :mod:`cubebench.backends.hdf5_direct` is one of cubebench's results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import Backend, ReadBack, WriteSettings, fsync_tree
from cubebench.codecs import CodecSpec
from cubebench.cube import StagedCube, block_grid, checksum

if TYPE_CHECKING:
    from distributed import Client

#: In-file path of the data, as in EMD 1.0, so the files open in py4DSTEM and friends.
DATA_PATH = "version_1/data/datacubes/datacube_000/data"


class HDF5FilterBackend(Backend):
    """h5py + hdf5plugin filter pipeline, one writer and one reader process."""

    name = "hdf5"
    suffix = ".h5"
    parallel = False

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
        """Write on one worker, chunk by chunk through the filter pipeline."""
        client.submit(_write, staged, codec, chunks, target, pure=False).result()

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Read on one worker, chunk by chunk through the filter pipeline."""
        return ReadBack(client.submit(_read, target, pure=False).result())


def create_emd_dataset(f: Any, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...], codec: CodecSpec) -> Any:
    """Create the EMD 1.0 group layout and its chunked dataset with ``codec``'s filter; return the dataset."""
    import h5py

    f.attrs["version_major"] = 1
    f.attrs["version_minor"] = 0
    group = f.require_group("version_1/data/datacubes/datacube_000")
    group.attrs["emd_group_type"] = 1
    ds = group.create_dataset("data", shape=shape, dtype=dtype, chunks=chunks, **codec.hdf5_filter(np.dtype(dtype)))
    ds.attrs["cubebench_codec"] = codec.id
    for axis, name in enumerate(("scan_y", "scan_x", "det_y", "det_x")):
        dim = group.create_dataset(f"dim{axis + 1}", data=np.arange(shape[axis], dtype=np.int32))
        dim.attrs["name"] = name
        dim.attrs["units"] = "pixel"
    if not isinstance(ds, h5py.Dataset):
        raise TypeError(f"{DATA_PATH} is not a dataset")
    return ds


def _write(staged: StagedCube, codec: CodecSpec, chunks: tuple[int, ...], target: Path) -> None:
    import h5py

    dtype = np.dtype(staged.dtype)
    with h5py.File(target, "w") as f:
        ds = create_emd_dataset(f, staged.shape, dtype, chunks, codec)
        for _, block in block_grid(staged.shape, chunks):
            ds[block] = staged.read_block(block)
        f.flush()
    fsync_tree(target)


def _read(target: Path) -> dict[tuple[int, ...], int]:
    import h5py

    with h5py.File(target, "r") as f:
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
