"""Sources on S3: ``s3://bucket/key.zarr`` (a Zarr array or group) and ``s3://bucket/key.h5`` (HDF5/EMD), lazily.

The endpoint, region and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``), read where the client is made (on each worker
too). Zarr opens through ``zarr.storage.ObjectStore`` over obstore; HDF5 through h5py on a
:class:`~cubebench.storage.RangedFile` (ranged GETs), opened per block by each Dask task, as local files are. A
key's kind is its suffix, else its content (an HDF5 signature in its first bytes, or a ``zarr.json`` below it).
4-D arrays only here (a 3-D frame stack with ``scan_shape`` is for local files).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from cubebench.cube import Cube, DatasetInfo
from cubebench.errors import ConfigError, DatasetError, StorageError
from cubebench.lazy_dask import import_dask_array
from cubebench.sources._common import check_dtype, check_shape, dask_chunks, first_line, frame_chunks, native, to_native
from cubebench.sources.hdf5_ import EMD_PATH, _check_filters, _datasets, _describe
from cubebench.storage import RangedFile, S3Storage, get_range, parse_storage, zarr_store

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".emd", ".nxs")
_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_s3_url(text: object) -> bool:
    """Whether ``text`` is an ``s3://`` URL."""
    return isinstance(text, str) and text.startswith("s3://")


def parse_s3_url(url: str) -> tuple[S3Storage, str]:
    """``s3://bucket/key`` -> (the bucket's storage from the AWS environment, the key); a bad URL is a ConfigError.

    >>> spec, key = parse_s3_url("s3://cubes/runs/scan.zarr")
    >>> spec.bucket, key
    ('cubes', 'runs/scan.zarr')
    """
    parts = urlsplit(url)
    key = parts.path.strip("/")
    if parts.scheme != "s3" or not parts.netloc or not key or parts.query or parts.fragment:
        raise ConfigError(f"{url!r} is not an s3://bucket/key URL")
    spec = parse_storage({"kind": "s3", "bucket": parts.netloc}, f"{url}: bucket")
    if not isinstance(spec, S3Storage):  # a kind: s3 entry always parses into one
        raise ConfigError(f"{url}: not an S3 location")
    return spec, key


def s3_kind(url: str) -> str | None:
    """``zarr`` or ``hdf5`` by the URL's suffix (None: decide by content)."""
    key = url.rstrip("/").lower()
    if key.endswith(".zarr"):
        return "zarr"
    return "hdf5" if key.endswith(HDF5_SUFFIXES) else None


def open_s3(url: str, dataset: str | None = None, scan_shape: Any = None, name: str | None = None) -> Cube:
    """Open the array at ``url`` lazily as a 4-D cube (see the module)."""
    spec, key = parse_s3_url(url)
    if scan_shape is not None:
        raise ConfigError(f"{url}: scan_shape (a 3-D frame stack) applies to local files only")
    kind = s3_kind(url) or _sniff(spec, key, url)
    stem = key.rsplit("/", 1)[-1]
    for suffix in (".zarr", *HDF5_SUFFIXES):
        stem = stem.removesuffix(suffix)
    if kind == "zarr":
        return _open_zarr(spec, key, url, dataset, name or stem)
    return _open_hdf5(spec, key, url, dataset, name or stem)


def _sniff(spec: S3Storage, key: str, url: str) -> str:
    try:
        if get_range(spec, key, 0, 8) == _SIGNATURE:
            return "hdf5"
    except FileNotFoundError:
        pass
    except StorageError as exc:
        raise DatasetError(f"{url}: cannot read it ({exc})") from None
    try:
        get_range(spec, f"{key}/zarr.json", 0, 1)
        return "zarr"
    except FileNotFoundError:
        raise DatasetError(f"{url}: no HDF5 object and no Zarr store (zarr.json) there") from None


def _open_zarr(spec: S3Storage, key: str, url: str, dataset: str | None, name: str) -> Cube:
    import zarr

    da = import_dask_array()
    try:
        node = zarr.open(store=zarr_store(spec, key), mode="r")
    except Exception as exc:
        raise DatasetError(f"{url}: not a readable Zarr store ({first_line(exc)})") from None
    component = ""
    if isinstance(node, zarr.Group):
        arrays = sorted((n, m) for n, m in node.members(max_depth=None) if isinstance(m, zarr.Array))
        four_d = [(n, a) for n, a in arrays if a.ndim == 4]
        if dataset is not None:
            component = dataset.strip("/")
            matches = [a for n, a in arrays if n == component]
            if not matches:
                raise DatasetError(f"{url}: no array '{component}' in the Zarr group; 4-D arrays: {_names(four_d)}")
            arr = matches[0]
        elif len(four_d) == 1:
            component, arr = four_d[0]
        else:
            raise DatasetError(f"{url}: {len(four_d)} 4-D arrays ({_names(four_d)}); say which one with `dataset`")
    else:
        arr = node
    label = f"{url}/{component}" if component else url
    dtype = check_dtype(label, np.dtype(arr.dtype))
    shape4 = check_shape(label, arr.shape, None)
    unit = tuple(arr.shards or arr.chunks)
    chunk = frame_chunks(shape4, dtype.itemsize, unit[:2])
    reader = _ZarrReader(spec, key, component)
    data = da.map_blocks(reader.read, chunks=dask_chunks(shape4, chunk), dtype=dtype, meta=np.empty((0,) * 4, dtype))
    info = DatasetInfo(name=name, shape=shape4, dtype=np.dtype(dtype).name, source=url, kind="zarr",
                       attrs={"array": component or "/", "file_chunks": "x".join(map(str, arr.chunks))})  # fmt: skip
    return Cube(data=to_native(data), info=info)


def _names(arrays: list[tuple[str, Any]]) -> str:
    return ", ".join(f"{n} {tuple(a.shape)}" for n, a in arrays) or "none"


@dataclass(frozen=True)
class _ZarrReader:
    """Picklable block reader: opens the store per block on the worker (the client is cached per process)."""

    spec: S3Storage
    key: str
    component: str

    def read(self, block_info: Any = None) -> np.ndarray:
        import zarr

        node: Any = zarr.open(store=zarr_store(self.spec, self.key), mode="r")
        arr: Any = node[self.component] if self.component else node
        loc = block_info[None]["array-location"]
        return np.asarray(arr[tuple(slice(a, b) for a, b in loc)])


def _open_hdf5(spec: S3Storage, key: str, url: str, dataset: str | None, name: str) -> Cube:
    import h5py
    import hdf5plugin  # noqa: F401

    da = import_dask_array()
    try:
        f = h5py.File(RangedFile(spec, key), "r")
    except FileNotFoundError:
        raise DatasetError(f"{url}: no such object") from None
    except OSError as exc:
        raise DatasetError(f"{url}: not a readable HDF5 object ({first_line(exc)})") from None
    with f:
        found = _datasets(f)
        four_d = [entry for entry in found if len(entry[1]) == 4]
        if dataset is not None:
            path = dataset.strip("/")
            if not isinstance(f.get(path), h5py.Dataset):
                raise DatasetError(f"{url}: no dataset '/{path}' in the file; 4-D datasets: {_describe(four_d)}")
        elif isinstance(f.get(EMD_PATH), h5py.Dataset):
            path = EMD_PATH
        elif len(four_d) == 1:
            path = four_d[0][0]
        else:
            raise DatasetError(f"{url}: {len(four_d)} 4-D datasets ({_describe(four_d)}); say which one with `dataset`")
        ds = f[path]
        label = f"{url}:/{path}"
        dtype = native(check_dtype(label, ds.dtype))
        shape4 = check_shape(label, ds.shape, None)
        _check_filters(label, ds)
        chunk = frame_chunks(shape4, dtype.itemsize, ds.chunks[:2] if ds.chunks else None)
    reader = _HDF5Reader(spec, key, path, dtype.str)
    data = da.map_blocks(reader.read, chunks=dask_chunks(shape4, chunk), dtype=dtype, meta=np.empty((0,) * 4, dtype))
    info = DatasetInfo(
        name=name, shape=shape4, dtype=dtype.name, source=url, kind="hdf5", attrs={"dataset": "/" + path}
    )
    return Cube(data=data, info=info)


@dataclass(frozen=True)
class _HDF5Reader:
    """Picklable block reader: h5py over a ranged file object per block (h5py objects never enter the graph)."""

    spec: S3Storage
    key: str
    dataset: str
    dtype: str

    def read(self, block_info: Any = None) -> np.ndarray:
        import h5py
        import hdf5plugin  # noqa: F401

        loc = block_info[None]["array-location"]
        with h5py.File(RangedFile(self.spec, self.key), "r") as f:
            out = f[self.dataset][tuple(slice(a, b) for a, b in loc)]
        return np.asarray(out, dtype=np.dtype(self.dtype))
