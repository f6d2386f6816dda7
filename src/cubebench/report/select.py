"""What a table or figure shows by default, and per-dataset facts read from a results Dataset.

Shared by :mod:`cubebench.report.tables` and :mod:`cubebench.report.figures` so both make the same choices:
the primary backend is ``hdf5`` (the study's path) when present, the default chunking is ``balanced`` (the
study's fair-comparison choice), per-dataset figures show the largest dataset (the study's Table 5 and Figure 4
use its 8 GiB cube, where fixed overheads matter least). Any ``dataset_*`` variable may be absent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.stats import summarize_runs

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

#: The per-cell metrics the report shows.
METRICS = ("ratio", "write_GiBps", "read_GiBps", "write_seconds", "read_seconds", "stored_bytes")
MIB = float(2**20)


def primary_backend(ds: xr.Dataset) -> str:
    """``hdf5`` if measured, else the first backend."""
    backends = [str(b) for b in ds["backend"].values]
    return "hdf5" if "hdf5" in backends else backends[0]


def default_chunk(ds: xr.Dataset) -> str:
    """``balanced`` if measured, else the first chunking."""
    chunks = [str(c) for c in ds["chunk"].values]
    return "balanced" if "balanced" in chunks else chunks[0]


def dataset_names(ds: xr.Dataset) -> list[str]:
    """Dataset labels in Dataset order."""
    return [str(d) for d in ds["dataset"].values]


def dataset_values(ds: xr.Dataset, key: str) -> dict[str, Any] | None:
    """``dataset_<key>`` as ``{dataset: value}``, or None when the results lack it."""
    name = f"dataset_{key}"
    if name not in ds or ds[name].dims != ("dataset",):
        return None
    return dict(zip(dataset_names(ds), ds[name].values.tolist(), strict=True))


def source_bytes(ds: xr.Dataset) -> dict[str, float]:
    """Uncompressed bytes per dataset: ``dataset_nbytes``, else the largest ``source_bytes`` recorded."""
    nbytes = dataset_values(ds, "nbytes")
    out: dict[str, float] = {}
    recorded = (
        ds["source_bytes"].max([d for d in ds["source_bytes"].dims if d != "dataset"]) if "source_bytes" in ds else None
    )
    for name in dataset_names(ds):
        value = float(nbytes[name]) if nbytes is not None and _finite(nbytes[name]) else float("nan")
        if not np.isfinite(value) and recorded is not None:
            value = float(recorded.sel(dataset=name))
        out[name] = value if value > 0 else float("nan")
    return out


def zero_fractions(ds: xr.Dataset) -> dict[str, float] | None:
    """Zero fraction per dataset, or None when the results lack it."""
    values = dataset_values(ds, "zero_fraction")
    if values is None:
        return None
    return {k: float(v) if _finite(v) else float("nan") for k, v in values.items()}


def bits_per_value(ds: xr.Dataset) -> dict[str, float]:
    """Bits per stored value per dataset: from ``dataset_dtype``, else ``nbytes`` over the shape's size."""
    dtypes = dataset_values(ds, "dtype") or {}
    shapes = dataset_values(ds, "shape") or {}
    sizes = source_bytes(ds)
    out: dict[str, float] = {}
    for name in dataset_names(ds):
        bits = float("nan")
        try:
            bits = float(np.dtype(str(dtypes.get(name, ""))).itemsize * 8) if dtypes.get(name) else float("nan")
        except TypeError:
            bits = float("nan")
        if not np.isfinite(bits) and shapes.get(name):
            try:
                count = int(np.prod([int(v) for v in str(shapes[name]).split("x")]))
                bits = 8.0 * sizes[name] / count if count else float("nan")
            except ValueError:
                pass
        out[name] = bits
    return out


def largest_dataset(ds: xr.Dataset) -> str:
    """The dataset with the most uncompressed bytes (the first one when sizes are unknown)."""
    sizes = source_bytes(ds)
    known = {k: v for k, v in sizes.items() if np.isfinite(v)}
    return max(known, key=lambda k: known[k]) if known else dataset_names(ds)[0]


def summary_frame(ds: xr.Dataset, summary: xr.Dataset | None = None) -> pd.DataFrame:
    """One row per cell with at least one verified ok run: ``<metric>_mean`` / ``_std`` / ``_cv`` and ``n_ok``.

    Built from :func:`cubebench.stats.summarize_runs` with ``require_verified=True``: the report shows only
    numbers from cells whose data read back equal to the source.
    """
    if summary is None:
        summary = summarize_runs(ds, require_verified=True)
    names = [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "cv") if f"{m}_{s}" in summary]
    frame = (
        summary[[*names, "n_ok"]]
        .drop_vars([c for c in summary.coords if c not in ("dataset", "backend", "codec", "chunk")])
        .to_dataframe()
        .reset_index()
    )
    frame = frame[frame["n_ok"] > 0].copy()
    for dim in ("dataset", "backend", "codec", "chunk"):
        frame[dim] = frame[dim].astype(str)
    return frame.reset_index(drop=True)


def _finite(value: object) -> bool:
    try:
        return bool(np.isfinite(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
