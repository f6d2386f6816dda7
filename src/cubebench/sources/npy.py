"""``.npy`` sources: memory-mapped per block and copied, so resident memory stays bounded by the chunk size."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cubebench.cube import Cube, DatasetInfo, npy_header, npy_map
from cubebench.errors import DatasetError
from cubebench.lazy_dask import import_dask_array
from cubebench.sources._common import (
    check_dtype,
    check_shape,
    dask_chunks,
    first_line,
    frame_chunks,
    frame_stack_chunks,
    frames_to_cube,
    native,
)
from cubebench.sources.registry import FileKind, register_kind

NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class NpyReader:
    """Picklable block reader: a short-lived memory map per block, copied out in native byte order."""

    path: str
    dtype: str

    def read(self, block_info: Any = None) -> np.ndarray:
        """Copy the block Dask asks for out of a fresh memory map (dropped right after)."""
        loc = block_info[None]["array-location"]
        index = tuple(slice(a, b) for a, b in loc)
        mm = npy_map(self.path)
        try:
            return np.array(mm[index], dtype=np.dtype(self.dtype), order="C", copy=True)
        finally:
            del mm


def read_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data_offset)`` of a ``.npy`` file, without reading its data."""
    where = str(path)
    with open(path, "rb") as fh:
        if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise DatasetError(f"{where}: not a .npy file (no NUMPY magic)")
    try:
        return npy_header(path)
    except (ValueError, SyntaxError, OSError) as exc:
        raise DatasetError(f"{where}: corrupt .npy header ({first_line(exc)})") from None


def open_npy(path: str | os.PathLike[str], scan_shape: tuple[int, int] | None = None, name: str | None = None) -> Cube:
    """Open a ``.npy`` file lazily (4-D, or a 3-D frame stack with ``scan_shape``)."""
    da = import_dask_array()

    path = Path(path)
    where = str(path)
    shape, fortran, dtype, offset = read_header(path)
    if dtype.hasobject:
        raise DatasetError(f"{where}: object dtype is not supported; need a real integer or float dtype")
    dtype = check_dtype(where, dtype)
    shape4 = check_shape(where, shape, scan_shape)
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < need:
        raise DatasetError(f"{where}: truncated .npy file ({size} bytes, the header promises {need})")
    dt = native(dtype)
    reader = NpyReader(str(path.resolve()), dt.str)
    from dask.base import tokenize

    token = tokenize(reader, os.stat(path).st_mtime_ns, size)
    chunk = frame_chunks(shape4, dt.itemsize, None)
    meta = np.empty((0,) * len(shape), dt)
    if len(shape) == 4:
        data = da.map_blocks(reader.read, chunks=dask_chunks(shape4, chunk), dtype=dt, meta=meta, name=f"npy-{token}")
    else:
        per = frame_stack_chunks(shape[0], (shape4[0], shape4[1]), chunk)
        frames = da.map_blocks(
            reader.read, chunks=dask_chunks(shape, (per, *shape[1:])), dtype=dt, meta=meta, name=f"npy-{token}"
        )
        data = frames_to_cube(frames, (shape4[0], shape4[1]), chunk)
    attrs: dict[str, Any] = {"fortran_order": fortran}
    if len(shape) == 3:
        attrs["scan_shape"] = f"{shape4[0]}x{shape4[1]}"
    info = DatasetInfo(
        name=name or path.stem, shape=shape4, dtype=dt.name, source=str(path.resolve()), kind="npy", attrs=attrs
    )
    return Cube(data=data, info=info)


def _sniff_npy(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(NPY_MAGIC)) == NPY_MAGIC


def _open(path: Path, dataset: str | None, scan_shape: tuple[int, int] | None, name: str | None) -> Cube:
    return open_npy(path, scan_shape, name)


KIND = register_kind(FileKind("npy", "NumPy .npy", (".npy",), _sniff_npy, _open))
