"""Report tables built from a results Dataset only (never backends, Dask or the runner).

Each builder returns a :class:`~cubebench.report.format.Table` (a pandas frame plus caption and number formats)
that :func:`~cubebench.report.format.write_table` renders as Markdown, CSV and LaTeX. Numbers are means over the
verified ok runs of each cell; across datasets they are plain means (as in the study's Tables 4 and 5), with the
range where it matters.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from cubebench.report.format import Table
from cubebench.report.select import (
    MIB,
    bits_per_value,
    dataset_names,
    dataset_values,
    default_chunk,
    primary_backend,
    source_bytes,
    summary_frame,
    zero_fractions,
)
from cubebench.stats import core_results, flag_noisy, ok_mask, ratio_consistency, shannon_bound, summarize_runs

if TYPE_CHECKING:
    from collections.abc import Sequence

_RATIO = ".2f"
_SPEED = ".3g"


def _mean(values: pd.Series) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def inventory_table(ds: xr.Dataset) -> Table:
    """Dataset inventory: shape, dtype, size, zero fraction, max, effective bits, entropy and the two bounds."""
    ds = core_results(ds)
    names = dataset_names(ds)
    sizes = source_bytes(ds)
    frame = pd.DataFrame({"dataset": names})
    for key, column in (("shape", "shape"), ("dtype", "dtype")):
        values = dataset_values(ds, key)
        if values is not None:
            frame[column] = [str(values[n]) for n in names]
    frame["size (MiB)"] = [sizes[n] / MIB for n in names]
    zeros = zero_fractions(ds)
    if zeros is not None:
        frame["zero fraction (%)"] = [100 * zeros[n] for n in names]
    for key, column in (("max", "max"), ("effective_bits", "effective bits"), ("entropy_bits", "entropy (bits/value)")):
        values = dataset_values(ds, key)
        if values is not None:
            frame[column] = pd.to_numeric(pd.Series([values[n] for n in names]), errors="coerce").to_numpy()
    bits = bits_per_value(ds)
    sparsity = dataset_values(ds, "sparsity_bound")
    if sparsity is not None:
        frame["sparsity bound"] = [float(sparsity[n]) for n in names]
    elif zeros is not None:
        frame["sparsity bound"] = [float(shannon_bound(zeros[n], bits[n])) for n in names]
    entropy_bound = dataset_values(ds, "entropy_bound")
    entropy = dataset_values(ds, "entropy_bits")
    if entropy_bound is not None:
        frame["entropy bound"] = [float(entropy_bound[n]) for n in names]
    elif entropy is not None:
        with np.errstate(all="ignore"):
            frame["entropy bound"] = [bits[n] / float(entropy[n]) for n in names]
    formats = {
        "size (MiB)": ".1f",
        "zero fraction (%)": ".1f",
        "max": ".6g",
        "effective bits": ".0f",
        "entropy (bits/value)": ".3f",
        "sparsity bound": ".1f",
        "entropy bound": ".1f",
    }
    note = (
        (
            "Bounds on the compression ratio: sparsity-only bits/H2(s) (optimistic) and order-0 entropy "
            "bits/H (value histogram)."
        )
        if "sparsity bound" in frame or "entropy bound" in frame
        else ""
    )
    return Table("inventory", "Dataset inventory", frame, formats, note)


def best_ratio_table(ds: xr.Dataset) -> Table:
    """Best mean ratio per dataset with its codec, backend, chunking and stored size (the study's Table 3)."""
    ds = core_results(ds)
    cells = summary_frame(ds)
    sizes = source_bytes(ds)
    zeros = zero_fractions(ds)
    rows = []
    for name in dataset_names(ds):
        sub = cells[(cells["dataset"] == name) & np.isfinite(cells["ratio_mean"])]
        row: dict[str, object] = {"dataset": name, "size (MiB)": sizes[name] / MIB}
        if zeros is not None:
            row["zero fraction (%)"] = 100 * zeros[name]
        if len(sub):
            best = sub.loc[sub["ratio_mean"].idxmax()]
            row.update(
                {
                    "best ratio": best["ratio_mean"],
                    "codec": best["codec"],
                    "backend": best["backend"],
                    "chunk": best["chunk"],
                    "stored (MiB)": best["stored_bytes_mean"] / MIB,
                    "write (GiB/s)": best["write_GiBps_mean"],
                    "read (GiB/s)": best["read_GiBps_mean"],
                }
            )
        else:
            row.update(
                {
                    "best ratio": np.nan,
                    "codec": "",
                    "backend": "",
                    "chunk": "",
                    "stored (MiB)": np.nan,
                    "write (GiB/s)": np.nan,
                    "read (GiB/s)": np.nan,
                }
            )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if zeros is not None:
        frame = frame.sort_values("zero fraction (%)", ascending=False, kind="stable").reset_index(drop=True)
    formats = {
        "size (MiB)": ".1f",
        "zero fraction (%)": ".1f",
        "best ratio": _RATIO,
        "stored (MiB)": ".2f",
        "write (GiB/s)": _SPEED,
        "read (GiB/s)": _SPEED,
    }
    return Table("best_ratio", "Best compression ratio per dataset (mean over verified runs)", frame, formats)


def codec_table(ds: xr.Dataset, backend: str | None = None, chunk: str | None = None) -> Table:
    """Per codec on one backend and chunking: mean ratio, its range over datasets, mean write time and speeds.

    Like the study's Table 4 (balanced chunks, for a fair comparison). Sorted by mean ratio, best first.
    """
    ds = core_results(ds)
    backend = backend or primary_backend(ds)
    chunk = chunk or default_chunk(ds)
    cells = summary_frame(ds)
    cells = cells[(cells["backend"] == backend) & (cells["chunk"] == chunk)]
    rows = []
    for codec in [str(c) for c in ds["codec"].values]:
        sub = cells[(cells["codec"] == codec) & np.isfinite(cells["ratio_mean"])]
        if not len(sub):
            continue
        rows.append(
            {
                "codec": codec,
                "mean ratio": sub["ratio_mean"].mean(),
                "min ratio": sub["ratio_mean"].min(),
                "max ratio": sub["ratio_mean"].max(),
                "mean write (s)": _mean(sub["write_seconds_mean"]),
                "mean write (GiB/s)": _mean(sub["write_GiBps_mean"]),
                "mean read (GiB/s)": _mean(sub["read_GiBps_mean"]),
                "datasets": len(sub),
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "codec",
            "mean ratio",
            "min ratio",
            "max ratio",
            "mean write (s)",
            "mean write (GiB/s)",
            "mean read (GiB/s)",
            "datasets",
        ],
    )
    frame = frame.sort_values("mean ratio", ascending=False, kind="stable").reset_index(drop=True)
    formats = {
        "mean ratio": _RATIO,
        "min ratio": _RATIO,
        "max ratio": _RATIO,
        "mean write (s)": ".3g",
        "mean write (GiB/s)": _SPEED,
        "mean read (GiB/s)": _SPEED,
    }
    title = f"Codecs on {backend}, {chunk} chunks: mean ratio, range over datasets, mean write time"
    return Table("codecs", title, frame, formats)


def chunking_table(ds: xr.Dataset, backends: Sequence[str] | None = None) -> Table:
    """Per dataset, backend and chunking: ratio, write and read GiB/s averaged over codecs (the study's Table 5).

    Averages use only the codecs measured on every chunking of that dataset and backend (so each chunking is
    averaged over the same codecs), ``none`` excluded; ``read std`` is the spread between codecs.
    """
    ds = core_results(ds)
    cells = summary_frame(ds)
    cells = cells[(cells["codec"] != "none") & np.isfinite(cells["ratio_mean"])]
    shapes = ds["chunk_shape"] if "chunk_shape" in ds.coords else None
    chunks = [str(c) for c in ds["chunk"].values]
    rows = []
    for name in dataset_names(ds):
        for backend in backends or [str(b) for b in ds["backend"].values]:
            sub = cells[(cells["dataset"] == name) & (cells["backend"] == backend)]
            if not len(sub):
                continue
            per_chunk = [set(sub[sub["chunk"] == k]["codec"]) for k in chunks]
            present = [s for s in per_chunk if s]
            common = set.intersection(*present) if present else set()
            for chunk in chunks:
                part = sub[sub["chunk"] == chunk]
                if common:
                    part = part[part["codec"].isin(common)]
                if not len(part):
                    continue
                shape = str(shapes.sel(dataset=name, chunk=chunk).item()) if shapes is not None else ""
                rows.append(
                    {
                        "dataset": name,
                        "backend": backend,
                        "chunk": chunk,
                        "chunk shape": shape,
                        "mean ratio": part["ratio_mean"].mean(),
                        "mean write (GiB/s)": _mean(part["write_GiBps_mean"]),
                        "mean read (GiB/s)": _mean(part["read_GiBps_mean"]),
                        "read std (GiB/s)": float(part["read_GiBps_mean"].std(ddof=1)) if len(part) > 1 else np.nan,
                        "codecs": len(part),
                    }
                )
    frame = pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "backend",
            "chunk",
            "chunk shape",
            "mean ratio",
            "mean write (GiB/s)",
            "mean read (GiB/s)",
            "read std (GiB/s)",
            "codecs",
        ],
    )
    formats = {
        "mean ratio": _RATIO,
        "mean write (GiB/s)": _SPEED,
        "mean read (GiB/s)": _SPEED,
        "read std (GiB/s)": _SPEED,
    }
    title = "Chunking strategies: ratio, write and read throughput averaged over codecs"
    note = "Averaged over the codecs measured on every chunking of a dataset and backend ('none' excluded)."
    return Table("chunking", title, frame, formats, note)


def backend_table(ds: xr.Dataset, chunk: str | None = None) -> Table:
    """Per codec, ratio, write and read GiB/s of every backend side by side (means over datasets, one chunking).

    For each codec, datasets are those where every backend has numbers, so the backends are compared on the
    same data; ``datasets`` counts them (0: no common dataset, each backend averaged over its own).
    """
    ds = core_results(ds)
    chunk = chunk or default_chunk(ds)
    cells = summary_frame(ds)
    cells = cells[(cells["chunk"] == chunk) & np.isfinite(cells["ratio_mean"])]
    backends = [str(b) for b in ds["backend"].values]
    metrics = (("ratio", "ratio_mean"), ("write GiB/s", "write_GiBps_mean"), ("read GiB/s", "read_GiBps_mean"))
    rows = []
    for codec in [str(c) for c in ds["codec"].values]:
        sub = cells[cells["codec"] == codec]
        if not len(sub):
            continue
        have = [b for b in backends if (sub["backend"] == b).any()]
        sets = [set(sub[sub["backend"] == b]["dataset"]) for b in have]
        common = set.intersection(*sets) if sets else set()
        row: dict[str, object] = {"codec": codec}
        for label, column in metrics:
            for b in backends:
                part = sub[sub["backend"] == b]
                if common:
                    part = part[part["dataset"].isin(common)]
                row[f"{label} {b}"] = _mean(part[column]) if len(part) else np.nan
        row["datasets"] = len(common)
        rows.append(row)
    columns = ["codec", *[f"{label} {b}" for label, _ in metrics for b in backends], "datasets"]
    frame = pd.DataFrame(rows, columns=columns)
    formats = {c: (_RATIO if c.startswith("ratio") else _SPEED) for c in columns[1:-1]}
    title = f"Backends per codec ({chunk} chunks): ratio, write and read GiB/s, means over common datasets"
    return Table("backends", title, frame, formats)


def reproducibility_table(ds: xr.Dataset, cv_threshold: float = 10.0) -> Table:
    """Per backend and codec: ratio determinism and timing CV over runs (the study's reproducibility check)."""
    ds = core_results(ds)
    summary = summarize_runs(ds, require_verified=True)
    inconsistent = ratio_consistency(ds)
    noisy = flag_noisy(summary, cv_threshold)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = 100 * (summary["ratio_max"] - summary["ratio_min"]) / summary["ratio_mean"]
    rows = []
    for backend in [str(b) for b in ds["backend"].values]:
        for codec in [str(c) for c in ds["codec"].values]:
            sel = {"backend": backend, "codec": codec}
            n_ok = int(summary["n_ok"].sel(sel).sum())
            if n_ok == 0:
                continue
            wcv = summary["write_seconds_cv"].sel(sel).values.ravel()
            rcv = summary["read_seconds_cv"].sel(sel).values.ravel()
            rows.append(
                {
                    "backend": backend,
                    "codec": codec,
                    "ok runs": n_ok,
                    "max ratio spread (%)": _nanmax(spread.sel(sel).values),
                    "inconsistent cells": int(inconsistent.sel(sel).sum()),
                    "median write CV (%)": _nanmedian(wcv),
                    "max write CV (%)": _nanmax(wcv),
                    "median read CV (%)": _nanmedian(rcv),
                    "max read CV (%)": _nanmax(rcv),
                    "noisy cells": int(noisy.sel(sel).sum()),
                }
            )
    columns = [
        "backend",
        "codec",
        "ok runs",
        "max ratio spread (%)",
        "inconsistent cells",
        "median write CV (%)",
        "max write CV (%)",
        "median read CV (%)",
        "max read CV (%)",
        "noisy cells",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    formats = {
        "max ratio spread (%)": ".2g",
        "median write CV (%)": ".1f",
        "max write CV (%)": ".1f",
        "median read CV (%)": ".1f",
        "max read CV (%)": ".1f",
    }
    note = (
        f"Ratios should not change between runs (inconsistent: spread > 1e-9); noisy: timing CV > "
        f"{cv_threshold:g} %. The study saw CV < 2 % on an idle machine."
    )
    return Table("reproducibility", "Reproducibility over runs: ratio spread and timing CV", frame, formats, note)


def failures_table(ds: xr.Dataset) -> Table:
    """Cells that did not count: failed, unverified, skipped, unavailable, or ok without verification."""
    ds = core_results(ds)
    status = ds["status"].where(~(ok_mask(ds) & ~ok_mask(ds, require_verified=True)), "ok (not verified)")
    frame = (
        xr.Dataset({"status": status, "reason": ds["reason"]})
        .drop_vars([c for c in ds.coords if c not in ("dataset", "backend", "codec", "chunk", "run")])
        .to_dataframe()
        .reset_index()
    )
    frame = frame[~frame["status"].isin(["ok", "missing"])]
    rows = []
    for key, group in frame.groupby(["backend", "codec", "chunk", "status", "reason"], sort=False, dropna=False):
        backend, codec, chunk, state, reason = (str(k) for k in key)
        rows.append(
            {
                "backend": backend,
                "codec": codec,
                "chunk": chunk,
                "status": state,
                "runs": len(group),
                "datasets": ", ".join(dict.fromkeys(str(d) for d in group["dataset"])),
                "reason": reason,
            }
        )
    columns = ["backend", "codec", "chunk", "status", "runs", "datasets", "reason"]
    out = pd.DataFrame(rows, columns=columns)
    note = "" if len(out) else "Every cell that ran passed verification."
    return Table("failures", "Cells that do not count (failed, unverified, skipped)", out, {}, note)


def study_comparison_table(ds: xr.Dataset, study: xr.Dataset, chunk: str | None = None) -> Table:
    """cubebench ratio per backend next to the study's published ratio, per dataset and codec, one chunking.

    Datasets are matched by name (the study's are mapped to cubebench's: ``4D_Diff`` -> ``4d_diff``, ...). When
    no dataset is shared, each side is averaged over all its datasets (row ``all (mean)``). Only ratios are
    compared: throughputs depend on the machine.
    """
    ds = core_results(ds)
    chunk = chunk or default_chunk(ds)
    ours = summary_frame(ds)
    ours = ours[(ours["chunk"] == chunk) & np.isfinite(ours["ratio_mean"])]
    theirs = summary_frame(study)
    study_chunk = chunk if chunk in set(theirs["chunk"]) else "balanced"
    theirs = theirs[(theirs["chunk"] == study_chunk) & np.isfinite(theirs["ratio_mean"])]
    backends = [str(b) for b in ds["backend"].values]
    primary = primary_backend(ds)
    shared = [d for d in dataset_names(ds) if d in set(theirs["dataset"])]
    groups: list[tuple[str, pd.DataFrame, pd.DataFrame]]
    if shared:
        groups = [(d, ours[ours["dataset"] == d], theirs[theirs["dataset"] == d]) for d in shared]
    else:
        groups = [("all (mean)", ours, theirs)]
    rows = []
    codecs = [str(c) for c in ds["codec"].values]
    for label, mine, published in groups:
        for codec in codecs:
            ref = published[published["codec"] == codec]["ratio_mean"]
            if not len(ref):
                continue
            row: dict[str, object] = {"dataset": label, "codec": codec, "study ratio": float(ref.mean())}
            for b in backends:
                part = mine[(mine["codec"] == codec) & (mine["backend"] == b)]["ratio_mean"]
                row[f"ratio {b}"] = float(part.mean()) if len(part) else np.nan
            ref_value, value = float(ref.mean()), row.get(f"ratio {primary}", np.nan)
            row[f"Δ {primary} vs study (%)"] = 100 * (float(value) - ref_value) / ref_value  # type: ignore[arg-type]
            rows.append(row)
    columns = ["dataset", "codec", "study ratio", *[f"ratio {b}" for b in backends], f"Δ {primary} vs study (%)"]
    frame = pd.DataFrame(rows, columns=columns)
    formats = {c: _RATIO for c in columns[2:]}
    formats[f"Δ {primary} vs study (%)"] = "+.1f"
    title = f"cubebench vs the study: compression ratio per codec ({chunk} chunks; the study's {study_chunk})"
    note = (
        "The study's numbers are its published means over 10 runs on its own (non-public) data; only ratios "
        "are compared, since throughput depends on the machine."
    )
    return Table("study_comparison", title, frame, formats, note)


def all_tables(ds: xr.Dataset, study: xr.Dataset | None = None) -> list[Table]:
    """Every report table, in report order (the study comparison only when ``study`` is given)."""
    tables = [
        inventory_table(ds),
        best_ratio_table(ds),
        codec_table(ds),
        chunking_table(ds),
        backend_table(ds),
        reproducibility_table(ds),
        failures_table(ds),
    ]
    if study is not None:
        tables.append(study_comparison_table(ds, study))
    return tables


def _nanmax(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else float("nan")


def _nanmedian(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")
