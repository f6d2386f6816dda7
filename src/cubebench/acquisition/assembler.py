"""Collect released frames into chunks in scan order, and hand each completed chunk on at once.

Frames arrive in scan order (row by row), so a chunk of ``(cy, cx, dy, dx)`` is complete when the last frame of
its ``cy x cx`` block of probe positions arrives: a single-frame chunk at once, a real-space ``(32, 32)`` chunk
only after 32 scan rows. A block split on the detector (``balanced``) completes all its detector tiles together.
Completed chunks are grouped into tasks of at most :data:`TASK_BYTES` of raw frames (at least one chunk each),
handed on when that much is complete or ``task_seconds`` after the oldest waiting chunk completed, so single-frame
chunks at thousands of frames a second are not thousands of cluster tasks (a Dask task costs milliseconds of
scheduler and client time here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cubebench.cube import block_grid, grid_counts

if TYPE_CHECKING:
    from collections.abc import Callable

    from cubebench.cube import Block

ChunkIndex = tuple[int, ...]

#: Raw bytes of frames one encode task takes at most (unless one chunk is larger).
TASK_BYTES = 8 * 2**20


def implied_buffer_frames(scan: tuple[int, int], chunks: tuple[int, ...]) -> int:
    """Frames a chunking makes the detector computer hold before a chunk completes.

    ``cy`` scan rows for chunks spanning several rows (a ``(32, 32)`` real-space chunk: 32 rows; the scan height
    when smaller), else ``cx`` frames of one row (a single-frame chunk: 1 frame).

    Examples
    --------
    >>> implied_buffer_frames((256, 256), (32, 32, 128, 128)), implied_buffer_frames((8, 8), (32, 32, 64, 64))
    (8192, 64)
    >>> implied_buffer_frames((256, 256), (1, 1, 128, 128))
    1
    """
    sy, sx = scan
    cy, cx = min(chunks[0], sy), min(chunks[1], sx)
    return cy * sx if cy > 1 else cx


class Assembler:
    """Track which chunks the released frames complete; pass each group of completed chunks to ``submit``.

    ``submit(items)`` receives ``[(chunk index, block), ...]`` (blocks of the cube) and must return quickly.
    ``completed[k]`` is the release time of chunk ``k``'s last frame (for the latency and backlog record).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        itemsize: int,
        submit: Callable[[list[tuple[ChunkIndex, Block]]], None],
        task_seconds: float = 0.02,
        rate: float = float("inf"),
    ) -> None:
        self.shape, self.chunks, self.submit = shape, chunks, submit
        sy, sx = shape[0], shape[1]
        cy, cx = chunks[0], chunks[1]
        grid = grid_counts(shape, chunks)
        by_scan: dict[tuple[int, int], list[tuple[ChunkIndex, Block]]] = {}
        for index, block in block_grid(shape, chunks):
            by_scan.setdefault((index[0], index[1]), []).append((index, block))
        self._groups = by_scan
        # the flat index of each scan block's last frame, in completion order
        keys = sorted(by_scan, key=lambda k: min((k[0] + 1) * cy, sy) * sx + min((k[1] + 1) * cx, sx))
        self._order = keys
        self._last = np.array([(min((r + 1) * cy, sy) - 1) * sx + min((c + 1) * cx, sx) - 1 for r, c in keys])
        self._next = 0
        self.n_chunks = int(np.prod(grid))
        chunk_bytes = int(np.prod(chunks)) * itemsize
        self._per_task = max(1, TASK_BYTES // max(1, chunk_bytes))
        self._task_seconds = task_seconds
        self._interval = 1.0 / rate
        self._pending: list[tuple[ChunkIndex, Block]] = []
        self._since = 0.0
        #: Scan block (r, c) -> the release time of its last frame.
        self.completed: dict[tuple[int, int], float] = {}

    def release(self, start: int, stop: int, now: float) -> None:
        """Frames ``[start, stop)`` arrived at ``now``: submit the chunks they complete."""
        end = int(np.searchsorted(self._last, stop, side="left"))
        if end > self._next and not self._pending:
            self._since = now
        for key in self._order[self._next : end]:
            self.completed[key] = now
            self._pending.extend(self._groups[key])
        self._next = max(self._next, end)
        while len(self._pending) >= self._per_task:
            self.submit(self._pending[: self._per_task])
            del self._pending[: self._per_task]
            self._since = now
        # hand on what waits unless the next frame is due before the oldest waiting chunk is task_seconds old
        if self._pending and (self.done or now - self._since + self._interval >= self._task_seconds):
            self.submit(self._pending)
            self._pending = []

    def schedule(self) -> list[tuple[ChunkIndex, Block, int]]:
        """Every chunk in completion order, with the flat index of the frame that completes it.

        Examples
        --------
        >>> [(i, last) for i, _, last in Assembler((2, 4, 8, 8), (1, 2, 8, 8), 2, print).schedule()]
        [((0, 0, 0, 0), 1), ((0, 1, 0, 0), 3), ((1, 0, 0, 0), 5), ((1, 1, 0, 0), 7)]
        """
        return [
            (index, block, int(last))
            for key, last in zip(self._order, self._last, strict=True)
            for index, block in self._groups[key]
        ]

    @property
    def done(self) -> bool:
        """Whether every chunk has completed (the last ones are handed on with the last frame)."""
        return self._next == len(self._order)
