"""Peak resident memory of this process and all its descendants (the LocalCluster's scheduler and workers).

Workers that are not descendants (batch-system jobs, an existing scheduler's workers) sample themselves, see
:class:`cubebench.cluster.WorkerMemory`.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from types import TracebackType


def tree_rss(root: psutil.Process | None = None) -> int:
    """Resident bytes of ``root`` (default: this process) plus every descendant process."""
    return _rss(_tree(root or psutil.Process()))


def _tree(root: psutil.Process) -> list[psutil.Process]:
    return [root, *root.children(recursive=True)]


def _rss(processes: list[psutil.Process]) -> int:
    """Resident bytes of ``processes`` together, skipping any that have ended."""
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakMemory:
    """Context manager sampling :func:`tree_rss` in a background thread; ``.peak`` holds the maximum seen.

    Examples
    --------
    >>> with PeakMemory(interval=0.01) as mem:
    ...     buffer = bytearray(10_000_000)
    >>> mem.peak > 10_000_000
    True
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="cubebench-memory", daemon=True)
        self._root = psutil.Process()
        #: Process ids seen in the tree while sampling (to tell which workers were counted).
        self.pids: set[int] = set()

    def _sample(self) -> None:
        # listing descendants scans all of /proc (about 1 ms): do it once a second, read their memory every sample
        processes: list[psutil.Process] = []
        for tick in itertools.count():
            if tick % max(1, round(1.0 / self.interval)) == 0:
                processes = _tree(self._root)
                self.pids.update(p.pid for p in processes)
            self.peak = max(self.peak, _rss(processes))
            if self._stop.wait(self.interval):
                break

    def __enter__(self) -> PeakMemory:
        processes = _tree(self._root)
        self.peak = _rss(processes)
        self.pids.update(p.pid for p in processes)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self._root))
