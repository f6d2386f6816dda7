"""Release frames in scan order at a set rate, as a detector produces them.

Frame ``i`` is *due* at ``t0 + i / rate``. The pacer wakes at least every ``tick`` seconds and releases, in one
call, every frame that is due (a detector's frames also arrive in packets); each frame's due and release times
are recorded, so that latency counts from when the detector made the frame, pacing lag included. The frames
themselves are produced ahead: the source is staged once (:func:`cubebench.staging.stage_cube`) and read from
its page-cached copy, so producing a frame costs nothing on the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

#: Relative error of the released rate below which the pacing held (the issue's 1 %).
PACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class Pacing:
    """What the pacer did: due and release times per frame (``time.perf_counter`` seconds) and the rate asked."""

    rate: float
    due: np.ndarray
    released: np.ndarray

    @property
    def released_rate(self) -> float:
        """Frames per second actually released: frames after the first over the time from first to last release.

        Frame 0 is released at ``t0``, so this falls short of the rate exactly when the last frames come late.
        """
        n = len(self.released)
        span = float(self.released[-1] - self.released[0]) if n > 1 else 0.0
        return (n - 1) / span if span > 0 else float("inf")

    @property
    def held(self) -> bool:
        """Whether the released rate is within :data:`PACING_TOLERANCE` of the requested one."""
        return abs(self.released_rate / self.rate - 1.0) <= PACING_TOLERANCE

    @property
    def max_lag(self) -> float:
        """The latest any frame was released after it was due, seconds."""
        return float(np.max(self.released - self.due)) if len(self.due) else 0.0


def pace(n_frames: int, rate: float, release: Callable[[int, int, float], None], tick: float = 0.005) -> Pacing:
    """Call ``release(start, stop, now)`` for frames ``[start, stop)`` as they fall due at ``rate`` Hz.

    Returns the :class:`Pacing` record. ``release`` must be quick (it runs on the clock): hand the work on.
    """
    if n_frames < 1 or not rate > 0:
        raise ValueError(f"pace needs frames and a positive rate, got {n_frames} frames at {rate} Hz")
    due = np.arange(n_frames, dtype=np.float64) / rate
    released = np.empty(n_frames, dtype=np.float64)
    t0 = time.perf_counter()
    due += t0
    done = 0
    while done < n_frames:
        now = time.perf_counter()
        ready = min(n_frames, int((now - t0) * rate) + 1)
        if ready > done:
            released[done:ready] = now
            release(done, ready, now)
            done = ready
            continue
        wait = t0 + done / rate - time.perf_counter()
        if wait > 0:
            time.sleep(min(wait, tick))
    return Pacing(rate, due, released)
