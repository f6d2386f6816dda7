"""Report figures built from a results Dataset only (never backends, Dask or the runner).

Each builder returns a :class:`matplotlib.figure.Figure` made without pyplot (no global state, no GUI backend,
safe in threads and notebooks); :func:`save_figure` writes it as PNG and PDF. Every figure uses constrained
layout, axis labels with units, and the one palette of :mod:`cubebench.report.palette`, so a codec has the same
colour everywhere. Numbers are means over verified ok runs (error bars: std over runs). A figure whose inputs are
missing (e.g. no zero fractions) is still produced, with a message, so a report is always complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter

from cubebench.errors import ResultsError
from cubebench.recommend import rank
from cubebench.report.palette import backend_hatch, backend_marker, chunk_hatch, codec_color
from cubebench.report.select import (
    bits_per_value,
    dataset_names,
    dataset_values,
    default_chunk,
    largest_dataset,
    primary_backend,
    summary_frame,
    zero_fractions,
)
from cubebench.stats import core_results, entropy_bound, fit_power_law, pareto_front, shannon_bound

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.projections.polar import PolarAxes

#: Panels shared by the bar figures: (column prefix, axis label, log scale).
_PANELS = (
    ("ratio", "compression ratio\n(uncompressed / stored)", False),
    ("write_GiBps", "write throughput (GiB/s)", True),
    ("read_GiBps", "read throughput (GiB/s)", True),
)
DPI = 150


@dataclass(frozen=True, eq=False)
class ReportFigure:
    """A built figure with its file stem and one-line caption."""

    name: str
    caption: str
    figure: Figure


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, folder: Path, name: str) -> list[Path]:
    """Write ``<name>.png`` (150 dpi) and ``<name>.pdf`` into ``folder``; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    return paths


class _PlainLogFormatter(LogFormatter):
    """Matplotlib's choice of which log ticks to label, written as plain numbers (0.3, not 3×10⁻¹)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:.4g}" if super().__call__(x, pos) else ""


def _plain_log(ax: Axes, axis: str = "y") -> None:
    """Log scale with plain tick labels; minor ticks labelled only over short ranges."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    target.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.0, 0.4)))


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _codecs_in(frame: pd.DataFrame, ds: xr.Dataset) -> list[str]:
    present = set(frame["codec"])
    return [str(c) for c in ds["codec"].values if str(c) in present]


def _codec_handles(codecs: Sequence[str]) -> list[Patch]:
    return [Patch(facecolor=codec_color(c), edgecolor="black", linewidth=0.5, label=c) for c in codecs]


def _bars(
    ax: Axes,
    groups: Sequence[str],
    members: Sequence[str],
    value: dict[tuple[str, str], tuple[float, float]],
    color: dict[tuple[str, str], str],
    hatch: dict[tuple[str, str], str],
    log: bool,
) -> None:
    """Grouped bars: one group per ``groups`` entry, one bar per ``members`` entry, std as error bars."""
    n = max(len(members), 1)
    width = 0.8 / n
    x = np.arange(len(groups))
    for j, member in enumerate(members):
        heights, errors, colors, hatches, pos = [], [], [], [], []
        for i, group in enumerate(groups):
            mean, std = value.get((group, member), (math.nan, math.nan))
            if not math.isfinite(mean) or (log and mean <= 0):
                continue
            heights.append(mean)
            errors.append(std if math.isfinite(std) else 0.0)
            colors.append(color[(group, member)])
            hatches.append(hatch.get((group, member), ""))
            pos.append(x[i] - 0.4 + width * (j + 0.5))
        if not heights:
            continue
        bars = ax.bar(
            pos,
            heights,
            width=width * 0.95,
            color=colors,
            edgecolor="black",
            linewidth=0.4,
            yerr=errors,
            error_kw={"elinewidth": 0.6, "capsize": 0, "ecolor": "0.2"},
        )
        for bar, h in zip(bars, hatches, strict=True):
            bar.set_hatch(h)
    ax.set_xticks(x, groups)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    if log:
        _plain_log(ax)
    ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
    ax.set_axisbelow(True)


def _metric_lookup(
    frame: pd.DataFrame, metric: str, group: str, member: str
) -> dict[tuple[str, str], tuple[float, float]]:
    std = f"{metric}_std" if f"{metric}_std" in frame else None
    out = {}
    for row in frame.to_dict("records"):
        out[(str(row[group]), str(row[member]))] = (
            float(row[f"{metric}_mean"]),
            float(row[std]) if std else math.nan,
        )
    return out


# ----------------------------------------------------------------------------------------------------------------


def performance_figure(ds: xr.Dataset, backend: str | None = None, chunk: str | None = None) -> Figure:
    """Ratio, write and read throughput per codec per dataset (3 panels; the study's Figure 1)."""
    ds = core_results(ds)
    backend = backend or primary_backend(ds)
    chunk = chunk or default_chunk(ds)
    frame = summary_frame(ds)
    frame = frame[(frame["backend"] == backend) & (frame["chunk"] == chunk)]
    datasets = [d for d in dataset_names(ds) if d in set(frame["dataset"])]
    codecs = _codecs_in(frame, ds)
    width = float(np.clip(2.5 + 0.18 * len(datasets) * max(len(codecs), 1), 7.0, 16.0))
    fig = new_figure(width, 8.5)
    axes = fig.subplots(3, 1, sharex=True)
    fig.suptitle(f"Compression ratio and throughput per codec ({backend}, {chunk} chunks)")
    if frame.empty:
        for ax in axes:
            _no_data(ax, f"no verified results on {backend} with {chunk} chunks")
        return fig
    colors = {(d, c): codec_color(c) for d in datasets for c in codecs}
    for ax, (metric, label, log) in zip(axes, _PANELS, strict=True):
        _bars(ax, datasets, codecs, _metric_lookup(frame, metric, "dataset", "codec"), colors, {}, log)
        ax.set_ylabel(label)
    axes[-1].set_xlabel("dataset")
    fig.legend(
        handles=_codec_handles(codecs),
        loc="outside lower center",
        ncols=min(len(codecs), 7),
        title="codec",
        fontsize=8,
        title_fontsize=9,
    )
    return fig


def radar_figure(ds: xr.Dataset, top: int = 6, backend: str | None = None, chunk: str | None = None) -> Figure:
    """Radar chart of the ``top`` codecs by balanced score: ratio, write and read, each relative to the best shown.

    Values are geometric means over datasets (the rule of :func:`cubebench.stats.recommend`), so the study's
    Figure 2 comparison holds whatever the datasets' absolute ratios.
    """
    ds = core_results(ds)
    backend = backend or primary_backend(ds)
    chunk = chunk or default_chunk(ds)
    # placed by hand: constrained layout does not reserve room for labels outside a polar plot
    fig = Figure(figsize=(9.0, 6.0))
    try:
        candidates = rank(ds, "balanced", backends=[backend], chunks=[chunk])[:top]
    except ResultsError as exc:
        _no_data(fig.add_subplot(), str(exc))
        return fig
    ax = cast("PolarAxes", fig.add_axes((0.17, 0.08, 0.46, 0.80), projection="polar"))
    fig.suptitle(f"Top {len(candidates)} codecs by balanced score ({backend}, {chunk} chunks)")
    values = np.array([[c.ratio, c.write_GiBps, c.read_GiBps] for c in candidates])
    best = values.max(axis=0)
    normalized = values / best
    labels = [f"ratio\n(max {best[0]:.3g})", f"write\n(max {best[1]:.3g} GiB/s)", f"read\n(max {best[2]:.3g} GiB/s)"]
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False)
    closed = np.concatenate([angles, angles[:1]])
    for cand, row in zip(candidates, normalized, strict=True):
        ring = np.concatenate([row, row[:1]])
        color = codec_color(cand.codec)
        ax.plot(closed, ring, color=color, linewidth=1.8, label=f"{cand.codec} (score {cand.score:.2f})")
        ax.fill(closed, ring, color=color, alpha=0.08)
    ax.set_theta_offset(np.pi / 2)  # ratio at the top, write and read at the lower corners
    ax.set_xticks(angles, ["" for _ in labels])
    for angle, label in zip(angles, labels, strict=True):
        # unclipped texts (not tick labels) so that constrained layout keeps them inside the figure
        side = np.cos(angle + np.pi / 2)
        ha = "right" if side < -0.1 else "left" if side > 0.1 else "center"
        va = "bottom" if np.sin(angle + np.pi / 2) > 0.5 else "top"
        ax.text(angle, 1.12, label, ha=ha, va=va, fontsize=9, clip_on=False)
    ax.set_ylim(0, 1.05)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["0.25", "0.5", "0.75", "1"], fontsize=7, color="0.4")
    ax.set_rlabel_position(60)
    fig.legend(
        loc="center right", bbox_to_anchor=(0.99, 0.5), fontsize=8, title="codec (fraction of best)", title_fontsize=9
    )
    return fig


def sparsity_figure(ds: xr.Dataset, study: xr.Dataset | None = None) -> Figure:
    """Ratio against zero fraction: every cell, the best per dataset, the power-law fit and two bounds.

    The fit ``C = a s^b + c`` is made on the best mean ratio per dataset (as in the study's Figure 3). Bounds:
    the sparsity-only Shannon bound ``bits / H2(s)`` (one curve per bit depth) and the order-0 entropy bound
    ``bits / H`` per dataset. With ``study``, its five published best ratios and their fit are overlaid.
    """
    ds = core_results(ds)
    fig = new_figure(8.0, 6.0)
    ax = fig.add_subplot()
    zeros = zero_fractions(ds)
    fig.suptitle("Compression ratio against sparsity")
    if zeros is None or not any(math.isfinite(v) for v in zeros.values()):
        _no_data(ax, "no zero-fraction statistics in these results (dataset_zero_fraction)")
        return fig
    frame = summary_frame(ds)
    frame = frame[np.isfinite(frame["ratio_mean"]) & (frame["codec"] != "none")].copy()
    frame["s"] = frame["dataset"].map(zeros).astype(float)
    frame = frame[np.isfinite(frame["s"])]
    xs: list[float] = [v for v in zeros.values() if math.isfinite(v)]
    if not frame.empty:
        ax.scatter(
            frame["s"],
            frame["ratio_mean"],
            s=10,
            color="0.65",
            alpha=0.6,
            linewidths=0,
            label="every codec, backend, chunking (mean)",
            zorder=2,
        )
        best = frame.loc[frame.groupby("dataset")["ratio_mean"].idxmax()]
        ax.scatter(best["s"], best["ratio_mean"], s=45, color="black", zorder=4, label="best per dataset (cubebench)")
        for i, row in enumerate(sorted(best.to_dict("records"), key=lambda r: float(r["s"]))):
            ax.annotate(  # alternate below/above so neighbours with close zero fractions do not overlap
                str(row["dataset"]),
                (row["s"], row["ratio_mean"]),
                textcoords="offset points",
                xytext=(6, -12) if i % 2 == 0 else (-8, 14),
                ha="left" if i % 2 == 0 else "right",
                fontsize=8,
            )
        fit = fit_power_law(best["s"], best["ratio_mean"])
        if fit.ok:
            grid = np.linspace(min(best["s"]) - 0.02, min(max(best["s"]) + 0.02, 0.999), 200)
            ax.plot(grid, fit.predict(grid), color="black", linewidth=1.5, label=f"fit {fit.label()}", zorder=3)
        else:
            ax.plot([], [], " ", label=fit.label())
    if study is not None and "dataset_zero_fraction" in study:
        from cubebench.report.study import best_per_dataset

        published = best_per_dataset(study).dropna()
        if not published.empty:
            xs += list(published["zero_fraction"])
            ax.scatter(
                published["zero_fraction"],
                published["ratio"],
                marker="*",
                s=140,
                color="#d62728",
                edgecolor="black",
                linewidth=0.5,
                zorder=5,
                label="study: best per dataset (published)",
            )
            sfit = fit_power_law(published["zero_fraction"], published["ratio"])
            if sfit.ok:
                grid = np.linspace(
                    published["zero_fraction"].min() - 0.02, min(published["zero_fraction"].max() + 0.02, 0.999), 200
                )
                ax.plot(
                    grid,
                    sfit.predict(grid),
                    color="#d62728",
                    linestyle=":",
                    linewidth=1.5,
                    label=f"study fit {sfit.label()}",
                )
    lo, hi = max(min(xs) - 0.05, 0.01), min(max(xs) + 0.04, 0.995)
    grid = np.linspace(lo, hi, 300)
    bits = bits_per_value(ds)
    for depth, style in zip(sorted({b for b in bits.values() if math.isfinite(b)}), ("--", "-.", ":"), strict=False):
        ax.plot(
            grid,
            shannon_bound(grid, depth),
            color="#1f77b4",
            linestyle=style,
            linewidth=1.2,
            label=f"sparsity-only bound {depth:.0f}/H2(s)",
        )
    entropy = _entropy_bounds(ds, bits)
    if entropy:
        pts = [(zeros[d], v) for d, v in entropy.items() if math.isfinite(zeros.get(d, math.nan)) and math.isfinite(v)]
        if pts:
            px, py = zip(*pts, strict=True)
            ax.scatter(
                px,
                py,
                marker="_",
                s=400,
                linewidths=2.5,
                color="#2ca02c",
                zorder=4,
                label="order-0 entropy bound bits/H (per dataset)",
            )
    _plain_log(ax)
    ax.set_xlabel("zero fraction s (fraction of values equal to 0)")
    ax.set_ylabel("compression ratio (uncompressed / stored)")
    ax.set_xlim(lo, hi)
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


def _entropy_bounds(ds: xr.Dataset, bits: dict[str, float]) -> dict[str, float]:
    given = dataset_values(ds, "entropy_bound")
    if given is not None:
        return {k: _float(v) for k, v in given.items()}
    entropy = dataset_values(ds, "entropy_bits")
    if entropy is None:
        return {}
    return {k: _float(entropy_bound(bits[k], _float(v))) for k, v in entropy.items()}


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _top_codecs(ds: xr.Dataset, dataset: str, backend: str, top: int) -> list[str]:
    try:
        ranked = rank(ds, "balanced", datasets=[dataset], backends=[backend])
    except ResultsError:
        return []
    out: list[str] = []
    for cand in ranked:
        if cand.codec not in out:
            out.append(cand.codec)
    return out[:top]


def chunking_figure(ds: xr.Dataset, dataset: str | None = None, backend: str | None = None, top: int = 6) -> Figure:
    """Ratio, write and read per chunking for the ``top`` codecs on one dataset (the study's Figure 4)."""
    ds = core_results(ds)
    dataset = dataset or largest_dataset(ds)
    backend = backend or primary_backend(ds)
    codecs = _top_codecs(ds, dataset, backend, top)
    frame = summary_frame(ds)
    frame = frame[(frame["dataset"] == dataset) & (frame["backend"] == backend) & frame["codec"].isin(codecs)]
    chunks = [str(k) for k in ds["chunk"].values if str(k) in set(frame["chunk"])]
    fig = new_figure(float(np.clip(2.0 + 0.45 * len(codecs) * max(len(chunks), 1), 7.0, 14.0)), 8.5)
    axes = fig.subplots(3, 1, sharex=True)
    fig.suptitle(f"Chunking strategies for the top {len(codecs)} codecs by balanced score ({dataset}, {backend})")
    if frame.empty:
        for ax in axes:
            _no_data(ax, f"no verified results for {dataset} on {backend}")
        return fig
    colors = {(c, k): codec_color(c) for c in codecs for k in chunks}
    hatches = {(c, k): chunk_hatch(k) for c in codecs for k in chunks}
    for ax, (metric, label, _log) in zip(axes, _PANELS, strict=True):
        _bars(ax, codecs, chunks, _metric_lookup(frame, metric, "codec", "chunk"), colors, hatches, log=False)
        ax.set_ylabel(label)
    axes[-1].set_xlabel("codec")
    handles = [Patch(facecolor="white", edgecolor="black", hatch=chunk_hatch(k), label=k) for k in chunks]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        title="chunking (bar hatch)",
        fontsize=8,
        title_fontsize=9,
    )
    return fig


def backend_figure(ds: xr.Dataset, dataset: str | None = None, chunk: str | None = None) -> Figure:
    """Ratio, write and read per codec for every backend side by side (HDF5 filter, HDF5 direct, Zarr, ...)."""
    ds = core_results(ds)
    dataset = dataset or largest_dataset(ds)
    chunk = chunk or default_chunk(ds)
    frame = summary_frame(ds)
    frame = frame[(frame["dataset"] == dataset) & (frame["chunk"] == chunk)]
    codecs = _codecs_in(frame, ds)
    backends = [str(b) for b in ds["backend"].values if str(b) in set(frame["backend"])]
    width = float(np.clip(2.0 + 0.22 * len(codecs) * max(len(backends), 1), 8.0, 16.0))
    fig = new_figure(width, 9.0)
    axes = fig.subplots(3, 1, sharex=True)
    fig.suptitle(f"Backends per codec ({dataset}, {chunk} chunks)")
    if frame.empty:
        for ax in axes:
            _no_data(ax, f"no verified results for {dataset} with {chunk} chunks")
        return fig
    colors = {(c, b): codec_color(c) for c in codecs for b in backends}
    hatches = {(c, b): backend_hatch(b) for c in codecs for b in backends}
    for ax, (metric, label, log) in zip(axes, _PANELS, strict=True):
        _bars(ax, codecs, backends, _metric_lookup(frame, metric, "codec", "backend"), colors, hatches, log)
        ax.set_ylabel(label)
    axes[-1].tick_params(axis="x", labelrotation=35, labelsize=8)
    for tick in axes[-1].get_xticklabels():
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")
    axes[-1].set_xlabel("codec")
    handles = [Patch(facecolor="white", edgecolor="black", hatch=backend_hatch(b), label=b) for b in backends]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        title="backend (bar hatch)",
        fontsize=8,
        title_fontsize=9,
    )
    return fig


def pareto_figure(ds: xr.Dataset, dataset: str | None = None) -> Figure:
    """Ratio against write and against read throughput for every (backend, codec, chunk), with the Pareto fronts.

    Points on a front are numbered, and each panel's key names them. The uncompressed ``none`` codec is not a
    point (its ratio is 1) but a vertical reference line at its best throughput.
    """
    ds = core_results(ds)
    dataset = dataset or largest_dataset(ds)
    frame = summary_frame(ds)
    frame = frame[(frame["dataset"] == dataset) & np.isfinite(frame["ratio_mean"])]
    baseline = frame[frame["codec"] == "none"]
    frame = frame[frame["codec"] != "none"]
    fig = new_figure(13.0, 6.5)
    axes = fig.subplots(1, 2, sharey=True)
    fig.suptitle(f"Compression ratio against throughput ({dataset}); dashed: Pareto front")
    if frame.empty:
        for ax in axes:
            _no_data(ax, f"no verified compressed results for {dataset}")
        return fig
    codecs = _codecs_in(frame, ds)
    backends = [str(b) for b in ds["backend"].values if str(b) in set(frame["backend"])]
    panels = (("write_GiBps", "write throughput (GiB/s)"), ("read_GiBps", "read throughput (GiB/s)"))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        part = frame[np.isfinite(frame[f"{metric}_mean"]) & (frame[f"{metric}_mean"] > 0)]
        for (codec, backend), group in part.groupby(["codec", "backend"], sort=False):
            ax.scatter(
                group[f"{metric}_mean"],
                group["ratio_mean"],
                marker=backend_marker(str(backend)),
                s=40,
                color=codec_color(str(codec)),
                edgecolor="black",
                linewidth=0.4,
                alpha=0.9,
                zorder=3,
            )
        front = part.iloc[pareto_front(part[f"{metric}_mean"].to_numpy(), part["ratio_mean"].to_numpy())]
        ax.plot(
            front[f"{metric}_mean"],
            front["ratio_mean"],
            color="black",
            linewidth=1.0,
            linestyle="--",
            drawstyle="steps-pre",
            zorder=2,
        )
        keys = []
        for k, row in enumerate(front.to_dict("records"), start=1):
            ax.annotate(
                str(k),
                (row[f"{metric}_mean"], row["ratio_mean"]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
                fontweight="bold",
                zorder=6,
            )
            keys.append(Line2D([], [], linestyle="", label=f"{k}  {row['codec']}, {row['backend']}, {row['chunk']}"))
        base = baseline[f"{metric}_mean"] if len(baseline) else pd.Series(dtype=float)
        base = base[np.isfinite(base) & (base > 0)]
        if len(base):
            ax.axvline(float(base.max()), color="0.4", linestyle=":", linewidth=1.2, zorder=1)
            keys.append(
                Line2D([], [], color="0.4", linestyle=":", label=f"uncompressed: {float(base.max()):.3g} GiB/s")
            )
        _plain_log(ax, "x")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(
            handles=keys,
            title="Pareto front",
            loc="best",
            fontsize=7,
            title_fontsize=8,
            handlelength=1.0,
            framealpha=0.9,
        )
    axes[0].set_ylabel("compression ratio (uncompressed / stored)")
    handles: list[Patch | Line2D] = [*_codec_handles(codecs)]
    handles += [
        Line2D(
            [], [], marker=backend_marker(b), color="0.5", markeredgecolor="black", linestyle="", label=f"backend: {b}"
        )
        for b in backends
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)
    return fig


def all_figures(ds: xr.Dataset, study: xr.Dataset | None = None) -> list[ReportFigure]:
    """Every report figure with its caption, in report order."""
    core = core_results(ds)
    backend, chunk, big = primary_backend(core), default_chunk(core), largest_dataset(core)
    with_study = " and the study's published best ratios (stars)" if study is not None else ""
    return [
        ReportFigure(
            "performance",
            f"Compression ratio, write and read throughput per codec and dataset ({backend}, "
            f"{chunk} chunks; error bars: std over runs).",
            performance_figure(core),
        ),
        ReportFigure(
            "radar",
            f"Top codecs by balanced score on {backend}, {chunk} chunks: ratio, write and read "
            "throughput relative to the best shown (geometric means over datasets).",
            radar_figure(core),
        ),
        ReportFigure(
            "sparsity",
            "Compression ratio against zero fraction: every cell, best per dataset with the "
            f"power-law fit C = a·s^b + c, the sparsity-only and order-0 entropy bounds{with_study}.",
            sparsity_figure(core, study),
        ),
        ReportFigure(
            "chunking", f"Chunking strategies for the top codecs on {big} ({backend}).", chunking_figure(core)
        ),
        ReportFigure(
            "backends",
            f"Backends per codec on {big} ({chunk} chunks): ratio, write and read throughput.",
            backend_figure(core),
        ),
        ReportFigure(
            "pareto",
            f"Compression ratio against write and read throughput on {big}, every backend, codec "
            "and chunking; dashed: Pareto front (nothing is better on both axes); dotted: uncompressed.",
            pareto_figure(core),
        ),
        *_scaling(core),
    ]


def _scaling(ds: xr.Dataset) -> list[ReportFigure]:
    """The scaling figure when the results recorded how each backend spreads (docs/scaling.md), else nothing."""
    from cubebench.report.scaling import NODES, STORAGE_BANDWIDTH, scaling_figure

    fig = scaling_figure(ds)
    if fig is None:
        return []
    caption = (
        f"Predicted write and read throughput on {NODES[0]}-{NODES[-1]} nodes like this machine, per backend, by "
        f"the stated model of docs/scaling.md (linear in workers; hdf5_direct writes capped by its single writer; "
        f"hdf5 on one core; storage {STORAGE_BANDWIDTH / 1e9:.3g} GB/s shared): `cubebench scaling` for the tables."
    )
    return [ReportFigure("scaling", caption, fig)]
