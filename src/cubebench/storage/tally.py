"""Request counters by name, one set per process: how a cell's counts are gathered from the Dask workers.

A backend's tasks count into ``tally(name)`` in whichever process runs them (the cell's prefix is the name); when
the cell ends, the runner takes each process's counts (:func:`take`, through ``client.run`` on the workers and
here) and adds them. Taking resets, so a process shared by several workers (threads) is counted once.
"""

from __future__ import annotations

import threading

from cubebench.storage.counters import RequestCounter, RequestCounts

_COUNTERS: dict[str, RequestCounter] = {}
_LOCK = threading.Lock()


def tally(name: str) -> RequestCounter:
    """This process's counter for ``name`` (made on first use)."""
    with _LOCK:
        return _COUNTERS.setdefault(name, RequestCounter())


def take(name: str) -> dict[str, int]:
    """This process's counts for ``name`` as plain ints, removing the counter (zeros if none was made)."""
    with _LOCK:
        counter = _COUNTERS.pop(name, None)
    return (counter.snapshot() if counter is not None else RequestCounts()).to_dict()
