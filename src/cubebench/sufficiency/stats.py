"""Which representation is sufficient? Pure functions on the sufficiency Dataset (never backends, files or Dask).

The question (the study's section 4.3): given an inference target and the error that would change the
scientific conclusion, which is the least-burdensome representation that still supports the inference?
:func:`smallest_sufficient` answers it from measured errors and stored bytes; :func:`principles` walks the study's
five design principles for that answer; :func:`sufficiency_front` gives the bytes-vs-error Pareto front.

Only representations that verified (every stored chunk read back equal to what the representation's transform
produced, and any promised error bound held) are candidates.

Examples
--------
>>> from cubebench.sufficiency.results import load_sufficiency     # doctest: +SKIP
>>> answer = smallest_sufficient(load_sufficiency("results/sufficiency"), "bf", 0.01)  # doctest: +SKIP
>>> print(format_answer(answer))                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.errors import ResultsError
from cubebench.stats import human_bytes, pareto_front

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "PRINCIPLES",
    "Choice",
    "SufficiencyAnswer",
    "format_answer",
    "principles",
    "smallest_sufficient",
    "standings",
    "sufficiency_front",
    "verified_representations",
]

#: The study's five design principles for inference-sufficient representations (section 4.3), short titles.
PRINCIPLES = (
    "Inference target",
    "Tolerable error",
    "What must be preserved",
    "Least-burdensome representation",
    "Provenance",
)

#: What each target needs from the stored data (principle 3), before the measured evidence.
_PRESERVE = {
    "bf": "the summed counts inside the bright-field disk of every frame; detail inside the disk and every pixel "
    "outside it are not needed",
    "adf": "the summed counts in the annulus of every frame; pixels inside the inner and beyond the outer radius "
    "are not needed",
    "com": "the first moment of each frame's intensity within the COM region (the disk's position to a fraction of "
    "a pixel); the total counts only as its normaliser",
    "mean_pattern": "every detector pixel's mean over the scan, at full detector resolution; no per-frame detail",
}


@dataclass(frozen=True)
class Choice:
    """One representation's standing for a question: total stored bytes, worst error over the datasets."""

    representation: str
    stored_bytes: int
    ratio: float
    error: float
    lossless: bool
    family: str
    discards: str
    description: str
    storage: str


@dataclass(frozen=True)
class SufficiencyAnswer:
    """The smallest representation that keeps a target's error within a tolerance, with the evidence."""

    target: str
    metric: str
    tolerance: float
    higher_is_better: bool
    datasets: tuple[str, ...]
    best: Choice
    runner_up: Choice | None
    smallest_lossless: Choice | None
    sufficient: tuple[Choice, ...]
    insufficient: tuple[Choice, ...]
    excluded: tuple[tuple[str, str], ...]

    @property
    def condition(self) -> str:
        """``"rel_l2 <= 0.01"`` (or ``"psnr >= 40"``)."""
        return f"{self.metric} {'>=' if self.higher_is_better else '<='} {self.tolerance:g}"


def _names(ds: xr.Dataset, dim: str) -> list[str]:
    return [str(v) for v in ds[dim].values]


def _check(ds: xr.Dataset, target: str, metric: str, dataset: str | None) -> list[str]:
    if "inference_error" not in ds:
        raise ResultsError("these results have no inference errors; run an experiment with 'representations:'")
    if target not in _names(ds, "target"):
        raise ResultsError(f"unknown target {target!r}; these results have: {', '.join(_names(ds, 'target'))}")
    if metric not in _names(ds, "metric"):
        raise ResultsError(f"unknown metric {metric!r}; valid: {', '.join(_names(ds, 'metric'))}")
    datasets = _names(ds, "dataset")
    if dataset is not None:
        if dataset not in datasets:
            raise ResultsError(f"unknown dataset {dataset!r}; these results have: {', '.join(datasets)}")
        return [dataset]
    return datasets


def verified_representations(ds: xr.Dataset, dataset: str) -> dict[str, str]:
    """Representation -> ``""`` when it verified in some run on ``dataset``, else the first reason it did not."""
    out: dict[str, str] = {}
    sub = ds.sel(dataset=dataset)
    for rep in _names(ds, "representation"):
        status = [str(s) for s in np.atleast_1d(sub["status"].sel(representation=rep).values)]
        verified = np.atleast_1d(sub["verified"].sel(representation=rep).values).astype(bool)
        ok = any(s == "ok" and v for s, v in zip(status, verified, strict=True))
        if ok:
            out[rep] = ""
        else:
            reasons = [str(r) for r in np.atleast_1d(sub["reason"].sel(representation=rep).values) if str(r)]
            worst = next((s for s in status if s != "missing"), "missing")
            out[rep] = f"{worst}: {reasons[0]}" if reasons else worst
    return out


def _higher_is_better(ds: xr.Dataset, metric: str) -> bool:
    if "metric_higher_is_better" in ds:
        return bool(ds["metric_higher_is_better"].sel(metric=metric).values)
    return metric == "psnr"


def _choices(
    ds: xr.Dataset, target: str, metric: str, datasets: list[str]
) -> tuple[list[Choice], list[tuple[str, str]]]:
    """Every representation verified on all ``datasets`` as a Choice (worst error), and the excluded ones."""
    higher = _higher_is_better(ds, metric)
    choices: list[Choice] = []
    excluded: list[tuple[str, str]] = []
    verified = {name: verified_representations(ds, name) for name in datasets}
    for rep in _names(ds, "representation"):
        why = next((f"{name}: {verified[name][rep]}" for name in datasets if verified[name][rep]), "")
        errors = [
            float(ds["inference_error"].sel(dataset=n, representation=rep, target=target, metric=metric))
            for n in datasets
        ]
        if not why and any(math.isnan(e) for e in errors):
            why = "no inference error recorded"
        if why:
            excluded.append((rep, why))
            continue
        stored = int(sum(int(ds["stored_bytes"].sel(dataset=n, representation=rep)) for n in datasets))
        source = float(sum(float(ds["source_bytes"].sel(dataset=n)) for n in datasets))
        choices.append(
            Choice(
                representation=rep,
                stored_bytes=stored,
                ratio=source / stored if stored else math.nan,
                error=min(errors) if higher else max(errors),
                lossless=bool(ds["lossless"].sel(representation=rep)),
                family=str(ds["family"].sel(representation=rep).values),
                discards=str(ds["discards"].sel(representation=rep).values),
                description=str(ds["description"].sel(representation=rep).values),
                storage=str(ds["storage"].sel(representation=rep).values),
            )
        )
    return choices, excluded


def _within(error: float, tolerance: float, higher: bool) -> bool:
    return error >= tolerance if higher else error <= tolerance


def smallest_sufficient(
    ds: xr.Dataset, target: str, tolerance: float, metric: str = "rel_l2", dataset: str | None = None
) -> SufficiencyAnswer:
    """The verified representation with the fewest stored bytes whose ``target`` error stays within ``tolerance``.

    With several datasets (and no ``dataset``), a representation must keep the error within the tolerance on
    every one, and its bytes are summed over them. Ties in bytes go to the smaller error, then to lossless.

    Raises
    ------
    ResultsError
        Unknown target, metric or dataset (named, with the valid ones), or no representation is sufficient
        (the message names the closest one).
    """
    datasets = _check(ds, target, metric, dataset)
    if not isinstance(tolerance, (int, float)) or math.isnan(tolerance) or tolerance < 0:
        raise ResultsError(f"the tolerance must be a non-negative number, got {tolerance!r}")
    higher = _higher_is_better(ds, metric)
    choices, excluded = _choices(ds, target, metric, datasets)
    where = f" on {', '.join(datasets)}"
    if not choices:
        raise ResultsError(f"no representation verified{where}; nothing can be judged sufficient")
    sign = -1.0 if higher else 1.0
    good = sorted(
        (c for c in choices if _within(c.error, tolerance, higher)),
        key=lambda c: (c.stored_bytes, sign * c.error, not c.lossless),
    )
    bad = sorted((c for c in choices if not _within(c.error, tolerance, higher)), key=lambda c: sign * c.error)
    if not good:
        closest = bad[0]
        cond = f"{metric} {'>=' if higher else '<='} {tolerance:g}"
        raise ResultsError(
            f"no representation keeps {target} within {cond}{where}; closest: {closest.representation} "
            f"({metric} {closest.error:.3g})"
        )
    lossless = sorted((c for c in choices if c.lossless), key=lambda c: c.stored_bytes)
    return SufficiencyAnswer(
        target=target,
        metric=metric,
        tolerance=float(tolerance),
        higher_is_better=higher,
        datasets=tuple(datasets),
        best=good[0],
        runner_up=good[1] if len(good) > 1 else None,
        smallest_lossless=lossless[0] if lossless else None,
        sufficient=tuple(good),
        insufficient=tuple(bad),
        excluded=tuple(excluded),
    )


def standings(ds: xr.Dataset, target: str, metric: str = "rel_l2", dataset: str | None = None) -> list[Choice]:
    """Every representation verified on the dataset(s), with its stored bytes and (worst) ``target`` error."""
    return _choices(ds, target, metric, _check(ds, target, metric, dataset))[0]


def sufficiency_front(ds: xr.Dataset, target: str, metric: str = "rel_l2", dataset: str | None = None) -> list[Choice]:
    """Verified representations not beaten on both stored bytes and error, sorted by stored bytes."""
    datasets = _check(ds, target, metric, dataset)
    choices, _ = _choices(ds, target, metric, datasets)
    if not choices:
        return []
    higher = _higher_is_better(ds, metric)
    size = -np.asarray([c.stored_bytes for c in choices], dtype=float)
    error = np.asarray([c.error for c in choices], dtype=float)
    # pareto_front maximises both axes and ignores NaN; exact (zero) errors and inf PSNR must stay comparable
    goodness = np.where(np.isinf(error), np.sign(error) * 1e308, error) * (1.0 if higher else -1.0)
    front = pareto_front(size, goodness)
    return sorted((choices[i] for i in front), key=lambda c: c.stored_bytes)


def _error_text(value: float, metric: str) -> str:
    if metric == "psnr":
        return "exact (inf dB)" if math.isinf(value) else f"{value:.1f} dB"
    return "0 (exact)" if value == 0 else f"{value:.3g}"


def format_answer(answer: SufficiencyAnswer) -> str:
    """The answer as a few lines of text for the terminal."""
    best = answer.best
    lines = [
        f"{answer.target} with {answer.condition} on {', '.join(answer.datasets)}: {best.representation}",
        f"  stored: {human_bytes(best.stored_bytes)} (source / stored {best.ratio:.3g}); "
        f"{answer.metric} {_error_text(best.error, answer.metric)}",
        f"  what it is: {best.description}",
        f"  what it discards: {best.discards}",
        f"  stored as: {best.storage}",
    ]
    lossless = answer.smallest_lossless
    if lossless is not None and lossless.representation != best.representation:
        factor = lossless.stored_bytes / best.stored_bytes if best.stored_bytes else math.nan
        lines.append(
            f"  smallest lossless: {lossless.representation}, {human_bytes(lossless.stored_bytes)} "
            f"({factor:.3g}x the bytes of {best.representation})"
        )
    if answer.runner_up is not None:
        r = answer.runner_up
        lines.append(
            f"  runner-up: {r.representation}, {human_bytes(r.stored_bytes)}, "
            f"{answer.metric} {_error_text(r.error, answer.metric)}"
        )
    lines.append(
        f"  {len(answer.sufficient)} of {len(answer.sufficient) + len(answer.insufficient)} verified "
        f"representations are sufficient; {len(answer.excluded)} excluded (failed, unverified or unavailable)"
    )
    return "\n".join(lines)


def _target_params(ds: xr.Dataset, target: str, datasets: tuple[str, ...]) -> str:
    if "target_params" not in ds:
        return ""
    raw = str(ds["target_params"].sel(dataset=datasets[0], target=target).values)
    try:
        params: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError:
        return ""
    parts = []
    if target in ("bf", "adf", "com"):
        outer = params.get("outer_px")
        edge = "the detector edge" if outer is None else f"{outer:.3g}"
        parts.append(f"radii {params.get('inner_px', 0):.3g} to {edge} px")
        center = params.get("center_px")
        if center:
            parts.append(f"centre ({center[0]:.4g}, {center[1]:.4g}) px")
    given = params.get("given") or {}
    if given:
        parts.append("as configured: " + ", ".join(f"{k} {v}" for k, v in given.items()))
    else:
        parts.append("cubebench's defaults for this detector")
    return "; ".join(parts)


def principles(ds: xr.Dataset, answer: SufficiencyAnswer) -> list[tuple[str, str]]:
    """The study's five design principles, each with what this answer specifies for it: ``(title, text)``."""
    target, metric = answer.target, answer.metric
    best = answer.best
    description = str(ds["target_description"].sel(target=target).values) if "target_description" in ds else target
    metric_text = str(ds["metric_description"].sel(metric=metric).values) if "metric_description" in ds else metric
    geometry = _target_params(ds, target, answer.datasets)
    keep = ", ".join(f"{c.representation} ({_error_text(c.error, metric)})" for c in answer.sufficient[:8])
    lose = ", ".join(f"{c.representation} ({_error_text(c.error, metric)})" for c in answer.insufficient[:8])
    saving = ""
    lossless = answer.smallest_lossless
    if lossless is not None and lossless.representation != best.representation and best.stored_bytes:
        saving = (
            f"; {lossless.stored_bytes / best.stored_bytes:.3g}x fewer bytes than the smallest lossless option "
            f"({lossless.representation}, {human_bytes(lossless.stored_bytes)})"
        )
    calibration = ds.attrs.get("mrad_per_pixel", "")
    calibrated = f"{calibration} mrad/pixel" if calibration != "" else "not given (radii in pixels)"
    libraries = ds.attrs.get("libraries", "")
    try:
        versions = json.loads(libraries) if isinstance(libraries, str) and libraries else {}
    except json.JSONDecodeError:
        versions = {}
    software = ", ".join(
        f"{k} {versions[k]}" for k in ("cubebench", "h5py", "hdf5", "hdf5plugin", "numcodecs") if k in versions
    )
    return [
        (
            PRINCIPLES[0],
            f"{target}: {description}" + (f" ({geometry})" if geometry else "") + ".",
        ),
        (
            PRINCIPLES[1],
            f"{answer.condition}: {metric_text}. Whether a larger error would change the scientific conclusion is "
            f"the experimenter's judgement; it is set in the experiment (sufficiency.tolerance) and every "
            f"representation's error is kept, so another tolerance is one 'cubebench sufficient' away.",
        ),
        (
            PRINCIPLES[2],
            f"{_PRESERVE.get(target, target)}. Measured: kept within the tolerance by {keep or 'none'}; "
            f"not kept by {lose or 'none'}.",
        ),
        (
            PRINCIPLES[3],
            f"{best.representation}, {human_bytes(best.stored_bytes)} (source / stored {best.ratio:.3g}){saving}. "
            f"It is {best.description}; it discards {best.discards}.",
        ),
        (
            PRINCIPLES[4],
            f"Stored as {best.storage}; each stored file carries the representation's spec and layout in its "
            f"'cubebench_representation' attribute; the target geometry per dataset is in 'target_params', the "
            f"detector calibration is {calibrated}, "
            f"and the experiment, cluster, CPU and library versions ({software or 'see attributes'}) are in the "
            f"results' attributes. Every stored chunk was verified against the representation's transform.",
        ),
    ]
