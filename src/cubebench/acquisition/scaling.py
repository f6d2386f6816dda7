"""The feasibility model checked against measurement: is throughput linear in workers here?

The model (:mod:`~cubebench.acquisition.feasibility`) says a pipeline's rate is linear in cores up to one node's
disk and, for ``hdf5_direct``, one writer per file. With searches of 1 and 2 workers on the same pipeline
(``acquisition.workers: [1, 2]`` with ``--find-max``), the check compares the measured ``rate(2) / (2 x
rate(1))`` with the model's prediction: 1.0 while ``2 x rate(1)`` stays below the cap, else ``cap / (2 x
rate(1))``. The cap, in raw bytes per second, is the stored-bytes limit times the pipeline's compression ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cubebench.acquisition.measured import measured


@dataclass(frozen=True)
class ScalingCheck:
    """One pipeline measured at two worker counts, against the model."""

    backend: str
    codec: str
    chunk: str
    workers: tuple[int, int]
    rates_GBps: tuple[float, float]
    #: rate(n2) / (n2 / n1 x rate(n1)): 1.0 is linear.
    measured: float
    #: The range the searches' brackets allow: each true maximum lies between its rate kept up and the lowest rate
    #: missed (inf when a search never missed).
    measured_range: tuple[float, float]
    predicted: float
    cap_GBps: float


def scaling_checks(ds: Any, disk_GBps: float, writer_GBps: float) -> list[ScalingCheck]:
    """Every pipeline searched (``--find-max``) at the two smallest worker counts of ``ds`` (empty with fewer
    than two: paced cells measure the rate asked, not what the pipeline can do). Without paced cells the
    compression ratio is unknown and the cap is taken at 1:1 (the lower, cautious cap)."""
    counts = sorted(int(w) for w in ds["workers"].values) if "max_GBps" in ds else []
    if len(counts) < 2:
        return []
    n1, n2 = counts[0], counts[1]
    out = []
    for b in ds["backend"].values:
        for c in ds["codec"].values:
            for k in ds["chunk"].values:
                sel = {"backend": b, "codec": c, "chunk": k}
                r1, r2 = (float(ds["max_GBps"].sel({**sel, "workers": n}).max(skipna=True)) for n in (n1, n2))
                m1, m2 = (_missed_GBps(ds, {**sel, "workers": n}) for n in (n1, n2))
                ratio = measured(ds, {**sel, "workers": n1})[1]
                if not (np.isfinite(r1) and np.isfinite(r2) and r1 > 0):
                    continue
                stored_cap = min(disk_GBps, writer_GBps) if str(b) == "hdf5_direct" else disk_GBps
                cap = stored_cap * (ratio if np.isfinite(ratio) and ratio > 0 else 1.0)
                linear = r1 * n2 / n1
                out.append(
                    ScalingCheck(
                        str(b),
                        str(c),
                        str(k),
                        (n1, n2),
                        (r1, r2),
                        r2 / linear,
                        (r2 / (m1 * n2 / n1), m2 / linear),
                        min(1.0, cap / linear),
                        cap,
                    )
                )
    return out


def _missed_GBps(ds: Any, sel: dict[str, Any]) -> float:
    """The lowest rate a search missed, GB/s (inf when it never missed)."""
    rates = ds["trial_rate"].sel(sel).values
    missed = rates[(ds["trial_kept_up"].sel(sel).values == 0) & np.isfinite(rates)]
    if not missed.size:
        return float("inf")
    frame_bytes = float(ds["max_GBps"].sel(sel).max()) * 1e9 / float(ds["max_frame_rate"].sel(sel).max())
    return float(missed.min()) * frame_bytes / 1e9


def format_scaling(checks: list[ScalingCheck]) -> str:
    """The check as a Markdown table with one line saying what it compares."""
    if not checks:
        return ""
    n1, n2 = checks[0].workers
    lines = [
        f"model check: measured rate with {n2} workers / ({n2 // n1 if n2 % n1 == 0 else n2 / n1:g} x {n1}-worker "
        "rate), against the model's prediction (1.0 below the disk / writer cap)",
        f"| backend | codec | chunk | GB/s at {n1} | GB/s at {n2} | measured | range (search brackets) | model "
        "| cap GB/s raw |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in checks:
        lines.append(
            f"| {x.backend} | {x.codec} | {x.chunk} | {x.rates_GBps[0]:.3g} | {x.rates_GBps[1]:.3g} | "
            f"{x.measured:.2f} | {x.measured_range[0]:.2f}-{x.measured_range[1]:.2f} | {x.predicted:.2f} | "
            f"{x.cap_GBps:.3g} |"
        )
    return "\n".join(lines)
