"""Read time against the modelled request latency: one panel per access (full read, frame, region, ...).

Drawn when the results hold S3 storages that differ by ``latency_ms`` (``s3``, ``s3-5ms``, ``s3-20ms``, ...; the
link model of docs/storage.md). Each backend is one line; when a backend ran several codecs or chunkings, its line
is the combination fastest at the highest latency for that access (named in the table), so the figure stays
legible. Numbers are medians over the verified ok runs of the largest dataset.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cubebench.report.figures import _plain_log, new_figure
from cubebench.report.palette import backend_marker

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

#: ``read_<access>_seconds`` variables: the access patterns the cells recorded.
_PATTERN = re.compile(r"^read_(.+)_seconds$")
#: Access name -> (seconds variable, requests variable) for the full read.
_FULL = ("full", "read_seconds", "read_requests")


def accesses(ds: xr.Dataset) -> list[tuple[str, str, str]]:
    """``(access, seconds variable, requests variable)``: the full read, then each recorded access pattern."""
    found = [_FULL]
    for name in ds.data_vars:
        match = _PATTERN.match(str(name))
        if match and str(name) != "read_seconds":
            found.append((match.group(1), str(name), f"read_{match.group(1)}_requests"))
    return found


def swept_storages(ds: xr.Dataset) -> dict[str, float]:
    """S3 storage label -> its ``latency_ms``, when at least two latencies were measured (else ``{}``).

    A storage is S3 when its cells counted requests (local files are not counted). Storages that add a bandwidth
    limit are left out unless every swept storage has the same one, so only the latency varies.
    """
    if "storage" not in ds.dims or "latency_ms" not in ds or "requests" not in ds:
        return {}
    ok = (ds["status"] == "ok") & ds["verified"].astype(bool)
    found: dict[str, tuple[float, float]] = {}
    for storage in ds["storage"].values:
        cells = ds.sel(storage=storage).where(ok.sel(storage=storage))
        requests = cells["requests"].values.astype(float)
        latency = cells["latency_ms"].values.astype(float)
        if not np.isfinite(requests).any() or not np.isfinite(latency).any():
            continue
        bandwidth = np.nan
        if "bandwidth_MBps" in cells and np.isfinite(cells["bandwidth_MBps"].values.astype(float)).any():
            bandwidth = float(np.nanmedian(cells["bandwidth_MBps"].values.astype(float)))
        found[str(storage)] = (float(np.nanmedian(latency)), bandwidth)
    bandwidths = {b for _, b in found.values() if np.isfinite(b)}
    keep = {s: lat for s, (lat, b) in found.items() if not np.isfinite(b) or len(bandwidths) == 1}
    return keep if len(set(keep.values())) >= 2 else {}


def _largest(ds: xr.Dataset) -> str:
    names = [str(d) for d in ds["dataset"].values]
    if "source_bytes" not in ds:
        return names[0]
    sizes = [np.nanmax(np.r_[ds["source_bytes"].sel(dataset=d).values.astype(float).ravel(), 0.0]) for d in names]
    return names[int(np.argmax(sizes))]


def latency_frame(ds: xr.Dataset) -> pd.DataFrame:
    """One row per access x backend x latency: median read seconds (and read requests) of the chosen combination.

    Columns: dataset, access, backend, codec, chunk, storage, latency_ms, read_seconds, read_requests, n_runs. Empty
    when the results hold no latency sweep (:func:`swept_storages`).
    """
    columns = ["dataset", "access", "backend", "codec", "chunk", "storage", "latency_ms", "read_seconds"]
    columns += ["read_requests", "n_runs"]
    storages = swept_storages(ds)
    if not storages:
        return pd.DataFrame(columns=columns)
    dataset = _largest(ds)
    sub = ds.sel(dataset=dataset, storage=list(storages))
    ok = (sub["status"] == "ok") & sub["verified"].astype(bool)
    slowest = [s for s, latency in storages.items() if latency == max(storages.values())]
    rows = []
    for access, seconds, requests in accesses(sub):
        times = sub[seconds].where(ok)
        median = times.median("run", skipna=True)
        for backend in sub["backend"].values:
            at_top = median.sel(backend=backend, storage=slowest).min("storage")
            if not np.isfinite(at_top.values.astype(float)).any():
                continue
            flat = at_top.transpose("codec", "chunk").values.astype(float)
            codec_i, chunk_i = np.unravel_index(np.nanargmin(np.where(np.isfinite(flat), flat, np.inf)), flat.shape)
            codec, chunk = str(at_top["codec"].values[codec_i]), str(at_top["chunk"].values[chunk_i])
            for storage, latency in sorted(storages.items(), key=lambda kv: kv[1]):
                where = {"backend": backend, "codec": codec, "chunk": chunk, "storage": storage}
                values = times.sel(where).values.astype(float)
                if not np.isfinite(values).any():
                    continue
                counts = sub[requests].where(ok).sel(where).values.astype(float) if requests in sub else [np.nan]
                counted = np.asarray(counts)[np.isfinite(counts)]
                rows.append(
                    {
                        "dataset": dataset, "access": access, "backend": str(backend), "codec": codec,
                        "chunk": chunk, "storage": storage, "latency_ms": latency,
                        "read_seconds": float(np.nanmedian(values)),
                        "read_requests": float(np.median(counted)) if counted.size else np.nan,
                        "n_runs": int(np.isfinite(values).sum()),
                    }
                )  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def latency_figure(frame: pd.DataFrame) -> Figure | None:
    """Read time (ms, log scale) against latency (ms), one panel per access, one line per backend; None if empty."""
    if frame.empty:
        return None
    access_names = list(dict.fromkeys(frame["access"]))
    backends = list(dict.fromkeys(frame["backend"]))
    fig = new_figure(3.4 * len(access_names) + 0.6, 3.4)
    axes = fig.subplots(1, len(access_names), squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(backends))]
    for ax, access in zip(axes, access_names, strict=True):
        part = frame[frame["access"] == access]
        for backend, color in zip(backends, colors, strict=True):
            line = part[part["backend"] == backend].sort_values("latency_ms")
            if line.empty:
                continue
            ax.plot(
                line["latency_ms"], line["read_seconds"] * 1000, marker=backend_marker(backend), color=color,
                label=backend,
            )  # fmt: skip
        ax.set_title("full read" if access == "full" else f"{access.replace('_', ' ')} read", fontsize=10)
        ax.set_xlabel("latency per request (ms)")
        ax.set_xticks(sorted(set(frame["latency_ms"])))
        _plain_log(ax)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("read time (ms)")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # every backend once, also one missing from the first panel
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8)
    return fig
