"""Deterministic, realistic results Datasets for the stats and report tests (built with ``records_to_dataset``).

The numbers follow simple known rules so tests can compute the expected answer by hand:

- ratio = CODEC_RATIO[codec] * (40 * s**6 + 2) * CHUNK_RATIO[chunk] * BACKEND_RATIO[backend], with s the zero
  fraction (``none`` is about 1);
- write GiB/s = CODEC_SPEED[codec][0] * BACKEND_SPEED[backend][0] * CHUNK_SPEED[chunk], read likewise, each run
  multiplied by WRITE_JITTER / READ_JITTER (CV of write_seconds exactly 2 %, of read_seconds exactly 1 %);
- traps that a correct implementation must ignore: an ``unverified`` cell and an ``ok`` but not verified cell with
  absurdly good numbers, a ``failed`` codec on zarr, a ``skipped`` cell, a noisy cell and a cell whose ratio
  changes between runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.results import GIB, CellResult, records_to_dataset

if TYPE_CHECKING:
    import xarray as xr

DATASETS: dict[str, dict[str, Any]] = {
    "4d_eels": {
        "shape": (16, 16, 64, 256),
        "dtype": "uint16",
        "zero_fraction": 0.928,
        "max": 4095,
        "entropy_bits": 0.62,
        "effective_bits": 12,
    },
    "4d_diff": {
        "shape": (32, 32, 64, 64),
        "dtype": "uint16",
        "zero_fraction": 0.747,
        "max": 4016,
        "entropy_bits": 1.55,
        "effective_bits": 12,
    },
    "4d_diff_bin4": {
        "shape": (32, 32, 16, 16),
        "dtype": "float32",
        "zero_fraction": 0.609,
        "max": 296.5,
        "entropy_bits": 4.1,
    },
    "3d_eels": {
        "shape": (16, 16, 1, 256),
        "dtype": "uint16",
        "zero_fraction": 0.495,
        "max": 65535,
        "entropy_bits": 5.2,
        "effective_bits": 16,
    },
}
BACKENDS = ("hdf5", "hdf5_direct", "zarr")
CHUNKS = ("real_space", "balanced", "single_frame")
CODEC_RATIO = {
    "none": None,
    "gzip-1": 0.55,
    "gzip-9": 0.80,
    "blosc-lz4": 0.50,
    "blosc-zstd": 0.90,
    "blosc-zlib": 0.92,
    "bitshuffle-lz4": 0.70,
    "szip": 0.60,
}
CODEC_SPEED = {
    "none": (1.5, 3.0),
    "gzip-1": (0.18, 0.35),
    "gzip-9": (0.005, 0.4),
    "blosc-lz4": (1.2, 2.0),
    "blosc-zstd": (0.4, 1.2),
    "blosc-zlib": (0.08, 0.6),
    "bitshuffle-lz4": (1.0, 1.6),
    "szip": (0.3, 0.5),
}
CHUNK_RATIO = {"real_space": 1.02, "balanced": 1.0, "single_frame": 0.99}
CHUNK_SPEED = {"real_space": 1.0, "balanced": 0.9, "single_frame": 0.95}
BACKEND_RATIO = {"hdf5": 0.998, "hdf5_direct": 0.998, "zarr": 1.0}
BACKEND_SPEED = {"hdf5": (1.0, 1.0), "hdf5_direct": (1.6, 1.4), "zarr": (1.3, 1.2)}
WRITE_JITTER = (1.0, 1.02, 0.98)
READ_JITTER = (1.0, 0.99, 1.01)
NOISY_JITTER = (1.0, 1.5, 0.5)
NOISY_CELL = ("4d_diff", "hdf5", "gzip-1", "balanced")
INCONSISTENT_CELL = ("4d_eels", "zarr", "blosc-zstd", "single_frame")
UNVERIFIED_CELL = ("4d_diff", "zarr", "bitshuffle-lz4", "single_frame")
OK_NOT_VERIFIED_CELL = ("4d_eels", "hdf5", "bitshuffle-lz4", "single_frame")
SKIPPED_CELL = ("4d_diff", "hdf5", "gzip-9", "single_frame")


def nbytes(name: str) -> int:
    """Uncompressed size of a factory dataset."""
    info = DATASETS[name]
    return int(np.prod(info["shape"])) * np.dtype(info["dtype"]).itemsize


def expected_ratio(dataset: str, backend: str, codec: str, chunk: str) -> float:
    """The ratio the factory stores for a cell (before rounding stored bytes to an int)."""
    factor = CODEC_RATIO[codec]
    if factor is None:
        return 0.999
    s = DATASETS[dataset]["zero_fraction"]
    return factor * (40 * s**6 + 2) * CHUNK_RATIO[chunk] * BACKEND_RATIO[backend]


def chunk_shape(dataset: str, chunk: str) -> str:
    sy, sx, dy, dx = DATASETS[dataset]["shape"]
    shape = {
        "real_space": (32, 32, dy, dx),
        "balanced": (16, 16, max(1, dy // 2), max(1, dx // 2)),
        "single_frame": (1, 1, dy, dx),
    }[chunk]
    return "x".join(str(min(c, s)) for c, s in zip(shape, (sy, sx, dy, dx), strict=True))


def dataset_info() -> dict[str, dict[str, Any]]:
    """Per-dataset statistics as the runner would store them."""
    out = {}
    for name, info in DATASETS.items():
        s = info["zero_fraction"]
        bits = np.dtype(info["dtype"]).itemsize * 8
        h2 = -(s * np.log2(s) + (1 - s) * np.log2(1 - s))
        entry = {
            "shape": list(info["shape"]),
            "dtype": info["dtype"],
            "nbytes": nbytes(name),
            "zero_fraction": s,
            "max": info["max"],
            "entropy_bits": info["entropy_bits"],
            "sparsity_bound": bits / h2,
            "entropy_bound": bits / info["entropy_bits"],
        }
        if "effective_bits" in info:
            entry["effective_bits"] = info["effective_bits"]
        out[name] = entry
    return out


def make_cells(runs: int = 3) -> list[CellResult]:
    """Every cell of the grid, traps included."""
    cells = []
    for dataset in DATASETS:
        source = nbytes(dataset)
        for backend in BACKENDS:
            for codec in CODEC_RATIO:
                for chunk in CHUNKS:
                    key = (dataset, backend, codec, chunk)
                    for run in range(runs):
                        cells.append(_cell(key, run, source))
    return cells


def _cell(key: tuple[str, str, str, str], run: int, source: int) -> CellResult:
    dataset, backend, codec, chunk = key
    cell = CellResult(
        dataset=dataset,
        backend=backend,
        codec=codec,
        chunk=chunk,
        run=run,
        chunk_shape=chunk_shape(dataset, chunk),
        source_bytes=source,
        workers=2,
        threads_per_worker=1,
        codec_threads=1,
        n_chunks=16,
        estimate_seconds=1.0,
    )
    if codec == "szip" and backend == "zarr":
        cell.status, cell.reason = "failed", "szip in zarr needs imagecodecs"
        return cell
    if key == SKIPPED_CELL:
        cell.status, cell.reason = "skipped", "estimated 5000 s > max_cell_seconds 600"
        return cell
    ratio = expected_ratio(*key)
    stored = round(source / ratio)
    if key == INCONSISTENT_CELL:
        stored += 100 * run
    w_speed = CODEC_SPEED[codec][0] * BACKEND_SPEED[backend][0] * CHUNK_SPEED[chunk]
    r_speed = CODEC_SPEED[codec][1] * BACKEND_SPEED[backend][1] * CHUNK_SPEED[chunk]
    w_jitter = NOISY_JITTER if key == NOISY_CELL else WRITE_JITTER
    cell.stored_bytes = stored
    cell.write_seconds = source / GIB / w_speed * w_jitter[run % 3]
    cell.read_seconds = source / GIB / r_speed * READ_JITTER[run % 3]
    cell.source_read_seconds = source / GIB / 4.0
    cell.peak_memory_bytes = 200_000_000 + 1_000_000 * run
    cell.status, cell.verified = "ok", True
    if key in (UNVERIFIED_CELL, OK_NOT_VERIFIED_CELL):
        # a buggy path that looks brilliant: must never be recommended
        cell.stored_bytes = source // 500
        cell.write_seconds = source / GIB / 100.0
        cell.read_seconds = source / GIB / 100.0
        cell.verified = False
        if key == UNVERIFIED_CELL:
            cell.status, cell.reason = "unverified", "chunk (0, 0, 0, 0) differs"
    return cell


def make_results(runs: int = 3) -> xr.Dataset:
    """The full realistic results Dataset: 4 datasets x 3 backends x 8 codecs x 3 chunks x ``runs``."""
    attrs = {
        "title": "cubebench results: factory",
        "created": "2026-01-01T00:00:00+00:00",
        "host": "testhost",
        "libraries": {"numpy": np.__version__},
        "cluster": {"workers": 2},
    }
    return records_to_dataset(make_cells(runs), dataset_info(), attrs)


def make_minimal_results() -> xr.Dataset:
    """What the quickstart notebook makes: 1 dataset, 2 backends, 3 codecs, 1 chunk, 2 runs, no dataset_info."""
    cells = []
    for backend in ("hdf5", "zarr"):
        for codec in ("none", "gzip-1", "blosc-zstd"):
            for run in range(2):
                cells.append(_cell(("4d_diff", backend, codec, "balanced"), run, nbytes("4d_diff")))
    return records_to_dataset(cells)
