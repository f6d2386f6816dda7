"""Access patterns: the partial reads users actually do, so that the chunk choice shows its real effect.

Three patterns of a cube ``(scan_y, scan_x, det_y, det_x)``:

- ``frame``: the diffraction pattern at the scan centre (one probe position, all detector pixels);
- ``region``: a 32 x 32 scan region centred on the scan (clipped to the scan), all detector pixels;
- ``virtual_detector``: every probe position, the bounding box of a centred detector disk of radius
  ``min(det_y, det_x) / 8`` read through the storage, and the disk summed into a virtual image.

Backends read a pattern as *tiles*: pieces of the selection's scan range, each holding whole selected frames
(the selection's detector window). Each tile is reduced where it was read (:func:`reduce_tile`) to a hash per
frame (of the frame's selected window, C order) and, for ``virtual_detector``, the disk sum per frame;
:func:`combine` assembles the tiles. The checksum of a pattern is the hash of the per-frame hashes in scan
order, so it does not depend on how the tiles were cut, and the same function on the staged source gives the
value to verify against. This module is pure NumPy: backends and staging both build on it.

Examples
--------
>>> sel = selection("region", (64, 64, 16, 16))
>>> sel.scan
(slice(16, 48, None), slice(16, 48, None))
>>> sel = selection("virtual_detector", (4, 4, 16, 16))
>>> sel.det, int(sel.mask.sum())
((slice(6, 10, None), slice(6, 10, None)), 12)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import checksum
from cubebench.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

#: Pattern names, in the order results list them.
PATTERNS = ("frame", "region", "virtual_detector")
#: Side of the ``region`` pattern, in probe positions.
REGION_SIDE = 32

Window = tuple[slice, slice]


@dataclass(frozen=True)
class Selection:
    """What one pattern reads from a cube of ``shape``: a scan window, a detector window, and a disk mask.

    ``mask`` (``virtual_detector`` only) has the detector window's shape; True pixels are summed.
    """

    pattern: str
    shape: tuple[int, ...]
    scan: Window
    det: Window
    mask: np.ndarray | None = None

    @property
    def scan_shape(self) -> tuple[int, int]:
        """Probe positions selected, ``(ny, nx)``."""
        return (self.scan[0].stop - self.scan[0].start, self.scan[1].stop - self.scan[1].start)

    @property
    def det_shape(self) -> tuple[int, int]:
        """Detector pixels read per frame, ``(hy, hx)``."""
        return (self.det[0].stop - self.det[0].start, self.det[1].stop - self.det[1].start)

    @property
    def block(self) -> tuple[slice, ...]:
        """The selection as a 4-D index into the cube."""
        return (*self.scan, *self.det)


@dataclass(frozen=True)
class TilePart:
    """One tile reduced where it was read: its scan offset, one hash per frame, and disk sums (or None)."""

    y0: int
    x0: int
    crcs: np.ndarray
    sums: np.ndarray | None = None


@dataclass(frozen=True)
class PatternResult:
    """A pattern read, assembled: the checksum to verify, and the virtual image for ``virtual_detector``."""

    pattern: str
    checksum: int
    image: np.ndarray | None = None


def parse_pattern(name: str) -> str:
    """Return ``name`` if it is a pattern; otherwise raise :class:`ConfigError` naming it and listing the valid ones."""
    if name not in PATTERNS:
        raise ConfigError(f"unknown access pattern {name!r}; valid: {', '.join(PATTERNS)}")
    return name


def selection(pattern: str, shape: Sequence[int]) -> Selection:
    """The selection of ``pattern`` on a cube of 4-D ``shape`` (see the module docstring)."""
    parse_pattern(pattern)
    shape = tuple(int(s) for s in shape)
    sy, sx, dy, dx = shape
    full_det = (slice(0, dy), slice(0, dx))
    if pattern == "frame":
        return Selection(pattern, shape, (slice(sy // 2, sy // 2 + 1), slice(sx // 2, sx // 2 + 1)), full_det)
    if pattern == "region":
        return Selection(pattern, shape, (_centred(sy, REGION_SIDE), _centred(sx, REGION_SIDE)), full_det)
    radius = max(min(dy, dx) / 8, 1.0)
    cy, cx = (dy - 1) / 2, (dx - 1) / 2
    yy, xx = np.ogrid[:dy, :dx]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    rows, cols = np.flatnonzero(disk.any(axis=1)), np.flatnonzero(disk.any(axis=0))
    det = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    return Selection(pattern, shape, (slice(0, sy), slice(0, sx)), det, np.ascontiguousarray(disk[det]))


def _centred(size: int, side: int) -> slice:
    start = max(0, min(size // 2 - side // 2, size - side))
    return slice(start, min(size, start + side))


def scan_tiles(sel: Selection, tile: Sequence[int]) -> list[Window]:
    """Cut the selection's scan window along the global grid of ``tile = (ty, tx)`` probe positions.

    Backends pass their chunk's scan extent, so that each tile lies within one column of stored chunks.
    """
    ty, tx = max(1, int(tile[0])), max(1, int(tile[1]))
    (y0, y1), (x0, x1) = ((s.start, s.stop) for s in sel.scan)
    out: list[Window] = []
    for ys in range(y0 - y0 % ty, y1, ty):
        for xs in range(x0 - x0 % tx, x1, tx):
            out.append((slice(max(ys, y0), min(ys + ty, y1)), slice(max(xs, x0), min(xs + tx, x1))))
    return out


def pattern_batches(sel: Selection, chunks: Sequence[int], itemsize: int, limit: int) -> list[list[Window]]:
    """The selection's tiles on ``chunks``' scan grid, grouped so that a task reads about ``limit`` stored bytes.

    A tile reads every stored chunk of its scan cell that overlaps the detector window, so its cost is whole
    chunks, not the selected bytes: that is the effect of the chunk choice that the patterns measure.
    """
    tiles = scan_tiles(sel, chunks[:2])
    det_chunks = 1
    for axis, window in enumerate(sel.det):
        c = int(chunks[2 + axis])
        det_chunks *= (window.stop - 1) // c - window.start // c + 1
    per_tile = int(np.prod(chunks, dtype=np.int64)) * det_chunks * itemsize
    size = max(1, limit // max(1, per_tile))
    return [tiles[i : i + size] for i in range(0, len(tiles), size)]


def overlapping_chunks(sel: Selection, tile: Window, chunks: Sequence[int]) -> list[tuple[int, ...]]:
    """Indices of the stored chunks that ``tile`` (a tile of ``sel``) needs, in C order."""
    iy, ix = tile[0].start // chunks[0], tile[1].start // chunks[1]
    rows = range(sel.det[0].start // chunks[2], (sel.det[0].stop - 1) // chunks[2] + 1)
    cols = range(sel.det[1].start // chunks[3], (sel.det[1].stop - 1) // chunks[3] + 1)
    return [(iy, ix, r, c) for r in rows for c in cols]


def assemble(
    sel: Selection,
    tile: Window,
    chunks: Sequence[int],
    dtype: np.dtype[Any],
    read_chunk: Callable[[tuple[int, ...]], np.ndarray],
) -> np.ndarray:
    """The selected frames of ``tile``, ``(ny, nx, hy, hx)``, copied out of the stored chunks that overlap it.

    ``read_chunk(index)`` returns one decoded chunk with its origin at the chunk's corner (full or clipped shape).
    """
    (ys, xs), (dys, dxs) = tile, sel.det
    out = np.empty((ys.stop - ys.start, xs.stop - xs.start, dys.stop - dys.start, dxs.stop - dxs.start), dtype)
    for index in overlapping_chunks(sel, tile, chunks):
        origin = [i * c for i, c in zip(index, chunks, strict=True)]
        chunk = read_chunk(index)
        src: list[slice] = []
        dst: list[slice] = []
        for axis, window in enumerate((ys, xs, dys, dxs)):
            lo, hi = max(window.start, origin[axis]), min(window.stop, origin[axis] + chunks[axis])
            src.append(slice(lo - origin[axis], hi - origin[axis]))
            dst.append(slice(lo - window.start, hi - window.start) if axis >= 2 else slice(None))
        out[tuple(dst)] = chunk[tuple(src)]
    return out


def reduce_tile(sel: Selection, y0: int, x0: int, data: np.ndarray) -> TilePart:
    """Reduce ``data``, the selected frames ``(ny, nx, hy, hx)`` whose first probe position is ``(y0, x0)``.

    Returns one hash per frame (:func:`~cubebench.cube.checksum` of its selected window, C order) and, for
    ``virtual_detector``, the sum of the disk pixels per frame (int64 for integer data, float64 for floats).
    """
    ny, nx = data.shape[:2]
    frames = np.ascontiguousarray(data).reshape(ny * nx, -1)
    crcs = np.fromiter((checksum(f) for f in frames), dtype=np.uint64, count=ny * nx).reshape(ny, nx)
    sums = None
    if sel.mask is not None:
        acc = np.float64 if data.dtype.kind == "f" else np.int64
        sums = frames[:, np.flatnonzero(sel.mask)].sum(axis=1, dtype=acc).reshape(ny, nx)
    return TilePart(int(y0), int(x0), crcs, sums)


def combine(sel: Selection, parts: Iterable[TilePart]) -> PatternResult:
    """Assemble tile parts into the pattern's checksum (and virtual image); every frame must be covered once."""
    ny, nx = sel.scan_shape
    oy, ox = sel.scan[0].start, sel.scan[1].start
    crcs = np.zeros((ny, nx), dtype=np.uint64)
    seen = np.zeros((ny, nx), dtype=np.int32)
    image: np.ndarray | None = None
    for part in parts:
        window = (
            slice(part.y0 - oy, part.y0 - oy + part.crcs.shape[0]),
            slice(part.x0 - ox, part.x0 - ox + part.crcs.shape[1]),
        )
        crcs[window] = part.crcs
        seen[window] += 1
        if part.sums is not None:
            if image is None:
                image = np.zeros((ny, nx), dtype=part.sums.dtype)
            image[window] = part.sums
    if not (seen == 1).all():
        missing, twice = int((seen == 0).sum()), int((seen > 1).sum())
        raise ValueError(f"{sel.pattern}: {missing} frames not read, {twice} read more than once")
    return PatternResult(sel.pattern, checksum(crcs), image)
