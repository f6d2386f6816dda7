"""The maximum sustainable rate: bisection over paced trials, a bounded number of them.

Start at the requested rate; double it while trials keep up (halve it while they do not) until one rate keeps up
and one does not, then bisect between them until they are within ``tolerance`` of each other or ``trials`` paced
trials have run. Each trial is a full paced cell (:func:`~cubebench.acquisition.cell.paced_cell`, verified), long
enough to reach steady state: at least ``min_seconds`` of frames when the source holds them (the backlog of a
pipeline that is too slow grows linearly and passes the criterion's bound within that time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from cubebench.acquisition.results import AcquisitionRecord

#: Relative gap between the highest rate kept up and the lowest not kept up at which the search stops.
TOLERANCE = 0.05


def find_max(
    trial: Callable[[float], AcquisitionRecord], start: float, trials: int, tolerance: float = TOLERANCE
) -> tuple[float, list[AcquisitionRecord]]:
    """The highest rate a trial kept up with (0 when none did), and every trial run, in order."""
    low: float | None = None
    high: float | None = None
    rate = start
    done: list[AcquisitionRecord] = []
    for _ in range(trials):
        record = trial(rate)
        done.append(record)
        if record.status not in ("ok",):
            break  # a failed or unverified trial ends the search: its rate says nothing
        if record.kept_up:
            low = rate
        else:
            high = rate
        if low is not None and high is not None:
            if high / low - 1 <= tolerance:
                break
            rate = (low + high) / 2
        else:
            rate = rate * 2 if high is None else rate / 2
    return (low or 0.0), done
