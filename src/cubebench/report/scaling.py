"""The report's scaling figure: predicted write and read throughput against node count, one line per backend.

Drawn from :mod:`cubebench.scaling` (the stated model of docs/scaling.md) on the results alone, for results that
recorded how each backend spreads (``backend_scaling``, written by every run since the model exists).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cubebench.report.palette import backend_marker
from cubebench.report.select import default_chunk, largest_dataset
from cubebench.scaling import measured_rates, predict, recorded_kinds
from cubebench.stats import core_results

if TYPE_CHECKING:
    from collections.abc import Sequence

    import xarray as xr
    from matplotlib.figure import Figure

#: What the report's figure assumes: nodes 1..64, each like the measured machine, and this storage bandwidth.
NODES = (1, 2, 4, 8, 16, 32, 64)
STORAGE_BANDWIDTH = 10e9


def scaling_codec(ds: xr.Dataset) -> str | None:
    """The codec the figure shows: verified on the most backends (the first such, compressing if one is)."""
    ok = ((ds["status"] == "ok") & ds["verified"]).any(["dataset", "chunk", "run"])
    counts = {str(c): int(ok.sel(codec=c).sum()) for c in ds["codec"].values}
    best = max(counts.values(), default=0)
    tied = [c for c, n in counts.items() if n == best and best]
    return next((c for c in tied if c != "none"), tied[0] if tied else None)


def scaling_figure(
    ds: xr.Dataset, nodes: Sequence[int] = NODES, storage_bandwidth: float = STORAGE_BANDWIDTH
) -> Figure | None:
    """Predicted write and read GiB/s per backend against nodes, or None when the results cannot say."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    ds = core_results(ds)
    kinds = recorded_kinds(ds)
    codec = scaling_codec(ds)
    if kinds is None or codec is None:
        return None
    dataset, chunk = largest_dataset(ds), default_chunk(ds)
    pred = predict(measured_rates(ds, kinds), nodes, storage_bandwidth)
    pred = pred[(pred["dataset"] == dataset) & (pred["chunk"] == chunk) & (pred["codec"] == codec)]
    if pred.empty:
        return None
    fig = Figure(figsize=(11.0, 4.8), layout="constrained")  # pyplot-free, as every report figure
    axes = fig.subplots(1, 2, sharey=True)
    fig.suptitle(f"Predicted throughput on N nodes ({dataset}, {codec}, {chunk} chunks)")
    for ax, what in zip(axes, ("write", "read"), strict=True):
        for backend, rows in pred.groupby("backend", sort=False):
            rows = rows.sort_values("nodes")
            ax.plot(rows["nodes"], rows[f"{what}_GiBps"], marker=backend_marker(str(backend)), label=str(backend))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(nodes), labels=[str(n) for n in nodes])
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("nodes")
        ax.set_title(what)
    axes[0].set_ylabel("predicted throughput (GiB/s of source data)")
    axes[0].legend(fontsize=8)
    return fig
