"""The study's published statistics as a results Dataset, for side-by-side comparison with cubebench's own.

The study (Dyck et al., "Inference-Sufficient Representations for High-Throughput Measurement") published
``study_statistics.csv``: per dataset and method, mean/std/min/max/median/CV over 10 runs of ratio, file size and
write/read times and throughputs. :func:`load_study` maps it into the results schema so every table and figure
function works on it unchanged:

- dataset names: ``4D_Diff`` -> ``4d_diff``, ``4D_EELS`` -> ``4d_eels``, ``3D_EELS`` -> ``3d_eels``,
  ``4D_Diff-2x2-binning`` -> ``4d_diff_bin2``, ``4D_Diff-4x4-binning`` -> ``4d_diff_bin4`` (others: lower case,
  ``-`` to ``_``);
- methods ``<chunking>_<codec>`` (HDF5 filter pipeline) -> backend ``"study"``, chunk ``real_space`` /
  ``balanced`` / ``single_frame``, codec id (``blosc_zstd`` -> ``blosc-zstd``, ``gzip_9`` -> ``gzip-9``,
  ``lz4_hdf5`` -> ``lz4``);
- the study's non-HDF5 methods -> backends ``study_csr`` (``sparse_csr``), ``study_uint8_overflow`` and
  ``study_npy_gzip`` (``simple_gzip``, Python's gzip at its default level 9), chunk ``unchunked``.

Each (dataset, method) becomes one ``run`` (0) holding the published means, status ``ok``: the study reports
lossless round trips, so ``verified`` is set True (recorded in the ``verified_by`` attribute). Ratio and
throughputs are the published means themselves, not recomputed. Dataset statistics come from
``study_dataset_inventory.csv`` (next to the statistics file, or given), else from the study's Table 1 below.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cubebench.errors import ResultsError
from cubebench.results import CellResult, records_to_dataset
from cubebench.stats import binary_entropy

if TYPE_CHECKING:
    import os

    import xarray as xr

STUDY_BACKEND = "study"
UNCHUNKED = "unchunked"

DATASET_NAMES: dict[str, str] = {
    "4D_Diff": "4d_diff",
    "4D_EELS": "4d_eels",
    "3D_EELS": "3d_eels",
    "4D_Diff-2x2-binning": "4d_diff_bin2",
    "4D_Diff-4x4-binning": "4d_diff_bin4",
}

CHUNK_PREFIXES = ("real_space", "balanced", "single_frame")

CODEC_NAMES: dict[str, str] = {
    "none": "none",
    "gzip_1": "gzip-1",
    "gzip_6": "gzip-6",
    "gzip_9": "gzip-9",
    "lzf": "lzf",
    "szip": "szip",
    "blosc_blosclz": "blosc-blosclz",
    "blosc_lz4": "blosc-lz4",
    "blosc_lz4hc": "blosc-lz4hc",
    "blosc_zlib": "blosc-zlib",
    "blosc_zstd": "blosc-zstd",
    "lz4_hdf5": "lz4",
    "bitshuffle_lz4": "bitshuffle-lz4",
}

#: The study's methods outside the HDF5 filter pipeline: (backend, codec).
CUSTOM_METHODS: dict[str, tuple[str, str]] = {
    "sparse_csr": ("study_csr", "none"),
    "uint8_overflow": ("study_uint8_overflow", "none"),
    "simple_gzip": ("study_npy_gzip", "gzip-9"),
}

#: The study's published dataset facts (its Table 1 and study_dataset_inventory.csv), cubebench names.
STUDY_INVENTORY: dict[str, dict[str, Any]] = {
    "4d_eels": {
        "shape": "64x64x256x1024",
        "dtype": "uint16",
        "nbytes": 2147483648,
        "zero_fraction": 0.928317,
        "max": 4095.0,
        "effective_bits": 12.0,
    },
    "4d_diff": {
        "shape": "256x256x256x256",
        "dtype": "uint16",
        "nbytes": 8589934592,
        "zero_fraction": 0.747353,
        "max": 4016.0,
        "effective_bits": 12.0,
    },
    "4d_diff_bin2": {
        "shape": "256x256x128x128",
        "dtype": "float32",
        "nbytes": 4294967296,
        "zero_fraction": 0.708912,
        "max": 1035.5,
    },
    "4d_diff_bin4": {
        "shape": "256x256x64x64",
        "dtype": "float32",
        "nbytes": 1073741824,
        "zero_fraction": 0.609100,
        "max": 296.5,
    },
    "3d_eels": {
        "shape": "64x64x1x1024",
        "dtype": "uint16",
        "nbytes": 8388608,
        "zero_fraction": 0.494717,
        "max": 65535.0,
        "effective_bits": 16.0,
    },
}

INVENTORY_FILE = "study_dataset_inventory.csv"
_REQUIRED = ("dataset", "method", "compression_ratio_mean")


def dataset_name(study_name: str) -> str:
    """cubebench's name for one of the study's datasets."""
    return DATASET_NAMES.get(study_name, study_name.strip().lower().replace("-", "_").replace(" ", "_"))


def parse_method(method: str) -> tuple[str, str, str]:
    """``balanced_blosc_zstd`` -> ``("study", "blosc-zstd", "balanced")``; custom methods get their own backend."""
    method = method.strip()
    if method in CUSTOM_METHODS:
        backend, codec = CUSTOM_METHODS[method]
        return backend, codec, UNCHUNKED
    for prefix in CHUNK_PREFIXES:
        if method.startswith(prefix + "_"):
            rest = method[len(prefix) + 1 :]
            return STUDY_BACKEND, CODEC_NAMES.get(rest, rest.replace("_", "-")), prefix
    return f"study_{method}", "none", UNCHUNKED


def _shape_label(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    return "x".join(re.findall(r"\d+", text))


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out if math.isfinite(out) else float("nan")


def read_inventory(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The study's dataset inventory CSV as ``{cubebench name: dataset_info}``."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read the study inventory {path}: {exc}") from None
    out: dict[str, dict[str, Any]] = {}
    for row in frame.to_dict("records"):
        name = dataset_name(str(row.get("dataset_id", "")))
        info: dict[str, Any] = {
            "shape": _shape_label(row.get("shape")),
            "dtype": str(row.get("dtype", "")),
            "nbytes": _num(row.get("uncompressed_bytes")),
            "zero_fraction": _num(row.get("sparsity_fraction")),
            "max": _num(row.get("max_value")),
        }
        info["effective_bits"] = _num(row.get("max_bits_int"))
        out[name] = info
    return out


def _with_bounds(info: dict[str, Any]) -> dict[str, Any]:
    info = dict(info)
    if info:
        info.setdefault("effective_bits", float("nan"))  # float datasets have none: keep the column numeric
    try:
        bits = np.dtype(info.get("dtype", "")).itemsize * 8
    except TypeError:
        return info
    s = _num(info.get("zero_fraction"))
    h2 = binary_entropy(s) if math.isfinite(s) else float("nan")
    if math.isfinite(h2) and h2 > 0:
        info["sparsity_bound"] = bits / h2
    return info


def load_study(path: str | os.PathLike[str], inventory: str | os.PathLike[str] | None = None) -> xr.Dataset:
    """Load the study's statistics CSV as a results Dataset (backend ``"study"``; see the module docstring).

    Parameters
    ----------
    path
        ``study_statistics.csv`` or a file of the same shape (columns ``dataset``, ``method``,
        ``compression_ratio_mean`` at least; ``write_time_mean``, ``read_time_mean``,
        ``write/read_throughput_gbs_mean`` (GiB/s), ``chunk_size``, ``n_runs`` when present).
    inventory
        The study's dataset inventory CSV; default: ``study_dataset_inventory.csv`` beside ``path``, else the
        study's published Table 1 values.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read the study statistics {path}: {exc}") from None
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path} is not a study statistics file: no column(s) {', '.join(missing)}")
    if inventory is None and (path.parent / INVENTORY_FILE).exists():
        inventory = path.parent / INVENTORY_FILE
    facts = read_inventory(inventory) if inventory is not None else {}
    cells: list[CellResult] = []
    published: dict[tuple[str, str, str, str], tuple[float, float, float]] = {}
    names: set[str] = set()
    for row in frame.to_dict("records"):
        dataset = dataset_name(str(row["dataset"]))
        backend, codec, chunk = parse_method(str(row["method"]))
        ratio = _num(row.get("compression_ratio_mean"))
        if not math.isfinite(ratio) or ratio <= 0:
            continue
        names.add(dataset)
        info = facts.get(dataset) or STUDY_INVENTORY.get(dataset, {})
        source = _num(info.get("nbytes"))
        if not math.isfinite(source):
            source = _num(row.get("file_size_mb_mean")) * 2**20 * ratio
        cells.append(
            CellResult(
                dataset=dataset,
                backend=backend,
                codec=codec,
                chunk=chunk,
                run=0,
                chunk_shape=_shape_label(row.get("chunk_size")),
                status="ok",
                verified=True,
                source_bytes=round(source) if math.isfinite(source) else 0,
                stored_bytes=round(source / ratio) if math.isfinite(source) else 0,
                write_seconds=_num(row.get("write_time_mean")),
                read_seconds=_num(row.get("read_time_mean")),
                cache="study",
            )
        )
        published[(dataset, backend, codec, chunk)] = (
            ratio,
            _num(row.get("write_throughput_gbs_mean")),
            _num(row.get("read_throughput_gbs_mean")),
        )
    if not cells:
        raise ResultsError(f"{path} has no rows with a positive compression_ratio_mean")
    info = {n: _with_bounds(facts.get(n) or STUDY_INVENTORY.get(n, {})) for n in sorted(names)}
    info = {n: v for n, v in info.items() if v}
    runs = pd.to_numeric(frame.get("n_runs", pd.Series(dtype=float)), errors="coerce")
    attrs = {
        "title": "the study's published statistics",
        "source": str(path),
        "reference": "Dyck et al., Inference-Sufficient Representations for High-Throughput Measurement: "
        "Lessons from Lossless Compression Benchmarks in 4D-STEM",
        "published_runs": int(runs.max()) if runs.notna().any() else 0,
        "verified_by": "the study (lossless round trips as published); not re-verified by cubebench",
    }
    ds = records_to_dataset(cells, info or None, attrs).isel(storage=0, drop=True)  # local disks only
    _overwrite_published(ds, published)
    return ds


def _overwrite_published(
    ds: xr.Dataset, published: dict[tuple[str, str, str, str], tuple[float, float, float]]
) -> None:
    """Put the published means (not values recomputed from rounded sizes and mean times) into the Dataset."""
    index = {dim: {str(v): i for i, v in enumerate(ds[dim].values)} for dim in ("dataset", "backend", "codec", "chunk")}
    arrays = {name: ds[name].values.copy() for name in ("ratio", "write_GiBps", "read_GiBps")}
    for (dataset, backend, codec, chunk), values in published.items():
        pos = (index["dataset"][dataset], index["backend"][backend], index["codec"][codec], index["chunk"][chunk], 0)
        for name, value in zip(("ratio", "write_GiBps", "read_GiBps"), values, strict=True):
            arrays[name][pos] = value
    for name, array in arrays.items():
        ds[name].values = array


def best_per_dataset(study: xr.Dataset) -> pd.DataFrame:
    """The study's best ratio per dataset with its zero fraction (the points of its Figure 3)."""
    ratio = study["ratio"].where(study["status"] == "ok").max(["backend", "codec", "chunk", "run"])
    frame = pd.DataFrame({"dataset": [str(d) for d in study["dataset"].values], "ratio": ratio.values})
    if "dataset_zero_fraction" in study:
        frame["zero_fraction"] = study["dataset_zero_fraction"].values.astype(float)
    else:
        frame["zero_fraction"] = np.nan
    return frame
