"""The result schema: one record per benchmark cell, turned into an ``xarray.Dataset`` and saved with provenance.

A cell is one (dataset, backend, codec, chunk, run). The runner appends each finished cell to a JSON-lines log
at once (:class:`ResultsLog`), so nothing measured is lost; :func:`records_to_dataset` builds the labelled
Dataset from the log, and :func:`save_results` / :func:`load_results` write and read it (netCDF + flat CSV).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.errors import ConfigError, ResultsError
from cubebench.jsonlog import JsonLinesLog, load_dataset, save_dataset

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping, Sequence

    import xarray as xr

#: Bump when the meaning or layout of a variable changes; :func:`load_results` refuses newer files.
SCHEMA_VERSION = 2  # 2: a ``storage`` dimension and request/object counts (older files load as storage "local")

#: File names inside a results folder.
DATASET_FILE = "results.nc"
CSV_FILE = "results.csv"
LOG_FILE = "cells.jsonl"

DIMS = ("dataset", "backend", "codec", "chunk", "storage", "run")

#: Cell statuses. Only ``ok`` cells carry timings; ``failed`` and ``unverified`` carry a reason.
STATUSES = ("ok", "failed", "unverified", "unavailable", "skipped", "missing")

GIB = float(2**30)


@dataclass
class CellResult:
    """Everything measured for one cell; one line of the results log.

    ``verified`` is True only when every chunk read back equals the source chunk (64-bit XXH3 hash per chunk).
    Timings of a cell that is not ``ok`` are NaN: a corrupting codec path is never timed as a success.
    """

    dataset: str
    backend: str
    codec: str
    chunk: str
    run: int
    chunk_shape: str = ""
    status: str = "missing"
    reason: str = ""
    verified: bool = False
    source_bytes: int = 0
    stored_bytes: int = 0
    write_seconds: float = float("nan")
    read_seconds: float = float("nan")
    source_read_seconds: float = float("nan")
    peak_memory_bytes: int = 0
    n_chunks: int = 0
    estimate_seconds: float = float("nan")
    workers: int = 0
    threads_per_worker: int = 0
    codec_threads: int = 0
    cache: str = "warm"
    write_empty_chunks: bool = True
    sharded: bool = False
    #: The HDF5 file-space page size of a paged (cloud-optimised) file, in bytes; 0 when not paged
    #: (``hdf5.page_size``; only the ``hdf5`` and ``hdf5_direct`` backends page).
    hdf5_page_size: int = 0
    #: The Zarr codec pipeline the cell ran (``zarr-python``, ``zarrs``; '' where the setting does not apply).
    codec_pipeline: str = ""
    #: Whether the write read the source from a chunk-major staged copy (experiment ``layout: chunked``).
    chunk_major: bool = False
    #: Whether the workers were processes (False: threads of the main process, ``cluster.processes: false``).
    worker_processes: bool = True
    started: str = ""
    #: Where the bytes lived (``local``, ``s3``, ``s3-20ms``: :mod:`cubebench.storage`).
    storage: str = "local"
    #: Objects (S3) or files (local) the write stored, and their bytes.
    objects: int = 0
    bytes_written: int = 0
    #: Requests of the write and the full read together (NaN where not counted: local files), by kind, and the
    #: bytes the full read fetched.
    requests: float = float("nan")
    get_requests: float = float("nan")
    put_requests: float = float("nan")
    bytes_read: float = float("nan")
    #: The client-side link model each request waited under (:mod:`cubebench.storage.pacing`).
    latency_ms: float = 0.0
    bandwidth_MBps: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str, int, str]:
        """The cell's coordinates, used to skip finished cells on resume."""
        return (self.dataset, self.backend, self.codec, self.chunk, self.run, self.storage)

    @property
    def ratio(self) -> float:
        """Uncompressed over stored bytes (NaN when nothing was stored)."""
        return self.source_bytes / self.stored_bytes if self.stored_bytes else float("nan")

    def to_json(self) -> str:
        """One JSON line (NaN written as null)."""
        data = asdict(self)
        return json.dumps({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in data.items()})

    @classmethod
    def from_json(cls, line: str) -> CellResult:
        """Inverse of :meth:`to_json`; unknown keys from newer versions are ignored."""
        raw = json.loads(line)
        names = {f.name: f for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        for key in ("write_seconds", "read_seconds", "source_read_seconds", "estimate_seconds", *_COUNTED):
            if kwargs.get(key) is None:
                kwargs[key] = float("nan")
        return cls(**kwargs)


class ResultsLog(JsonLinesLog[CellResult]):
    """Append-only JSON-lines log of finished cells, flushed and fsynced after every line."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, CellResult)


#: Counts that are NaN where not counted.
_COUNTED = ("requests", "get_requests", "put_requests", "bytes_read", "bandwidth_MBps")

_NUMERIC = {
    "stored_bytes": np.int64,
    "source_bytes": np.int64,
    "write_seconds": np.float64,
    "read_seconds": np.float64,
    "source_read_seconds": np.float64,
    "peak_memory_bytes": np.int64,
    "n_chunks": np.int64,
    "estimate_seconds": np.float64,
    "workers": np.int64,
    "threads_per_worker": np.int64,
    "codec_threads": np.int64,
    "hdf5_page_size": np.int64,
    "objects": np.int64,
    "bytes_written": np.int64,
    "requests": np.float64,
    "get_requests": np.float64,
    "put_requests": np.float64,
    "bytes_read": np.float64,
    "latency_ms": np.float64,
    "bandwidth_MBps": np.float64,
}

_UNITS = {
    "ratio": "1",
    "stored_bytes": "bytes",
    "source_bytes": "bytes",
    "hdf5_page_size": "bytes",
    "write_seconds": "s",
    "read_seconds": "s",
    "source_read_seconds": "s",
    "write_GiBps": "GiB/s",
    "read_GiBps": "GiB/s",
    "peak_memory_bytes": "bytes",
    "estimate_seconds": "s",
    "bytes_written": "bytes",
    "bytes_read": "bytes",
    "latency_ms": "ms",
    "bandwidth_MBps": "MB/s",
}

_DESCRIPTIONS = {
    "ratio": "uncompressed bytes / stored bytes (all files, metadata included)",
    "stored_bytes": "bytes on disk after the write, metadata included",
    "write_seconds": "wall time of the write, flush and fsync included",
    "read_seconds": "wall time of a full read of the stored data, decoded, per-chunk hash included",
    "source_read_seconds": "wall time to read the staged uncompressed source once: the floor under every write",
    "write_GiBps": "uncompressed GiB / write_seconds",
    "read_GiBps": "uncompressed GiB / read_seconds",
    "verified": "every chunk read back equals the source chunk (64-bit XXH3 hash)",
    "peak_memory_bytes": (
        "peak resident memory of all processes (client, scheduler, workers) during the cell; workers outside the "
        "main process's tree (batch jobs, other hosts) add their own peaks"
    ),
    "status": "ok | failed | unverified | unavailable | skipped | missing",
    "worker_processes": "the workers were processes (false: threads of the main process, cluster.processes)",
    "objects": "objects (S3) or files (local) the write stored",
    "requests": (
        "requests of the write and the full read (GET, PUT, HEAD, LIST, DELETE); NaN for local files and for "
        "tensorstore on S3 (its own HTTP client, which cubebench cannot count)"
    ),
    "latency_ms": "client-side link model: milliseconds each request waited (0: none)",
    "write_empty_chunks": "chunks equal to the fill value were stored (zarr.write_empty_chunks; false under zarrs)",
    "hdf5_page_size": "page size of a paged HDF5 file (fs_strategy page, hdf5.page_size); 0: not paged",
    "codec_pipeline": "the zarr backend's codec pipeline (zarr-python or zarrs; empty for other backends)",
    "data_copy_concurrency": "tensorstore's data_copy_concurrency limit per task (cluster.codec_threads)",
    "file_io_concurrency": "tensorstore's file_io_concurrency limit per task (zarr.concurrency)",
}


def records_to_dataset(
    cells: Sequence[CellResult],
    dataset_info: Mapping[str, Mapping[str, Any]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build the results Dataset with dims ``(dataset, backend, codec, chunk, storage, run)``.

    Parameters
    ----------
    cells
        Finished cells (any order; missing combinations become ``status="missing"`` with NaN values).
    dataset_info
        Per dataset name, its statistics (``shape``, ``dtype``, ``nbytes``, ``zero_fraction``, ``max``,
        ``entropy_bits``, ...) stored as ``dataset_*`` variables along ``dataset``.
    attrs
        Provenance attributes (library versions, CPU, cluster, experiment); values that are not plain scalars
        are stored as JSON strings.
    """
    import xarray as xr

    if not cells:
        raise ResultsError("no finished cells to build a results Dataset from")
    coords: dict[str, list[Any]] = {}
    for dim in DIMS:
        seen: list[Any] = []
        for cell in cells:
            value = getattr(cell, dim)
            if value not in seen:
                seen.append(value)
        coords[dim] = sorted(seen) if dim == "run" else seen
    index = {dim: {v: i for i, v in enumerate(coords[dim])} for dim in DIMS}
    shape = tuple(len(coords[d]) for d in DIMS)

    def position(cell: CellResult) -> tuple[int, ...]:
        return tuple(index[d][getattr(cell, d)] for d in DIMS)

    data: dict[str, np.ndarray] = {}
    for name, dtype in _NUMERIC.items():
        fill = np.nan if np.issubdtype(dtype, np.floating) else 0
        data[name] = np.full(shape, fill, dtype=dtype)
    data["verified"] = np.zeros(shape, dtype=bool)
    data["sharded"] = np.zeros(shape, dtype=bool)
    data["write_empty_chunks"] = np.ones(shape, dtype=bool)
    data["chunk_major"] = np.zeros(shape, dtype=bool)
    data["worker_processes"] = np.ones(shape, dtype=bool)
    status = np.full(shape, "missing", dtype=object)
    reason = np.full(shape, "", dtype=object)
    cache = np.full(shape, "", dtype=object)
    pipeline = np.full(shape, "", dtype=object)
    extras: dict[str, np.ndarray] = {}
    chunk_shape = np.full((shape[0], shape[3]), "", dtype=object)
    for cell in cells:
        pos = position(cell)
        for name in _NUMERIC:
            data[name][pos] = getattr(cell, name)
        data["verified"][pos] = cell.verified
        data["sharded"][pos] = cell.sharded
        data["write_empty_chunks"][pos] = cell.write_empty_chunks
        data["chunk_major"][pos] = cell.chunk_major
        data["worker_processes"][pos] = cell.worker_processes
        status[pos] = cell.status
        reason[pos] = cell.reason
        cache[pos] = cell.cache
        pipeline[pos] = cell.codec_pipeline
        chunk_shape[pos[0], pos[3]] = cell.chunk_shape
        for key, value in cell.extra.items():
            extras.setdefault(key, np.full(shape, np.nan))[pos] = value

    stored = data["stored_bytes"].astype(float)
    source = data["source_bytes"].astype(float)
    ok = status == "ok"
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok & (stored > 0), source / stored, np.nan)  # a corrupting path has no ratio
        write_gibps = np.where(ok, source / GIB / data["write_seconds"], np.nan)
        read_gibps = np.where(ok, source / GIB / data["read_seconds"], np.nan)

    variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        "ratio": (DIMS, ratio),
        "write_GiBps": (DIMS, write_gibps),
        "read_GiBps": (DIMS, read_gibps),
        "status": (DIMS, status.astype(str)),
        "reason": (DIMS, reason.astype(str)),
        "cache": (DIMS, cache.astype(str)),
        "codec_pipeline": (DIMS, pipeline.astype(str)),
    }
    variables.update({name: (DIMS, values) for name, values in data.items()})
    variables.update({name: (DIMS, values) for name, values in extras.items()})
    ds = xr.Dataset(
        {name: xr.Variable(dims, values) for name, (dims, values) in variables.items()},
        coords={
            **{dim: coords[dim] for dim in DIMS},
            "chunk_shape": (("dataset", "chunk"), chunk_shape.astype(str)),
        },
    )
    for var_key, var in ds.data_vars.items():
        label = str(var_key)
        if label in _UNITS:
            var.attrs["units"] = _UNITS[label]
        if label in _DESCRIPTIONS:
            var.attrs["description"] = _DESCRIPTIONS[label]
    if dataset_info:
        _add_dataset_info(ds, dataset_info)
    ds.attrs.update({k: _attr(v) for k, v in (attrs or {}).items()})
    ds.attrs["schema_version"] = SCHEMA_VERSION
    return ds


def _add_dataset_info(ds: xr.Dataset, info: Mapping[str, Mapping[str, Any]]) -> None:
    keys: list[str] = []
    for stats in info.values():
        keys.extend(k for k in stats if k not in keys)
    for key in keys:
        values = [info.get(str(name), {}).get(key) for name in ds["dataset"].values]
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
            arr: np.ndarray = np.asarray(values, dtype=float)
        elif all(v is None or isinstance(v, (str, list, tuple, int, float, bool)) for v in values):
            arr = np.asarray([_label(v) for v in values], dtype=str)
        else:
            continue
        ds[f"dataset_{key}"] = ("dataset", arr)


def _label(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def _attr(value: Any) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    return json.dumps(value, default=str)


def save_results(ds: xr.Dataset, folder: Path) -> Path:
    """Write ``results.nc`` (netCDF4 via h5netcdf, atomically) and a flat ``results.csv`` into ``folder``."""
    return save_dataset(ds, folder, DATASET_FILE, CSV_FILE, to_frame(ds), "results")


def to_frame(ds: xr.Dataset) -> Any:
    """Flat table (pandas DataFrame), one row per cell, without ``missing`` cells (merged results: per machine)."""
    cell_vars = [name for name, var in ds.data_vars.items() if set(DIMS) <= set(var.dims)]
    frame = ds[cell_vars].to_dataframe().reset_index()
    return frame[frame["status"] != "missing"]


def load_results(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a results Dataset from a results folder or its ``results.nc`` file (loaded into memory)."""
    path = Path(path)
    target = path / DATASET_FILE if path.is_dir() else path
    if not target.exists():
        raise ResultsError(f"no results at {path}: expected a results folder or a {DATASET_FILE} file")
    loaded: xr.Dataset = load_dataset(target, "results", SCHEMA_VERSION, required="status")
    return with_storage(loaded)


def with_storage(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with a ``storage`` dimension: results from before it (schema 1) get ``storage="local"`` of length 1."""
    if "storage" in ds.dims:
        return ds
    cell_vars = [name for name, var in ds.data_vars.items() if {"backend", "codec", "run"} <= set(var.dims)]
    out = ds.copy()
    for name in cell_vars:
        dims = list(ds[name].dims)
        out[name] = ds[name].expand_dims(storage=["local"]).transpose(*dims[: dims.index("run")], "storage", "run", ...)
    return out.assign_coords(storage=["local"]) if "storage" not in out.coords else out


def machine_names(
    datasets: Sequence[xr.Dataset], paths: Sequence[str | os.PathLike[str]], names: Sequence[str] | None = None
) -> list[str]:
    """The names of the machines whose ``datasets`` (read from ``paths``) are merged: ``names``, or each run's host.

    Raises :class:`~cubebench.errors.ConfigError` when the count differs from the datasets' or two names are equal.
    """
    found = (
        list(names)
        if names
        else [str(ds.attrs.get("host") or Path(p).name) for ds, p in zip(datasets, paths, strict=True)]
    )
    if len(found) != len(datasets):
        raise ConfigError(f"--names gives {len(found)} names for {len(datasets)} results")
    if len(set(found)) != len(found):
        raise ConfigError(f"machine names must differ, got {' '.join(found)}; name them with --names")
    return found


def merge_machines(datasets: Iterable[xr.Dataset], names: Sequence[str]) -> xr.Dataset:
    """Stack results from several machines along a new ``machine`` dimension (outer join on coordinates).

    Attributes shared by all inputs are kept; each machine's own (CPU, libraries, cluster, ...) are kept too, as
    one JSON attribute ``machines`` keyed by name. Cells one machine did not run get status ``missing``.
    """
    import xarray as xr

    datasets = list(datasets)
    if len(set(names)) != len(names):
        raise ResultsError(f"machine names must differ, got {list(names)}")
    parts = [ds.expand_dims(machine=[name]) for ds, name in zip(datasets, names, strict=True)]
    if not parts:
        raise ResultsError("no results to merge")
    merged = xr.concat(parts, dim="machine", join="outer", combine_attrs="drop_conflicts")
    for name in list(merged.variables):  # an outer join pads with NaN: refill as records_to_dataset does
        var = merged[name]
        original = next(part[name].dtype for part in parts if name in part.variables)
        if original.kind in "biu" and var.dtype != original:  # bool and integer: False and 0
            merged[name] = var.fillna(0).astype(original)
        elif var.dtype == object:
            merged[name] = var.fillna("missing" if name == "status" else "").astype(str)
    merged.attrs["machines"] = json.dumps(
        {n: dict(ds.attrs) for n, ds in zip(names, datasets, strict=True)}, default=str
    )
    return merged
