"""Can this pipeline keep up with a named detector? An answer from measured acquisition rates, and a stated model.

For each (backend, codec, chunk) of an ``acquisition.nc`` the measured rate is the max-rate search's
``max_GBps`` or, without a search, the highest ``achieved_GBps`` of a paced cell that kept up (a lower bound).
The detector's stream is ``frame_rate x frame bytes``.

**The scaling model** (stated, not measured past this machine): throughput is linear in cores, ``measured /
workers`` per core, up to two ceilings: the stored bytes per second of one node's disk (``disk_GBps``, measured
here at 1.5 GB/s written with fsync, see DESIGN.md) and, for ``hdf5_direct``, one writer per file
(``writer_GBps`` of stored bytes, the same figure by default). Nodes are "of this kind": as many cores as this
machine. When no codec fits, binning ``bin<k>`` divides the raw stream by ``k^2`` (as ``bin<k>-sum`` in at most
twice the bytes per pixel), and ``events`` stores 8 bytes per non-zero pixel (occupancy: the fraction of
non-zero pixels, ``1 - zero fraction``; default that of the 4d_diff preset).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cubebench.acquisition.detectors import Detector, get_detector
from cubebench.acquisition.measured import measured
from cubebench.acquisition.results import load_acquisition
from cubebench.acquisition.scaling import ScalingCheck, format_scaling, scaling_checks
from cubebench.errors import ConfigError, ResultsError

#: Stored bytes per second one node's disk takes with fsync (DESIGN.md, measured on the team machine).
DISK_GBPS = 1.5
#: Non-zero pixel fraction assumed for ``events`` (1 - the 4d_diff preset's zero fraction 0.747).
OCCUPANCY = 0.253


@dataclass(frozen=True)
class Option:
    """One measured pipeline against the detector."""

    backend: str
    codec: str
    chunk: str
    measured_GBps: float
    workers: int
    ratio: float
    keeps_up: bool
    cores: float
    nodes: float
    limit: str


def feasibility(
    results: str | os.PathLike[str],
    detector: str,
    frame_rate: float | None = None,
    *,
    cores_per_node: int | None = None,
    disk_GBps: float = DISK_GBPS,
    writer_GBps: float = DISK_GBPS,
    occupancy: float = OCCUPANCY,
) -> tuple[Detector, list[Option], list[str], list[ScalingCheck]]:
    """The detector, every measured pipeline judged against it, the reduced representations that would fit, and
    the model's check where the results hold two worker counts (:mod:`~cubebench.acquisition.scaling`)."""
    profile = get_detector(detector)
    if frame_rate is not None:
        if not frame_rate > 0:
            raise ConfigError(f"--rate must be greater than 0, got {frame_rate!r}")
        profile = Detector(**{**profile.__dict__, "frame_rate": float(frame_rate)})
    ds = load_acquisition(Path(results))
    node = cores_per_node or os.cpu_count() or 1
    need = profile.data_rate / 1e9
    options = []
    for b in ds["backend"].values:
        for c in ds["codec"].values:
            for k in ds["chunk"].values:
                sel = {"backend": b, "codec": c, "chunk": k}
                rate, workers, ratio = _measured(ds, sel)
                if not np.isfinite(rate) or rate <= 0:
                    continue
                options.append(_judge(str(b), str(c), str(k), rate, workers, ratio, need, node, disk_GBps, writer_GBps))
    if not options:
        raise ResultsError(f"{results}: no verified acquisition rate to judge (run cubebench acquire first)")
    best = max(o.measured_GBps for o in options)
    reduced = [] if any(o.keeps_up for o in options) else _reduced(profile, best, occupancy)
    return profile, options, reduced, scaling_checks(ds, disk_GBps, writer_GBps)


def _measured(ds: Any, sel: dict[str, Any]) -> tuple[float, int, float]:
    """The measured GB/s of one pipeline (best over datasets and worker counts), its workers and its ratio."""
    best: tuple[float, int, float] = (float("nan"), 1, float("nan"))
    for workers in ds["workers"].values:
        rate, ratio = measured(ds, {**sel, "workers": workers})
        if np.isfinite(rate) and not rate <= best[0]:
            best = (rate, max(1, int(workers)), ratio)
    return best


def _judge(
    backend: str,
    codec: str,
    chunk: str,
    rate: float,
    workers: int,
    ratio: float,
    need: float,
    node: int,
    disk: float,
    writer: float,
) -> Option:
    per_core = rate / workers
    cores = need / per_core
    stored = need / ratio if np.isfinite(ratio) and ratio > 0 else need
    limit = ""
    if backend == "hdf5_direct" and stored > writer:
        limit = f"one HDF5 writer: {stored:.3g} GB/s stored exceeds {writer:g} GB/s (use one file per writer)"
    nodes = max(math.ceil(cores / node), math.ceil(stored / disk))
    return Option(backend, codec, chunk, rate, workers, ratio, rate >= need, cores, nodes, limit)


def _reduced(profile: Detector, best: float, occupancy: float) -> list[str]:
    """Reduced representations whose stream the best measured pipeline would carry."""
    out = []
    need = profile.data_rate / 1e9
    if profile.event_bytes:
        return [f"none measured: the event stream needs {need:.3g} GB/s, the best pipeline {best:.3g} GB/s"]
    events = profile.frame_rate * profile.frame_shape[0] * profile.frame_shape[1] * occupancy * 8 / 1e9
    if events <= best:
        out.append(f"events: {events:.3g} GB/s at occupancy {occupancy:g} (8 bytes per non-zero pixel)")
    for k in (2, 4, 8, 16):
        binned = need / k**2 * 2
        if binned <= best:
            out.append(f"bin{k}-sum: {binned:.3g} GB/s (detector {k} x {k} binned, at most twice the bytes per pixel)")
            break
    return out or [f"none: even bin16 needs {need / 128:.3g} GB/s, the best pipeline {best:.3g} GB/s"]


def format_answer(
    profile: Detector, options: list[Option], reduced: list[str], checks: list[ScalingCheck] | None = None
) -> str:
    """The feasibility answer as text: the detector, a table of pipelines, what fits when nothing does, and the
    model's check against 1- and 2-worker measurements when there is one."""
    flag = "" if profile.verified else " (figures unverified)"
    lines = [
        f"{profile.name}: {profile.description}; {profile.frame_rate:g}/s x {profile.frame_bytes} B = "
        f"{profile.data_rate / 1e9:.3g} GB/s{flag}",
        f"  source: {profile.source}",
        "| backend | codec | chunk | measured GB/s (workers) | keeps up here | cores needed | nodes like this "
        "| limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in sorted(options, key=lambda o: -o.measured_GBps):
        lines.append(
            f"| {o.backend} | {o.codec} | {o.chunk} | {o.measured_GBps:.3g} ({o.workers}) | "
            f"{'yes' if o.keeps_up else 'no'} | {o.cores:.3g} | {o.nodes:g} | {o.limit} |"
        )
    lines.append("model: linear in cores (measured / workers each) up to one node's disk and one HDF5 writer per file")
    if reduced:
        lines.append("no codec keeps up here; reduced representations that fit: " + "; ".join(reduced))
    if checks:
        lines.append(format_scaling(checks))
    else:
        lines.append("model not checked here: run with acquisition.workers: [1, 2] to compare 1 and 2 workers")
    return "\n".join(lines)
