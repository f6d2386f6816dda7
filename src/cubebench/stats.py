"""Statistics on a results Dataset: summaries over runs, reproducibility flags, fits, bounds, Pareto fronts.

Every function here is pure: it takes the ``xarray.Dataset`` built by :func:`cubebench.results.records_to_dataset`
(or plain arrays) and returns new objects, never touching backends, files or Dask. The report, the CLI and
:mod:`cubebench.recommend` are thin layers over these functions.

Conventions
-----------
- Only cells with ``status == \"ok\"`` carry timings; :func:`summarize_runs` masks everything else. Recommendations
  are stricter and also require ``verified``.
- Spread over runs uses the sample standard deviation (``ddof=1``); it is NaN with fewer than 2 ok runs, and so is
  the CV (``100 * std / mean``, in percent).
- Results merged from several machines carry an extra ``machine`` dimension. The summaries keep extra dimensions
  as they are; :func:`core_results` (used by :func:`cubebench.recommend.recommend` and the report) squeezes extra
  dimensions of length 1 and refuses longer ones: select one first (``ds.sel(machine=\"a\")``), because averaging
  timings measured on different machines has no meaning.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from cubebench.errors import ResultsError

if TYPE_CHECKING:
    from collections.abc import Sequence


#: Dimensions of one cell, without ``run``.
CELL_DIMS = ("dataset", "backend", "codec", "chunk")


RESULT_DIMS = (*CELL_DIMS, "run")


#: Summary statistics computed over runs, as suffixes of the summary variables (``ratio_mean``, ...).
SUMMARY_STATS = ("mean", "std", "min", "max", "median", "cv")


#: Per-cell numeric variables that are settings or bookkeeping, not measurements: never summarized.
_NOT_MEASURED = frozenset(
    {
        "source_bytes",
        "n_chunks",
        "estimate_seconds",
        "workers",
        "threads_per_worker",
        "codec_threads",
        "latency_ms",
        "bandwidth_MBps",
    }
)


def ok_mask(ds: xr.Dataset, require_verified: bool = False) -> xr.DataArray:
    """Boolean mask of the cells whose numbers count: ``status == "ok"`` (and ``verified`` if asked)."""
    if "status" not in ds:
        raise ResultsError("results have no 'status' variable; is this a cubebench results Dataset?")
    mask = ds["status"] == "ok"
    if require_verified and "verified" in ds:
        mask = mask & ds["verified"].astype(bool)
    return mask


def core_results(ds: xr.Dataset) -> xr.Dataset:
    """Return ``ds`` with only the result dimensions: extra dimensions of length 1 are squeezed out.

    Raises :class:`ResultsError` for an extra dimension with several values (e.g. ``machine`` in merged results),
    since timings from different machines must not be averaged: select one first.
    """
    missing = [d for d in RESULT_DIMS if d not in ds.dims]
    if missing:
        raise ResultsError(f"results lack the dimension(s) {', '.join(missing)}; expected {', '.join(RESULT_DIMS)}")
    extra = [d for d in ds.dims if d not in RESULT_DIMS]
    for dim in extra:
        if ds.sizes[dim] > 1:
            values = ", ".join(str(v) for v in ds[dim].values[:5]) if dim in ds.coords else ""
            raise ResultsError(
                f"results have a '{dim}' dimension with {ds.sizes[dim]} values ({values}); "
                f"select one first, e.g. ds.sel({dim}=...)"
            )
        ds = ds.isel({dim: 0}, drop=True)
    return ds


def one_storage(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without a ``storage`` dimension of length 1 (its value kept as a scalar coordinate).

    Results of one storage (all of them before storage became a dimension) then read as they always did; with
    several storages the dimension stays, as ``machine`` does: select one, or compare them side by side.
    """
    if "storage" in ds.dims and ds.sizes["storage"] == 1:
        return ds.isel(storage=0)
    return ds


def measured_variables(ds: xr.Dataset) -> list[str]:
    """Names of the per-cell numeric measurements (timings, sizes, ratio, and any extras the runner added)."""
    names = []
    for name, var in ds.data_vars.items():
        if "run" not in var.dims or name in _NOT_MEASURED:
            continue
        if np.issubdtype(var.dtype, np.number) and not np.issubdtype(var.dtype, np.bool_):
            names.append(str(name))
    return names


def _run_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, std (ddof=1), min, max, median, CV% and count over the last axis, ignoring NaN, without warnings."""
    count = np.sum(np.isfinite(values), axis=-1)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=-1)
        std = np.nanstd(values, axis=-1, ddof=1)
        low = np.nanmin(values, axis=-1)
        high = np.nanmax(values, axis=-1)
        median = np.nanmedian(values, axis=-1)
        std = np.where(count >= 2, std, np.nan)
        cv = np.where(mean != 0, 100.0 * std / np.abs(mean), np.nan)
    empty = count == 0
    for arr in (mean, low, high, median):
        arr[empty] = np.nan
    return {"mean": mean, "std": std, "min": low, "max": high, "median": median, "cv": cv, "count": count}


def summarize_runs(ds: xr.Dataset, require_verified: bool = False) -> xr.Dataset:
    """Mean, std, min, max, median and CV (%) over ``run`` of every measured variable, from ok cells only.

    Parameters
    ----------
    ds
        A results Dataset (dims ``dataset, backend, codec, chunk, run``; extra dims such as ``machine`` are kept).
    require_verified
        Count only cells that are also ``verified`` (as :func:`recommend` does).

    Returns
    -------
    xarray.Dataset
        Variables ``<metric>_<stat>`` for stat in :data:`SUMMARY_STATS` (e.g. ``ratio_mean``,
        ``write_seconds_cv``), plus ``n_ok`` (runs that count) and ``n_runs`` (runs not ``missing``), over the
        cell dims. Per-dataset variables (``dataset_*``), coordinates and attributes are carried over.
    """
    if "run" not in ds.dims:
        raise ResultsError("results have no 'run' dimension; pass the Dataset from load_results or run")
    ds = one_storage(ds)
    mask = ok_mask(ds, require_verified)
    out: dict[str, xr.DataArray] = {}
    for name in measured_variables(ds):
        values = ds[name].astype(float).where(mask).transpose(..., "run")
        dims = values.dims[:-1]
        stats = _run_stats(values.values)
        units = ds[name].attrs.get("units", "")
        for stat in SUMMARY_STATS:
            attrs = {"units": "%" if stat == "cv" else units, "description": f"{stat} over ok runs of {name}"}
            out[f"{name}_{stat}"] = xr.DataArray(stats[stat], dims=dims, attrs=attrs)
    counted = mask.transpose(..., "run")
    out["n_ok"] = xr.DataArray(
        counted.values.sum(axis=-1), dims=counted.dims[:-1], attrs={"description": "runs that count"}
    )
    if "status" in ds:
        present = (ds["status"] != "missing").transpose(..., "run")
        out["n_runs"] = xr.DataArray(present.values.sum(axis=-1), dims=present.dims[:-1])
    coords = {name: coord for name, coord in ds.coords.items() if "run" not in coord.dims}
    summary = xr.Dataset(out, coords=coords, attrs=dict(ds.attrs))
    for key, var in ds.data_vars.items():
        if "run" not in var.dims and key not in summary:
            summary[key] = var
    return summary


def _as_summary(ds: xr.Dataset) -> xr.Dataset:
    return summarize_runs(ds) if "run" in ds.dims else ds


def ratio_consistency(ds: xr.Dataset, rtol: float = 1e-9) -> xr.DataArray:
    """Flag cells whose compression ratio differs across ok runs (it should be deterministic).

    A cell is flagged when ``(max - min) / mean`` of its ratio over ok runs exceeds ``rtol``; cells with no ok
    run are not flagged. A flag points at a nondeterministic codec path (threads, timestamps in metadata, a
    changing ``write_empty_chunks`` decision) and deserves a look before ratios are compared.
    """
    ds = one_storage(ds)
    mask = ok_mask(ds)
    ratio = ds["ratio"].where(mask)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = (ratio.max("run", skipna=True) - ratio.min("run", skipna=True)) / ratio.mean("run", skipna=True)
    flags = (spread > rtol).fillna(False).astype(bool)
    flags.name = "ratio_inconsistent"
    flags.attrs["description"] = f"ratio spread (max-min)/mean over ok runs > {rtol:g}"
    return flags


def flag_noisy(
    ds: xr.Dataset,
    cv_threshold: float = 10.0,
    metrics: Sequence[str] = ("write_seconds", "read_seconds"),
) -> xr.DataArray:
    """Flag cells whose timing CV (%) over ok runs exceeds ``cv_threshold`` for any of ``metrics``.

    Accepts a results Dataset (summarized here) or the output of :func:`summarize_runs`. Cells with fewer than
    two ok runs have no CV and are not flagged. The study saw CV < 2 % on an idle machine; noisy cells point at
    background load, page-cache effects or too-small datasets.
    """
    summary = _as_summary(ds)
    present = [m for m in metrics if f"{m}_cv" in summary]
    if not present:
        raise ResultsError(f"no CV for any of {', '.join(metrics)} in these results")
    noisy = xr.zeros_like(summary[f"{present[0]}_cv"], dtype=bool)
    for metric in present:
        noisy = noisy | (summary[f"{metric}_cv"] > cv_threshold).fillna(False)
    noisy.name = "noisy"
    noisy.attrs = {"description": f"CV over ok runs > {cv_threshold:g} % for any of {', '.join(present)}"}
    return noisy


@dataclass(frozen=True)
class PowerLawFit:
    """Fit of compression ratio against zero fraction, ``C = a * s**b + c``.

    ``model`` says which form was fitted: ``"a*s^b+c"`` (4 or more distinct points), ``"a*s^b"`` (2 or 3
    points, ``c = 0``) or ``"none"``; ``reason`` says why a simpler form (or none) was used and why ``r2`` may be
    NaN (it is undefined when the model passes exactly through every point).
    """

    a: float
    b: float
    c: float
    r2: float
    n: int
    model: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the parameters are usable for a curve."""
        return self.model != "none" and all(math.isfinite(v) for v in (self.a, self.b, self.c))

    def predict(self, s: Any) -> np.ndarray:
        """Ratio predicted at zero fraction(s) ``s``."""
        with np.errstate(all="ignore"):
            return np.asarray(self.a * np.power(np.asarray(s, dtype=float), self.b) + self.c, dtype=float)

    def label(self) -> str:
        """Short legend text, e.g. ``C = 40.1 s^6.90 + 2.05 (R² = 0.987)``."""
        if not self.ok:
            return f"no power-law fit ({self.reason})" if self.reason else "no power-law fit"
        text = f"C = {self.a:.3g}·s^{self.b:.2f}"
        if self.model == "a*s^b+c":
            text += f" {'+' if self.c >= 0 else '−'} {abs(self.c):.3g}"
        r2 = "n/a" if not math.isfinite(self.r2) else f"{self.r2:.3f}"
        return f"{text} (R² = {r2})"


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 0 or not np.all(np.isfinite(pred)):
        return float("nan")
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def _curve_fit(func: Any, s: np.ndarray, c: np.ndarray, p0: Sequence[float]) -> np.ndarray | None:
    from scipy.optimize import curve_fit

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            params, _ = curve_fit(func, s, c, p0=list(p0), maxfev=20000)
    except (RuntimeError, ValueError, TypeError):
        return None
    params = np.asarray(params, dtype=float)
    return params if np.all(np.isfinite(params)) else None


def fit_power_law(zero_fraction: Any, ratio: Any) -> PowerLawFit:
    """Fit ``C = a * s**b + c`` of compression ratio ``C`` against zero fraction ``s`` (the study's Eq. 1).

    Points with non-finite values, ``s`` outside ``(0, 1]`` or ``C <= 0`` are dropped. With 4 or more distinct
    zero fractions the 3-parameter model is fitted by least squares (``scipy.optimize.curve_fit``, started from
    a log-log line); with 3 the model ``a * s**b`` (``c = 0``) is fitted, so that R² still measures something;
    with 2 that model passes exactly through both points and R² is NaN; with fewer nothing is fitted. The
    ``reason`` field says which case applied.

    Examples
    --------
    >>> s = [0.5, 0.6, 0.7, 0.8, 0.9]
    >>> fit = fit_power_law(s, [40 * x**6 + 3 for x in s])
    >>> round(fit.b, 3), round(fit.c, 3)
    (6.0, 3.0)
    """
    s = np.asarray(zero_fraction, dtype=float).ravel()
    c = np.asarray(ratio, dtype=float).ravel()
    if s.shape != c.shape:
        raise ResultsError(f"zero_fraction has {s.size} values but ratio has {c.size}")
    keep = np.isfinite(s) & np.isfinite(c) & (s > 0) & (s <= 1) & (c > 0)
    s, c = s[keep], c[keep]
    n, distinct = int(s.size), int(np.unique(s).size)
    nan = float("nan")
    if distinct < 2:
        return PowerLawFit(nan, nan, nan, nan, n, "none", f"needs at least 2 distinct zero fractions, got {distinct}")
    # log-log least squares for C = a s^b: the start point, and the exact answer for 2 points
    x, y = np.log(s), np.log(c)
    b0 = float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))
    a0 = float(np.exp(y.mean() - b0 * x.mean()))
    if distinct >= 4:
        params = _curve_fit(lambda t, a, b, k: a * np.power(t, b) + k, s, c, (a0, b0, 0.0))
        if params is not None:
            a, b, k = (float(p) for p in params)
            return PowerLawFit(a, b, k, _r2(c, a * np.power(s, b) + k), n, "a*s^b+c")
        reason = "the 3-parameter fit did not converge; fitted C = a*s^b (c = 0)"
    elif distinct == 3:
        reason = "3 points: fitted C = a*s^b (c = 0); the 3-parameter model needs at least 4"
    else:
        return PowerLawFit(a0, b0, 0.0, nan, n, "a*s^b", "2 points determine C = a*s^b exactly; R² undefined")
    params = _curve_fit(lambda t, a, b: a * np.power(t, b), s, c, (a0, b0))
    a, b = (float(p) for p in params) if params is not None else (a0, b0)
    return PowerLawFit(a, b, 0.0, _r2(c, a * np.power(s, b)), n, "a*s^b", reason)


def binary_entropy(s: Any) -> Any:
    """Binary (zero / non-zero) Shannon entropy ``H2(s)`` in bits; NaN outside ``[0, 1]``."""
    from scipy.special import xlogy

    arr = np.asarray(s, dtype=float)
    with np.errstate(all="ignore"):
        h = -(xlogy(arr, arr) + xlogy(1 - arr, 1 - arr)) / np.log(2)
    h = np.where((arr >= 0) & (arr <= 1), h, np.nan)
    return float(h) if h.ndim == 0 else h


def shannon_bound(s: Any, bits: float = 16) -> Any:
    """Sparsity-only upper bound on the compression ratio, ``bits / H2(s)`` (the study's section 3.3).

    It counts only the information in the zero / non-zero pattern and ignores the non-zero values, so it is an
    optimistic limit: 16 at ``s = 0.5`` and about 43 at ``s = 0.93`` for 16-bit data. Infinite at ``s`` of 0 or 1.

    Examples
    --------
    >>> shannon_bound(0.5, 16)
    16.0
    """
    h = np.asarray(binary_entropy(s), dtype=float)
    with np.errstate(all="ignore"):
        bound = np.where(h > 0, bits / h, np.where(np.isnan(h), np.nan, np.inf))
    return float(bound) if bound.ndim == 0 else bound


def entropy_bound(bits: Any, entropy_bits: Any) -> Any:
    """Order-0 entropy bound on the ratio, ``bits / H`` with ``H`` the value-histogram entropy (bits / value).

    Tighter than :func:`shannon_bound` because it also counts the non-zero values; codecs that exploit
    correlations between neighbouring values can still exceed it.
    """
    with np.errstate(all="ignore"):
        out = np.asarray(bits, dtype=float) / np.asarray(entropy_bits, dtype=float)
    out = np.where(np.isfinite(out) | np.isinf(out), out, np.nan)
    return float(out) if out.ndim == 0 else out


def pareto_front(x: Any, y: Any) -> np.ndarray:
    """Indices of the points not dominated when both ``x`` and ``y`` are maximized, sorted by ``x``.

    A point is dominated when another is at least as good on both axes and better on one. Points with NaN are
    ignored; exact duplicates on the front are all kept.

    Examples
    --------
    >>> pareto_front([1, 2, 3, 2], [3, 2, 1, 1]).tolist()
    [0, 1, 2]
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ResultsError(f"x has {xa.size} values but y has {ya.size}")
    idx = np.flatnonzero(np.isfinite(xa) & np.isfinite(ya))
    xv, yv = xa[idx], ya[idx]
    geq = (xv[None, :] >= xv[:, None]) & (yv[None, :] >= yv[:, None])
    better = (xv[None, :] > xv[:, None]) | (yv[None, :] > yv[:, None])
    dominated = np.any(geq & better, axis=1)
    front = idx[~dominated]
    order = np.lexsort((-ya[front], xa[front]))
    return np.asarray(front[order], dtype=np.intp)


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; NaN -> ``"-"``."""
    if not math.isfinite(n):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
