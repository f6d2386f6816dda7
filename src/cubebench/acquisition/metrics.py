"""Backlog, latency and keeping up, computed from per-frame times (pure NumPy, no cluster).

A frame is *released* when the pacer hands it on and *durable* when the chunk holding it (all its detector tiles)
is. The backlog at time ``t`` is the frames released and not yet durable: what the detector computer must hold.

**Kept up** (the criterion, recorded with every result): at the last release the backlog is at most
``allowed`` frames, and everything is durable within ``drain_seconds`` after the last release. ``allowed`` is the
chunking's implied buffer (:func:`~cubebench.acquisition.assembler.implied_buffer_frames`) plus two batches in
flight per worker (a batch: one chunk, or the frames of one ``tick`` if more; with the ``tasks`` dispatch,
``tick + task_seconds``) plus the frames of one durability batch (``rate x sync_interval``). A pipeline slower
than the rate grows its backlog linearly, past ``allowed`` within the trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FlowStats:
    """What a paced cell measured (seconds, frames)."""

    achieved_rate: float
    peak_backlog: int
    end_backlog: int
    drain_seconds: float
    latency_p50: float
    latency_p99: float
    latency_max: float
    dropped: int


def allowed_backlog(
    implied: int, chunk_frames: int, workers: int, rate: float, batch_seconds: float, sync_interval: float
) -> int:
    """The backlog the kept-up criterion allows (see the module docstring); ``batch_seconds`` = tick + task_seconds."""
    task = max(chunk_frames, int(np.ceil(rate * batch_seconds)))
    return int(implied + 2 * workers * task + np.ceil(rate * sync_interval))


def flow_stats(due: np.ndarray, released: np.ndarray, durable: np.ndarray, buffer_limit: float | None) -> FlowStats:
    """Backlog, latency (durable - due) and drain from per-frame times.

    ``dropped``: frames that arrived while the backlog already held ``buffer_limit`` frames (the run itself drops
    nothing, so this is an upper bound of what a buffer of that size would have lost).
    """
    n = len(released)
    durable_sorted = np.sort(durable)
    # backlog just after each release: frames released so far minus frames durable by then
    after_release = np.arange(1, n + 1) - np.searchsorted(durable_sorted, released, side="right")
    peak = int(after_release.max()) if n else 0
    last = float(released[-1])
    end_backlog = int(n - np.searchsorted(durable_sorted, last, side="right"))
    latency = durable - due
    dropped = 0
    if buffer_limit is not None:
        before = after_release - 1
        dropped = int(np.count_nonzero(before >= buffer_limit))
    span = float(durable_sorted[-1] - due[0])
    return FlowStats(
        achieved_rate=n / span if span > 0 else float("inf"),
        peak_backlog=peak,
        end_backlog=end_backlog,
        drain_seconds=max(0.0, float(durable_sorted[-1]) - last),
        latency_p50=float(np.percentile(latency, 50)),
        latency_p99=float(np.percentile(latency, 99)),
        latency_max=float(latency.max()),
        dropped=dropped,
    )


def frame_durable_times(
    scan: tuple[int, int], chunks: tuple[int, ...], durable: dict[tuple[int, ...], float], n_frames: int
) -> np.ndarray:
    """Each frame's durable time: the latest of its chunk's detector tiles (NaN where one never became durable)."""
    sy, sx = scan
    cy, cx = chunks[0], chunks[1]
    by_block: dict[tuple[int, int], float] = {}
    for index, t in durable.items():
        key = (index[0], index[1])
        by_block[key] = max(by_block.get(key, -np.inf), t)
    grid = np.full(((sy + cy - 1) // cy, (sx + cx - 1) // cx), np.nan)
    for (r, c), t in by_block.items():
        grid[r, c] = t
    ys, xs = np.divmod(np.arange(n_frames), sx)
    out: np.ndarray = grid[ys // cy, xs // cx]
    return out
