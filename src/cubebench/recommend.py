"""Recommendations from a results Dataset: the best (codec, chunking, backend) for a use, and why.

A use is what the study's section 4.1 calls the dominant workflow constraint: storage footprint, sustained
acquisition (write) throughput, time-to-first-analysis (read) throughput, or a balance of the three. Only verified
``ok`` cells are candidates; scores are geometric means over datasets, each relative to the best on the dataset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.errors import ResultsError
from cubebench.stats import CELL_DIMS, core_results, human_bytes, ok_mask, summarize_runs

if TYPE_CHECKING:
    from collections.abc import Sequence

    import xarray as xr


#: The metrics a recommendation looks at, with their units.
_METRIC_UNITS = {"ratio": "1", "write_GiBps": "GiB/s", "read_GiBps": "GiB/s"}


#: What each use optimizes, and the workflow constraint it answers (the study's section 4.1).
USES: dict[str, str] = {
    "storage": "highest compression ratio: the storage footprint dominates (archives, transfer)",
    "write": "highest write throughput: sustained acquisition throughput dominates (streaming ingest)",
    "read": "highest read throughput: time-to-first-analysis dominates (interactive work on the full cube)",
    "balanced": "best geometric mean of ratio, write and read throughput, each relative to the best on the dataset",
}


CONSTRAINT_NOTE = (
    "As the study concludes, the choice follows the dominant workflow constraint: storage footprint "
    "(use 'storage'), time-to-first-analysis (use 'read') or sustained acquisition throughput (use 'write'); "
    "'balanced' is the compromise when none dominates."
)


@dataclass(frozen=True)
class DatasetNumbers:
    """A candidate's mean numbers on one dataset (means over verified ok runs)."""

    dataset: str
    ratio: float
    write_GiBps: float
    read_GiBps: float
    stored_bytes: float
    source_bytes: float


@dataclass(frozen=True)
class Candidate:
    """One (backend, codec, chunk) with its score and its geometric means over datasets."""

    backend: str
    codec: str
    chunk: str
    score: float
    ratio: float
    write_GiBps: float
    read_GiBps: float
    n_datasets: int

    @property
    def label(self) -> str:
        """``codec on backend, chunk chunks``."""
        return f"{self.codec} on {self.backend}, {self.chunk} chunks"


@dataclass(frozen=True)
class Recommendation:
    """The recommended (codec, chunk, backend) for one use, with the numbers that justify it.

    ``ratio``, ``write_GiBps`` and ``read_GiBps`` are geometric means over ``per_dataset`` (each itself a mean
    over verified ok runs); ``alternatives`` are the next best candidates; ``headline`` is one sentence with the
    choice and its numbers; ``text`` is the full justification (headline, runner-up, chunking and baseline notes,
    the study's point that the choice follows the dominant constraint, and how many cells counted).
    """

    use: str
    codec: str
    chunk: str
    backend: str
    score: float
    ratio: float
    write_GiBps: float
    read_GiBps: float
    per_dataset: tuple[DatasetNumbers, ...]
    alternatives: tuple[Candidate, ...]
    rule: str
    n_cells: int
    n_excluded: int
    headline: str
    text: str


def _geomean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(np.exp(np.mean(np.log(values), axis=axis)), dtype=float)


def _select(ds: xr.Dataset, dim: str, values: Sequence[str] | None) -> xr.Dataset:
    if values is None:
        return ds
    wanted = list(values)
    unknown = [v for v in wanted if v not in ds[dim].values]
    if unknown:
        have = ", ".join(str(v) for v in ds[dim].values)
        raise ResultsError(f"no {dim} {', '.join(unknown)} in these results; have: {have}")
    return ds.sel({dim: wanted})


def rank(
    ds: xr.Dataset,
    use: str = "balanced",
    *,
    datasets: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    codecs: Sequence[str] | None = None,
    chunks: Sequence[str] | None = None,
    include_uncompressed: bool = False,
) -> list[Candidate]:
    """All (backend, codec, chunk) candidates ranked for ``use``, best first (the rule of :func:`recommend`)."""
    return _rank(ds, use, datasets, backends, codecs, chunks, include_uncompressed)[0]


def _rank(
    ds: xr.Dataset,
    use: str,
    datasets: Sequence[str] | None,
    backends: Sequence[str] | None,
    codecs: Sequence[str] | None,
    chunks: Sequence[str] | None,
    include_uncompressed: bool,
) -> tuple[list[Candidate], dict[str, Any]]:
    if use not in USES:
        raise ResultsError(f"unknown use {use!r}; valid: {', '.join(USES)}")
    ds = core_results(ds)
    for dim, values in (("dataset", datasets), ("backend", backends), ("codec", codecs), ("chunk", chunks)):
        ds = _select(ds, dim, values)
    baseline = None
    if "none" in ds["codec"].values:
        baseline = summarize_runs(ds.sel(codec="none"), require_verified=True)
        if not include_uncompressed and ds.sizes["codec"] > 1:
            ds = ds.drop_sel(codec="none")
    valid = ok_mask(ds, require_verified=True)
    status = ds["status"]
    n_cells = int(valid.sum())
    n_excluded = int((status.isin(["failed", "unverified"]) | ((status == "ok") & ~valid)).sum())
    summary = summarize_runs(ds, require_verified=True)
    names = ("ratio", "write_GiBps", "read_GiBps")
    cube = np.stack([summary[f"{m}_mean"].transpose(*CELL_DIMS).values for m in names], axis=-1)
    cube = np.where(cube > 0, cube, np.nan)  # (dataset, backend, codec, chunk, metric)
    complete = np.all(np.isfinite(cube), axis=-1)  # (dataset, backend, codec, chunk)
    coverage = complete.sum(axis=0)  # (backend, codec, chunk)
    if coverage.max(initial=0) == 0:
        raise ResultsError("no verified ok cells with ratio, write and read numbers to recommend from")
    have_any = complete.any(axis=(1, 2, 3))
    n_needed = int(have_any.sum())
    best_cov = int(coverage.max())
    eligible = coverage == best_cov
    # per-dataset normalization against the best eligible candidate on that dataset, for "balanced"
    masked = np.where(eligible[None, ..., None] & complete[..., None], cube, np.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        best = np.nanmax(masked, axis=(1, 2, 3), keepdims=True)
    normalized = masked / best
    sizes = summary["stored_bytes_mean"].transpose(*CELL_DIMS).values
    source = ds["source_bytes"].where(valid).max("run").transpose(*CELL_DIMS).values
    coords = [ds[d].values for d in CELL_DIMS]
    candidates: list[Candidate] = []
    details: dict[tuple[str, str, str], tuple[DatasetNumbers, ...]] = {}
    for bi, ci, ki in zip(*np.nonzero(eligible), strict=True):
        rows = complete[:, bi, ci, ki]
        means = _geomean(cube[rows, bi, ci, ki, :], axis=0)  # over datasets, per metric
        if use == "balanced":
            score = float(_geomean(_geomean(normalized[rows, bi, ci, ki, :], axis=1), axis=0))
        else:
            score = float(means[names.index({"storage": "ratio", "write": "write_GiBps", "read": "read_GiBps"}[use])])
        key = (str(coords[1][bi]), str(coords[2][ci]), str(coords[3][ki]))
        candidates.append(Candidate(*key, score, float(means[0]), float(means[1]), float(means[2]), int(rows.sum())))
        details[key] = tuple(
            DatasetNumbers(
                str(coords[0][di]),
                float(cube[di, bi, ci, ki, 0]),
                float(cube[di, bi, ci, ki, 1]),
                float(cube[di, bi, ci, ki, 2]),
                float(sizes[di, bi, ci, ki]),
                float(source[di, bi, ci, ki]),
            )
            for di in np.flatnonzero(rows)
        )
    candidates.sort(key=lambda c: (-c.score, -c.ratio, c.backend, c.codec, c.chunk))
    context = {
        "details": details,
        "n_cells": n_cells,
        "n_excluded": n_excluded,
        "n_datasets": n_needed,
        "coverage": best_cov,
        "summary": summary,
        "baseline": baseline,
    }
    return candidates, context


def recommend(
    ds: xr.Dataset,
    use: str = "balanced",
    *,
    datasets: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    codecs: Sequence[str] | None = None,
    chunks: Sequence[str] | None = None,
    include_uncompressed: bool = False,
    storage: str | None = None,
) -> Recommendation:
    """Recommend a (codec, chunk, backend) for one use, from verified ok cells only.

    The rule: per cell, the mean over verified ok runs of ratio, write and read GiB/s. A candidate (backend,
    codec, chunk) must have all three numbers on every dataset (failed, unverified or skipped on any dataset:
    not eligible; if no candidate covers every dataset, those covering the most are used). Across datasets,
    numbers are combined by geometric mean, so each dataset counts equally whatever its absolute ratio.

    - ``storage``: highest ratio; ``write``: highest write GiB/s; ``read``: highest read GiB/s.
    - ``balanced``: on each dataset, ratio, write and read are divided by the best eligible value on that
      dataset; the score is the geometric mean of those three fractions (a product rule: a weak axis, such as
      gzip-9's write speed, pulls the score down), then the geometric mean over datasets. 1.0 would be a
      candidate that is best on every axis everywhere.

    Ties are broken by ratio, then by name. The uncompressed ``none`` codec is a baseline, not a candidate,
    unless ``include_uncompressed``.

    Parameters
    ----------
    ds
        A results Dataset.
    use
        One of :data:`USES`: ``"storage"``, ``"write"``, ``"read"`` or ``"balanced"``.
    datasets, backends, codecs, chunks
        Restrict the candidates (``None``: all).
    include_uncompressed
        Let ``none`` be recommended.
    storage
        The storage to recommend for (``local``, ``s3``, ...); needed when the results hold several.
    """
    if storage is not None:
        ds = _select(ds, "storage", [storage]).squeeze("storage", drop=True) if "storage" in ds.dims else ds
        if "storage" in ds.coords and ds["storage"].ndim == 0 and str(ds["storage"].values) != storage:
            raise ResultsError(f"no storage {storage} in these results; have: {ds['storage'].values}")
    elif "storage" in ds.dims and ds.sizes["storage"] > 1:
        have = ", ".join(str(v) for v in ds["storage"].values)
        raise ResultsError(f"these results hold several storages ({have}); choose one with --storage")
    candidates, ctx = _rank(ds, use, datasets, backends, codecs, chunks, include_uncompressed)
    best = candidates[0]
    per_dataset = ctx["details"][(best.backend, best.codec, best.chunk)]
    rule = USES[use]
    partial = (
        ""
        if ctx["coverage"] == ctx["n_datasets"]
        else f" No candidate has verified numbers on all {ctx['n_datasets']} datasets; "
        f"ranked those covering {ctx['coverage']}."
    )
    headline = _headline(use, best, per_dataset)
    text = _recommendation_text(headline, use, best, candidates[1:3], ctx) + partial
    return Recommendation(
        use=use,
        codec=best.codec,
        chunk=best.chunk,
        backend=best.backend,
        score=best.score,
        ratio=best.ratio,
        write_GiBps=best.write_GiBps,
        read_GiBps=best.read_GiBps,
        per_dataset=per_dataset,
        alternatives=tuple(candidates[1:4]),
        rule=rule,
        n_cells=ctx["n_cells"],
        n_excluded=ctx["n_excluded"],
        headline=headline,
        text=text,
    )


def _numbers(c: Candidate) -> str:
    return f"ratio {c.ratio:.2f}, write {c.write_GiBps:.3g} GiB/s, read {c.read_GiBps:.3g} GiB/s"


def _headline(use: str, best: Candidate, per_dataset: Sequence[DatasetNumbers]) -> str:
    n = len(per_dataset)
    over = "on 1 dataset" if n == 1 else f"geometric means over {n} datasets"
    ratios = [d.ratio for d in per_dataset]
    span = f"; ratio {min(ratios):.1f}-{max(ratios):.1f} across datasets" if n > 1 else ""
    lead = {
        "storage": "Smallest storage footprint",
        "write": "Fastest sustained write",
        "read": "Fastest full read (time-to-first-analysis)",
        "balanced": "Best balance of ratio, write and read",
    }[use]
    score = f", score {best.score:.2f} of 1" if use == "balanced" else ""
    return f"{lead}: {best.label} — {_numbers(best)}{score} ({over}{span})."


def _recommendation_text(
    headline: str, use: str, best: Candidate, runners_up: Sequence[Candidate], ctx: dict[str, Any]
) -> str:
    parts = [headline]
    if runners_up:
        alt = runners_up[0]
        parts.append(f"Next: {alt.label} — {_numbers(alt)}{f', score {alt.score:.2f}' if use == 'balanced' else ''}.")
    parts.append(_chunk_note(best, ctx))
    parts.append(_baseline_note(best, ctx))
    parts.append(CONSTRAINT_NOTE)
    parts.append(
        f"Based on {ctx['n_cells']} verified ok cells; {ctx['n_excluded']} failed or unverified cells excluded."
    )
    return " ".join(p for p in parts if p)


def _chunk_note(best: Candidate, ctx: dict[str, Any]) -> str:
    summary: xr.Dataset = ctx["summary"]
    if summary.sizes["chunk"] < 2:
        return ""
    ratio = summary["ratio_mean"].sel(backend=best.backend, codec=best.codec)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        per_chunk = ratio.mean("dataset", skipna=True).values
    per_chunk = per_chunk[np.isfinite(per_chunk)]
    if per_chunk.size < 2:
        return ""
    spread = 100.0 * (per_chunk.max() - per_chunk.min()) / per_chunk.max()
    return f"Chunking is secondary: across {per_chunk.size} chunkings this codec's mean ratio varies by {spread:.0f} %."


def _baseline_note(best: Candidate, ctx: dict[str, Any]) -> str:
    """How the uncompressed baseline (codec ``none``, same backend and chunk) compares, when it was measured."""
    baseline: xr.Dataset | None = ctx.get("baseline")
    if baseline is None or best.codec == "none":
        return ""
    datasets = [d.dataset for d in ctx["details"][(best.backend, best.codec, best.chunk)]]
    try:
        sel = baseline.sel(backend=best.backend, chunk=best.chunk, dataset=datasets)
    except KeyError:
        return ""
    values = np.stack([sel[f"{m}_mean"].values for m in ("write_GiBps", "read_GiBps")], axis=-1)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        return ""
    write, read = _geomean(values, axis=0)
    return f"Uncompressed ('none', same backend and chunks) writes at {write:.3g} GiB/s and reads at {read:.3g} GiB/s."


def format_recommendation(rec: Recommendation) -> str:
    """Multi-line plain text of a recommendation for the terminal: headline, per-dataset numbers, alternatives."""
    lines = [f"Recommended for {rec.use}: {rec.codec} on {rec.backend}, {rec.chunk} chunks", f"  rule: {rec.rule}"]
    header = f"  {'dataset':<20} {'ratio':>8} {'write GiB/s':>12} {'read GiB/s':>11} {'stored':>11}"
    lines += ["", header]
    for d in rec.per_dataset:
        lines.append(
            f"  {d.dataset:<20} {d.ratio:>8.2f} {d.write_GiBps:>12.3g} {d.read_GiBps:>11.3g} "
            f"{human_bytes(d.stored_bytes):>11}"
        )
    if len(rec.per_dataset) > 1:
        lines.append(f"  {'geometric mean':<20} {rec.ratio:>8.2f} {rec.write_GiBps:>12.3g} {rec.read_GiBps:>11.3g}")
    if rec.alternatives:
        lines += ["", "  alternatives:"]
        for i, alt in enumerate(rec.alternatives, start=2):
            lines.append(f"    {i}. {alt.label}: score {alt.score:.3g}; {_numbers(alt)}")
    lines += ["", *_wrap(rec.text, 100, "  ")]
    return "\n".join(lines)


def _wrap(text: str, width: int, indent: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent)
