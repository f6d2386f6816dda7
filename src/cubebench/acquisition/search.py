"""The maximum sustainable rate: a bracketing search over paced trials, a bounded number of them.

A trial that does not keep up still measures the pipeline: its ``achieved_rate`` (frames durable per second while
overloaded) estimates the pipeline's throughput. The search uses it:

1. Start at ``start`` (the benchmark: the machine's measured ceiling). While no trial has missed, double, up to
   ``cap``: the highest rate at which a trial still lasts ``min_seconds`` on this source (above it a trial is the
   whole scan, too short for a steady state). A trial kept up at ``cap`` ends the search: a lower bound.
2. After the first miss, while no trial kept up, try just below the estimate: ``estimate x (1 - tolerance /
   2.5)`` (at most ``high / (1 + tolerance)``); after further misses, the lower of that and ``high / 2`` (a
   pipeline bound by latency rather than throughput misses at every rate near its estimate).
3. With a rate kept up (``low``) and one missed (``high``): try just above the estimate,
   ``estimate x (1 + tolerance / 2.5)``, when it lies inside the bracket and the last trial aimed that way did not
   miss; else the geometric middle (an overloaded pipeline can drain faster than it sustains a steady stream, so
   an estimate that missed once is not trusted twice in a row).
4. Stop when ``high / low - 1 <= tolerance``, after ``trials`` trials, or after a failed or unverified trial.

On a pipeline whose overloaded throughput is steady this takes three trials (miss at the start, keep up just
below the estimate, miss just above it). Each trial is a full paced cell
(:func:`~cubebench.acquisition.cell.paced_cell`, verified) of at least ``min_seconds`` of frames when the source
holds them: a pipeline slower than the rate grows its backlog linearly and passes the criterion's bound within
that time when the excess rate x the trial's length exceeds the allowed backlog.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from cubebench.acquisition.results import AcquisitionRecord

#: Relative gap between the highest rate kept up and the lowest not kept up at which the search stops.
TOLERANCE = 0.05


def find_max(
    trial: Callable[[float], AcquisitionRecord],
    start: float,
    trials: int,
    tolerance: float = TOLERANCE,
    cap: float = math.inf,
) -> tuple[float, list[AcquisitionRecord]]:
    """The highest rate a trial kept up with (0 when none did), and every trial run, in order."""
    low: float | None = None
    misses = 0
    aimed = aimed_missed = False
    high: float | None = None
    estimate: float | None = None
    rate = min(start, cap)
    done: list[AcquisitionRecord] = []
    for _ in range(trials):
        record = trial(rate)
        done.append(record)
        if record.status not in ("ok",):
            break  # a failed or unverified trial ends the search: its rate says nothing
        aimed_missed = aimed and not record.kept_up
        if record.kept_up:
            low = rate if low is None else max(low, rate)
        else:
            high = rate if high is None else min(high, rate)
            misses += 1
            achieved = float(record.achieved_rate)
            if math.isfinite(achieved) and 0 < achieved < rate:
                estimate = achieved if estimate is None else min(estimate, achieved)
        if low is not None and (low >= cap or (high is not None and high / low - 1 <= tolerance)):
            break
        rate = min(cap, next_rate(low, high, None if aimed_missed else estimate, rate, tolerance, misses))
        aimed = low is not None and high is not None and estimate is not None and not aimed_missed
    return (low or 0.0), done


def next_rate(
    low: float | None, high: float | None, estimate: float | None, rate: float, tolerance: float, misses: int = 1
) -> float:
    """The next trial's rate (see the module docstring).

    Examples
    --------
    >>> next_rate(None, 1000.0, 500.0, 1000.0, 0.05), next_rate(490.0, 1000.0, 500.0, 490.0, 0.05)
    (490.0, 510.0)
    >>> next_rate(510.0, 1000.0, 500.0, 510.0, 0.05) == (510.0 * 1000.0) ** 0.5
    True
    """
    step = tolerance / 2.5
    if high is None:
        return rate * 2
    if low is None:
        if estimate is None:
            return high / 2
        guess = min(estimate * (1 - step), high / (1 + tolerance))
        return guess if misses <= 1 else min(guess, high / 2)
    if estimate is not None:
        guess = estimate * (1 + step)
        if low * (1 + step / 2) < guess < high / (1 + step / 2):
            return guess
    return math.sqrt(low * high)
