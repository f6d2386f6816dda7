"""The report's inference-sufficiency section: stored bytes against inference error, and the five principles.

Reads only the sufficiency Dataset (:mod:`cubebench.sufficiency.results`). :func:`sufficiency_figure` plots, per
target, every verified representation's stored bytes against its error with the Pareto front (nothing smaller
and more faithful) and the tolerance; :func:`sufficiency_blocks` writes that figure and a table and returns the
index-page blocks, including the study's five principles walked for the question the experiment asked
(``sufficiency.target`` / ``tolerance`` / ``metric``, stored in the Dataset's attributes).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from cubebench.errors import ResultsError
from cubebench.report import index as page
from cubebench.report.figures import new_figure, save_figure
from cubebench.report.format import Table, write_table
from cubebench.report.palette import codec_color
from cubebench.stats import human_bytes
from cubebench.sufficiency.results import find_sufficiency
from cubebench.sufficiency.stats import (
    principles,
    smallest_sufficient,
    standings,
    sufficiency_front,
)

if TYPE_CHECKING:
    from pathlib import Path

    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["sufficiency_blocks", "sufficiency_figure", "sufficiency_for", "sufficiency_table"]

#: Scatter marker per representation family.
FAMILY_MARKERS = {
    "codec": "o",
    "events": "*",
    "bin": "s",
    "crop": "D",
    "uint8": "v",
    "zfp": "^",
    "sz3": "<",
    "bitround": ">",
}
MIB = float(2**20)


def sufficiency_for(ds: xr.Dataset) -> xr.Dataset | None:
    """The sufficiency Dataset saved beside a results Dataset loaded from a file (None when there is none)."""
    source = ds.encoding.get("source")
    if not source:
        return None
    try:
        return find_sufficiency(source)
    except ResultsError:
        return None


def question(sds: xr.Dataset) -> tuple[str, float, str]:
    """The experiment's question: ``(target, tolerance, metric)`` (defaults: first target, 0.01, rel_l2)."""
    targets = [str(t) for t in sds["target"].values]
    target = str(sds.attrs.get("question_target") or (targets[0] if targets else ""))
    tolerance = float(sds.attrs.get("question_tolerance", 0.01))
    metric = str(sds.attrs.get("question_metric", "rel_l2"))
    return target, tolerance, metric


def _plot_values(errors: np.ndarray, higher: bool) -> tuple[np.ndarray, float | None]:
    """Errors as plotted: exact results (0, or inf dB) moved to a floor (or ceiling) line; returns it too."""
    finite = errors[np.isfinite(errors) & (errors > 0 if not higher else True)]
    if higher:
        if not np.isinf(errors).any():
            return errors, None
        top = (float(finite.max()) if finite.size else 0.0) + 10.0
        return np.where(np.isinf(errors), top, errors), top
    if not (errors == 0).any():
        return errors, None
    floor = (float(finite.min()) if finite.size else 1e-3) / 10
    return np.where(errors == 0, floor, errors), floor


def _label_offsets(y: np.ndarray, linear: bool) -> list[float]:
    """Vertical label offsets (points) that stack the labels of points at (nearly) the same height."""
    key = y if linear else np.log10(np.where(y > 0, y, np.nan))
    offsets = [0.0] * len(y)
    placed: list[float] = []
    for i in np.argsort(y, kind="stable"):
        same = sum(1 for k in placed if abs(k - key[i]) < 0.02 * (10 if linear else 1))
        offsets[int(i)] = 7.0 * same
        placed.append(float(key[i]))
    return offsets


def _panel(ax: Axes, sds: xr.Dataset, target: str, metric: str, tolerance: float | None, dataset: str | None) -> None:
    try:
        front = sufficiency_front(sds, target, metric, dataset)
        choices = standings(sds, target, metric, dataset)
    except ResultsError as exc:
        ax.text(0.5, 0.5, str(exc), ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
        return
    if not choices:
        ax.text(0.5, 0.5, "no verified representation", ha="center", va="center", transform=ax.transAxes)
        return
    higher = metric == "psnr"
    x = np.asarray([c.stored_bytes / MIB for c in choices])
    y, line = _plot_values(np.asarray([c.error for c in choices], dtype=float), higher)
    for c, xv, yv, dy in zip(choices, x, y, _label_offsets(y, higher), strict=True):
        ax.scatter(
            xv,
            yv,
            marker=FAMILY_MARKERS.get(c.family, "o"),
            s=70 if c.family == "events" else 40,
            color=codec_color(c.representation),
            edgecolor="black",
            linewidth=0.4,
            zorder=3,
        )
        ax.annotate(c.representation, (xv, yv), textcoords="offset points", xytext=(4, 3 + dy), fontsize=6, zorder=4)
    on_front = {c.representation for c in front}
    fx = [xv for c, xv in zip(choices, x, strict=True) if c.representation in on_front]
    fy = [yv for c, yv in zip(choices, y, strict=True) if c.representation in on_front]
    order = np.argsort(fx)
    ax.plot(
        np.asarray(fx)[order],
        np.asarray(fy)[order],
        color="black",
        linestyle="--",
        linewidth=1.0,
        drawstyle="steps-post",
        zorder=2,
    )
    if line is not None:
        ax.axhline(line, color="0.5", linestyle=":", linewidth=1.0, zorder=1)
        ax.annotate(
            "exact" + (" (inf dB)" if higher else " (0)"),
            (0.01, line),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=7,
            color="0.3",
        )
    if tolerance is not None:
        ax.axhline(tolerance, color="#d62728", linestyle="--", linewidth=1.0, zorder=1)
    ax.set_xscale("log")
    if not higher:
        ax.set_yscale("log")
    ax.set_xlabel("stored MiB")
    ax.set_ylabel(f"{metric}" + (" (dB)" if higher else ""))
    ax.set_title(target)
    ax.grid(alpha=0.3, which="both")


def sufficiency_figure(sds: xr.Dataset, metric: str | None = None, dataset: str | None = None) -> Figure:
    """Stored bytes against inference error, one panel per target: every verified representation, the Pareto
    front (dashed), exact results on a dotted line, and the question's tolerance (red, dashed)."""
    _, tolerance, metric_q = question(sds)
    metric = metric or metric_q
    targets = [str(t) for t in sds["target"].values]
    n = max(1, len(targets))
    cols = 2 if n > 1 else 1
    rows = -(-n // cols)
    fig = new_figure(6.0 * cols, 4.5 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, target in zip(axes, targets, strict=False):
        _panel(ax, sds, target, metric, tolerance if metric == metric_q else None, dataset)
    for ax in axes[len(targets) :]:
        ax.set_visible(False)
    families = sorted({str(f) for f in sds["family"].values})
    handles = [
        Line2D([], [], marker=FAMILY_MARKERS.get(f, "o"), linestyle="", color="0.6", markeredgecolor="black", label=f)
        for f in families
    ]
    handles.append(Line2D([], [], color="black", linestyle="--", label="Pareto front"))
    handles.append(Line2D([], [], color="#d62728", linestyle="--", label=f"tolerance {tolerance:g} ({metric_q})"))
    where = f" ({dataset})" if dataset else ""
    fig.suptitle(f"Stored bytes against inference error{where}: smaller and lower is better")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)
    return fig


def _median(values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else math.nan


def sufficiency_table(sds: xr.Dataset, metric: str | None = None) -> Table:
    """One row per dataset and representation: bytes, ratio, median timings, each target's error, what it discards."""
    _, _, metric_q = question(sds)
    metric = metric or metric_q
    rows = []
    for dataset in (str(d) for d in sds["dataset"].values):
        sub = sds.sel(dataset=dataset)
        for rep in (str(r) for r in sds["representation"].values):
            r = sub.sel(representation=rep)
            status = [str(s) for s in np.atleast_1d(r["status"].values)]
            ok = [s == "ok" for s in status]
            row: dict[str, object] = {
                "dataset": dataset,
                "representation": rep,
                "lossless": bool(r["lossless"]),
                "status": "ok" if all(ok) else ",".join(sorted(set(status))),
                "stored (MiB)": float(r["stored_bytes"]) / MIB if int(r["stored_bytes"]) else math.nan,
                "ratio": float(r["ratio"]),
                "write GiB/s": _median(r["write_GiBps"].values),
                "read GiB/s": _median(r["read_GiBps"].values),
            }
            for target in (str(t) for t in sds["target"].values):
                row[f"{target} {metric}"] = float(r["inference_error"].sel(target=target, metric=metric))
            row["discards"] = str(r["discards"].values)
            rows.append(row)
    frame = pd.DataFrame(rows)
    formats = {"stored (MiB)": ".3g", "ratio": ".3g", "write GiB/s": ".3g", "read GiB/s": ".3g"}
    formats.update({c: ".3g" for c in frame.columns if c.endswith(f" {metric}")})
    note = (
        f"Errors of each inference target against the source ({metric}); 0 / ∞ dB = exact. "
        "Timings: medians over ok runs (write: transform, encode, store, fsync; read: full read, decode, "
        "per-chunk hash)."
    )
    return Table("sufficiency", "Representations: stored bytes, timings and inference errors", frame, formats, note)


def sufficiency_blocks(sds: xr.Dataset, out: Path) -> list[page.Block]:
    """Write the section's table and figure under ``out`` and return its index-page blocks."""
    target, tolerance, metric = question(sds)
    blocks: list[page.Block] = [page.heading("Inference sufficiency")]
    n_rep, n_target = sds.sizes["representation"], sds.sizes["target"]
    blocks.append(
        page.paragraph(
            f"{n_rep} representations (lossless codecs, reduced and lossy forms) stored chunk by chunk, every "
            f"chunk verified against the representation's transform, and scored by {n_target} inference targets "
            f"({', '.join(str(t) for t in sds['target'].values)}) computed out-of-core against the source. "
            f"Smallest representation keeping each target within {metric} {tolerance:g}:"
        )
    )
    answers = []
    for name in (str(t) for t in sds["target"].values):
        try:
            best = smallest_sufficient(sds, name, tolerance, metric).best
            answers.append(
                f"{name}: {best.representation}, {human_bytes(best.stored_bytes)} (source / stored {best.ratio:.3g}), "
                f"{metric} {best.error:.3g}; discards {best.discards}"
            )
        except ResultsError as exc:
            answers.append(f"{name}: {exc}")
    blocks.append(page.items(answers))
    try:
        chosen = smallest_sufficient(sds, target, tolerance, metric)
        blocks.append(page.heading(f"The five principles, for {target} with {chosen.condition}", level=3))
        walk = principles(sds, chosen)
        blocks.append(page.items([f"({i}) {title}: {text}" for i, (title, text) in enumerate(walk, start=1)]))
    except ResultsError as exc:
        asked = f"{target}, {metric} {tolerance:g}"
        blocks.append(page.paragraph(f"No answer for the experiment's question ({asked}): {exc}"))
    table = sufficiency_table(sds)
    paths = write_table(table, out / "tables")
    links = {
        "CSV": f"tables/{paths['csv'].name}",
        "LaTeX": f"tables/{paths['tex'].name}",
        "Markdown": f"tables/{paths['md'].name}",
    }
    blocks.append(page.Block("table", f"Table S1. {table.title}", table=table, links=links))
    fig = sufficiency_figure(sds)
    png, pdf = save_figure(fig, out / "figures", "sufficiency")
    caption = (
        f"Figure S1. Stored bytes against inference error ({metric}) per target, every verified representation; "
        f"dashed black: Pareto front (nothing smaller and more faithful); dashed red: tolerance {tolerance:g}; "
        "dotted: exact results."
    )
    blocks.append(
        page.Block(
            "figure",
            caption,
            image=f"figures/{png.name}",
            links={"PNG": f"figures/{png.name}", "PDF": f"figures/{pdf.name}"},
        )
    )
    blocks.append(
        page.paragraph(
            "Data: sufficiency.nc and sufficiency.csv in the results folder "
            "(cubebench.load_sufficiency); ask other questions with 'cubebench sufficient'."
        )
    )
    return blocks
