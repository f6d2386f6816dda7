"""HDF5 sources: EMD 1.0 files (the study's format) and any HDF5 file holding one 4-D dataset.

The Dask graph holds a small picklable :class:`HDF5Reader` (a path and a dataset name) that opens the file for
each block and closes it again, because h5py objects cannot be pickled to distributed workers. Chunks are whole
frames, about 64-128 MiB, made of whole file chunks where the dataset is chunked.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    native,
)
from cubebench.sources.registry import FileKind, register_kind

#: Where EMD 1.0 keeps its first data cube (the study's files).
EMD_PATH = "version_1/data/datacubes/datacube_000/data"
_EMD_RE = re.compile(r"^version_1/data/datacubes/[^/]+/data$")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".emd", ".nxs")


def has_hdf5_signature(path: str | os.PathLike[str]) -> bool:
    """True if the file starts with the HDF5 superblock signature (at 0, 512, 1024, ... for a user block)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            if fh.read(8) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


@dataclass(frozen=True)
class HDF5Reader:
    """Picklable block reader: opens the file per block (h5py objects never enter the Dask graph)."""

    path: str
    dataset: str
    dtype: str

    def read(self, block_info: Any = None) -> np.ndarray:
        """Read the block Dask asks for (``block_info[None]["array-location"]``) as a native-endian array."""
        import h5py
        import hdf5plugin  # noqa: F401  (registers the plugin filters in this process)

        loc = block_info[None]["array-location"]
        index = tuple(slice(a, b) for a, b in loc)
        with h5py.File(self.path, "r") as f:
            out = f[self.dataset][index]
        return np.asarray(out, dtype=np.dtype(self.dtype))


def _datasets(f: Any) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    import h5py

    found: list[tuple[str, tuple[int, ...], np.dtype]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append((name, tuple(obj.shape) if obj.shape is not None else (), obj.dtype))

    f.visititems(visit)
    return found


def _describe(found: list[tuple[str, tuple[int, ...], np.dtype]]) -> str:
    return ", ".join(f"/{n} {s}" for n, s, _ in found) or "none"


def open_hdf5(
    path: str | os.PathLike[str],
    dataset: str | None = None,
    scan_shape: tuple[int, int] | None = None,
    name: str | None = None,
) -> Cube:
    """Open a 4-D dataset of an HDF5 / EMD 1.0 file lazily.

    Parameters
    ----------
    path
        The file. Its HDF5 signature is checked before h5py opens it.
    dataset
        In-file path of the dataset. Default: the EMD 1.0 cube (``/version_1/data/datacubes/datacube_000/data``)
        if present, else the file's only 4-D dataset.
    scan_shape
        ``[scan_y, scan_x]`` to read a 3-D frame stack ``(frames, det_y, det_x)`` as a 4-D cube.
    name
        Label for results; default the file's stem.
    """
    import h5py
    import hdf5plugin  # noqa: F401

    path = Path(path)
    where = str(path)
    if not has_hdf5_signature(path):
        raise DatasetError(f"{where}: not an HDF5 file (no HDF5 signature)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{where}: corrupt or truncated HDF5 file ({first_line(exc)})") from None
    try:
        try:
            found = _datasets(f)
        except (OSError, RuntimeError, KeyError) as exc:
            raise DatasetError(f"{where}: corrupt HDF5 file ({first_line(exc)})") from None
        four_d = [entry for entry in found if len(entry[1]) == 4]
        if dataset is not None:
            key = str(dataset).strip("/")
            obj = f.get(key) if key else None
            if not isinstance(obj, h5py.Dataset):
                listed = _describe(four_d) if four_d else f"none (datasets: {_describe(found)})"
                raise DatasetError(f"{where}: no dataset '/{key}' in the file; 4-D datasets: {listed}")
        elif isinstance(f.get(EMD_PATH), h5py.Dataset):
            key = EMD_PATH
        elif len(four_d) == 1:
            key = four_d[0][0]
        elif len(four_d) > 1:
            raise DatasetError(f"{where}: several 4-D datasets ({_describe(four_d)}); say which one with `dataset`")
        else:
            three_d = [entry for entry in found if len(entry[1]) == 3]
            if scan_shape is not None and len(three_d) == 1:
                key = three_d[0][0]
            else:
                raise DatasetError(f"{where}: no 4-D dataset in the file (datasets: {_describe(found)})")
        ds = f[key]
        label = f"{where}:/{key}"
        if ds.shape is None:
            raise DatasetError(f"{label}: the dataset is empty (null dataspace)")
        dtype = check_dtype(label, ds.dtype)
        shape4 = check_shape(label, ds.shape, scan_shape)
        _check_filters(label, ds)
        file_chunks = ds.chunks
        compression = ds.compression
        attrs: dict[str, Any] = {
            "dataset": "/" + key,
            "file_chunks": "x".join(map(str, file_chunks)) if file_chunks else "contiguous",
            "file_compression": str(compression) if compression else "none",
        }
        if len(ds.shape) == 3:
            attrs["scan_shape"] = f"{shape4[0]}x{shape4[1]}"
    finally:
        f.close()

    da = import_dask_array()

    dt = native(dtype)
    reader = HDF5Reader(str(path.resolve()), key, dt.str)
    file_scan_chunks = None
    if file_chunks is not None and len(file_chunks) == 4:
        file_scan_chunks = file_chunks[:2]
    chunk = frame_chunks(shape4, dt.itemsize, file_scan_chunks)
    meta = np.empty((0,) * len(ds.shape), dt)
    if len(ds.shape) == 4:
        data = da.map_blocks(
            reader.read, chunks=dask_chunks(shape4, chunk), dtype=dt, meta=meta, name=f"hdf5-{_token(reader)}"
        )
    else:
        n = ds.shape[0]
        per = frame_stack_chunks(n, (shape4[0], shape4[1]), chunk)
        frames = da.map_blocks(
            reader.read,
            chunks=dask_chunks(ds.shape, (per, *ds.shape[1:])),
            dtype=dt,
            meta=meta,
            name=f"hdf5-{_token(reader)}",
        )
        data = frames_to_cube(frames, (shape4[0], shape4[1]), chunk)
    kind = "emd" if _EMD_RE.match(key) else "hdf5"
    info = DatasetInfo(
        name=name or path.stem,
        shape=shape4,
        dtype=dt.name,
        source=str(path.resolve()),
        kind=kind,
        attrs=attrs,
    )
    return Cube(data=data, info=info)


def _check_filters(label: str, ds: Any) -> None:
    """Raise if the dataset needs an HDF5 filter that is not available here (reading would fail later)."""
    import h5py

    try:
        plist = ds.id.get_create_plist()
        n = plist.get_nfilters()
    except Exception:  # pragma: no cover - exotic property lists
        return
    for i in range(n):
        filter_id = plist.get_filter(i)[0]
        if not h5py.h5z.filter_avail(filter_id):
            raise DatasetError(f"{label}: compressed with HDF5 filter {filter_id}, which is not available here")


def _token(reader: HDF5Reader) -> str:
    from dask.base import tokenize

    st = os.stat(reader.path)
    return tokenize(reader, st.st_mtime_ns, st.st_size)


def _sniff_hdf5(path: Path) -> bool:
    return has_hdf5_signature(path)


KIND = register_kind(
    FileKind(
        "hdf5",
        "HDF5 (.h5 .hdf5 .hdf .he5 .emd .nxs)",
        (".h5", ".hdf5", ".hdf", ".he5", ".emd", ".nxs"),
        _sniff_hdf5,
        open_hdf5,
        takes_dataset=True,
    )
)
