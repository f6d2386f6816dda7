"""The acquisition results as a Markdown table: buffer and latency against chunk shape, one row per cell.

Reads only the ``acquisition.nc`` Dataset (:func:`~cubebench.acquisition.results.records_to_dataset`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIB = 2**20


def summary_table(ds: Any) -> str:
    """Paced cells (kept up, rate, buffer measured vs implied, latency) and max-rate searches, as Markdown."""
    lines: list[str] = []
    dims = ("dataset", "backend", "codec", "chunk", "workers")
    if "kept_up" in ds:
        lines += [
            "| dataset | backend | codec | chunk | workers | rate | status | kept up | achieved Hz "
            "| buffer MiB (implied) | p50 / p99 / max s | dropped |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cell in _cells(ds, (*dims, "rate")):
            c = ds.sel(cell)
            if str(c["status"].item()) == "":
                continue
            lines.append(
                "| " + " | ".join(str(cell[d]) for d in (*dims, "rate")) + f" | {c['status'].item()} | "
                f"{'yes' if c['kept_up'].item() == 1 else 'no'} | {_f(c['achieved_rate'])} | "
                f"{_f(c['peak_backlog_bytes'] / MIB)} ({_f(c['implied_buffer_bytes'] / MIB)}) | "
                f"{_f(c['latency_p50'])} / {_f(c['latency_p99'])} / {_f(c['latency_max'])} | "
                f"{_f(c['dropped_frames'])} |"
            )
    if "max_frame_rate" in ds:
        lines += [
            "",
            "| dataset | backend | codec | chunk | workers | status | max Hz | GB/s | trials | lower bound |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cell in _cells(ds, dims):
            c = ds.sel(cell)
            if str(c["search_status"].item()) == "":
                continue
            trials = int(np.isfinite(c["trial_rate"].values).sum())
            lines.append(
                "| " + " | ".join(str(cell[d]) for d in dims) + f" | {c['search_status'].item()} | "
                f"{_f(c['max_frame_rate'])} | {_f(c['max_GBps'])} | {trials} | "
                f"{'yes' if c['max_is_lower_bound'].item() == 1 else 'no'} |"
            )
    return "\n".join(lines).strip()


def _cells(ds: Any, dims: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{}]
    for d in dims:
        out = [{**cell, d: value} for cell in out for value in ds[d].values.tolist()]
    return out


def _f(value: Any) -> str:
    number = float(np.asarray(value))
    return "-" if not np.isfinite(number) else f"{number:.3g}"
