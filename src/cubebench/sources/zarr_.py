"""Zarr sources (v2 or v3): an array, or a group holding exactly one 4-D array (or name it with ``dataset``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import Cube, DatasetInfo
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
    to_native,
)
from cubebench.sources.registry import FileKind, register_kind

if TYPE_CHECKING:
    import os

_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def looks_like_zarr(path: str | os.PathLike[str]) -> bool:
    """True for a directory holding Zarr metadata at its top."""
    p = Path(path)
    return p.is_dir() and any((p / m).exists() for m in _ZARR_MARKERS)


def _arrays(group: Any) -> list[tuple[str, Any]]:
    import zarr

    return sorted((name, m) for name, m in group.members(max_depth=None) if isinstance(m, zarr.Array))


def _describe(arrays: list[tuple[str, Any]]) -> str:
    return ", ".join(f"{n} {tuple(a.shape)}" for n, a in arrays) or "none"


def open_zarr(
    path: str | os.PathLike[str],
    dataset: str | None = None,
    scan_shape: tuple[int, int] | None = None,
    name: str | None = None,
) -> Cube:
    """Open a Zarr array lazily with :func:`dask.array.from_zarr`, chunked in whole frames aligned to its chunks.

    ``dataset`` names an array inside a group; without it, a group must hold exactly one 4-D array.
    """
    da = import_dask_array()
    import zarr

    path = Path(path)
    where = str(path)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises several types (FileNotFoundError, GroupNotFoundError, JSON errors)
        raise DatasetError(f"{where}: not a readable Zarr store ({first_line(exc)})") from None
    component = ""
    if isinstance(node, zarr.Group):
        arrays = _arrays(node)
        four_d = [(n, a) for n, a in arrays if a.ndim == 4]
        if dataset is not None:
            component = str(dataset).strip("/")
            member = None
            try:
                member = node[component] if component else None
            except KeyError:
                member = None
            if not isinstance(member, zarr.Array):
                listed = _describe(four_d) if four_d else f"none (arrays: {_describe(arrays)})"
                raise DatasetError(f"{where}: no array '{component}' in the Zarr group; 4-D arrays: {listed}")
            arr = member
        elif len(four_d) == 1:
            component, arr = four_d[0]
        elif len(four_d) > 1:
            raise DatasetError(f"{where}: several 4-D arrays ({_describe(four_d)}); say which one with `dataset`")
        else:
            three_d = [(n, a) for n, a in arrays if a.ndim == 3]
            if scan_shape is not None and len(three_d) == 1:
                component, arr = three_d[0]
            else:
                raise DatasetError(f"{where}: no 4-D array in the Zarr group (arrays: {_describe(arrays)})")
    else:
        if dataset is not None and str(dataset).strip("/"):
            raise DatasetError(f"{where}: is a Zarr array, not a group; drop `dataset` ({dataset!r})")
        arr = node
    label = f"{where}/{component}" if component else where
    try:
        np_dtype = np.dtype(arr.dtype)
    except TypeError:
        raise DatasetError(f"{label}: unsupported Zarr dtype {arr.dtype}; need a real integer or float dtype") from None
    dtype = check_dtype(label, np_dtype)
    shape4 = check_shape(label, arr.shape, scan_shape)
    read_chunks = tuple(arr.chunks)
    shards = getattr(arr, "shards", None)
    attrs: dict[str, Any] = {
        "array": component or "/",
        "file_chunks": "x".join(map(str, read_chunks)),
        "zarr_format": int(getattr(arr.metadata, "zarr_format", 0) or 0),
    }
    if shards:
        attrs["file_shards"] = "x".join(map(str, shards))
    unit = tuple(shards) if shards else read_chunks  # align to whole shards when sharded
    url = str(path.resolve())
    if arr.ndim == 4:
        chunk = frame_chunks(shape4, dtype.itemsize, unit[:2])
        data = da.from_zarr(url, component=component or None, chunks=dask_chunks(shape4, chunk))
    else:
        chunk = frame_chunks(shape4, dtype.itemsize, None)
        per = frame_stack_chunks(arr.shape[0], (shape4[0], shape4[1]), chunk)
        frames = da.from_zarr(url, component=component or None, chunks=dask_chunks(arr.shape, (per, *arr.shape[1:])))
        data = frames_to_cube(frames, (shape4[0], shape4[1]), chunk)
        attrs["scan_shape"] = f"{shape4[0]}x{shape4[1]}"
    data = to_native(data)
    info = DatasetInfo(
        name=name or path.name.removesuffix(".zarr") or path.name,
        shape=shape4,
        dtype=np.dtype(data.dtype).name,
        source=url,
        kind="zarr",
        attrs=attrs,
    )
    return Cube(data=data, info=info)


KIND = register_kind(
    FileKind(
        "zarr",
        "Zarr store (a directory with zarr.json, .zarray or .zgroup)",
        (".zarr",),
        looks_like_zarr,
        open_zarr,
        directory=True,
        takes_dataset=True,
    )
)
