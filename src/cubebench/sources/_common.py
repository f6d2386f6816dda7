"""Helpers shared by the file sources: shape and dtype checks, chunk choice, 3-D frame stacks, byte order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.errors import DatasetError

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Dask chunks of file sources are whole frames, at most this big (and at least half of it when the cube allows).
CHUNK_BYTES = 32 * 2**20

#: The axes every cube has, in order.
AXES = "(scan_y, scan_x, det_y, det_x)"


def check_dtype(where: str, dtype: Any) -> np.dtype:
    """Accept real integer and floating dtypes only (any byte order); raise :class:`DatasetError` otherwise."""
    try:
        dt: np.dtype = np.dtype(dtype)
    except TypeError:
        raise DatasetError(f"{where}: unsupported dtype {dtype!r}; need a real integer or float dtype") from None
    if dt.kind == "b":
        raise DatasetError(f"{where}: dtype bool is not supported; need a real integer or float dtype")
    if dt.kind == "c":
        raise DatasetError(f"{where}: complex dtype {dt.name} is not supported; need a real integer or float dtype")
    if dt.kind not in "iuf" or dt.fields is not None or dt.subdtype is not None:
        raise DatasetError(f"{where}: dtype {dt} is not supported; need a real integer or float dtype")
    return dt


def native(dtype: np.dtype) -> np.dtype:
    """The same dtype in native byte order."""
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def check_shape(where: str, shape: Sequence[int], scan_shape: Sequence[int] | None) -> tuple[int, int, int, int]:
    """Return the 4-D cube shape of an array of ``shape``, reshaping a 3-D frame stack with ``scan_shape``.

    Raises :class:`DatasetError` for other ranks, empty axes, or a ``scan_shape`` that does not fit.
    """
    shape = tuple(int(s) for s in shape)
    if any(s == 0 for s in shape):
        raise DatasetError(f"{where}: the array is empty (shape {shape})")
    if len(shape) == 4:
        if scan_shape is not None and tuple(scan_shape) != shape[:2]:
            raise DatasetError(
                f"{where}: scan_shape {list(scan_shape)} does not match the array's scan axes {list(shape[:2])}"
            )
        return (shape[0], shape[1], shape[2], shape[3])
    if len(shape) == 3:
        if scan_shape is None:
            raise DatasetError(
                f"{where}: the array is 3-D {shape} (frames, det_y, det_x); give scan_shape [scan_y, scan_x] "
                f"to read it as a 4-D cube {AXES}"
            )
        sy, sx = (int(s) for s in scan_shape)
        if sy * sx != shape[0]:
            raise DatasetError(f"{where}: scan_shape {[sy, sx]} needs {sy * sx} frames, but the array holds {shape[0]}")
        return (sy, sx, shape[1], shape[2])
    raise DatasetError(f"{where}: the array is {len(shape)}-D {shape}; need a 4-D cube {AXES}")


def check_scan_shape(where: str, scan_shape: Any) -> tuple[int, int] | None:
    """Validate a ``scan_shape`` option: two positive ints (or None)."""
    from cubebench.errors import ConfigError

    if scan_shape is None:
        return None
    try:
        vals = [int(v) for v in scan_shape]
        ok = len(vals) == 2 and all(v > 0 for v in vals) and not any(isinstance(v, bool) for v in scan_shape)
        ok = ok and all(float(v) == int(v) for v in scan_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{where}: scan_shape must be two positive ints [scan_y, scan_x], got {scan_shape!r}")
    return (vals[0], vals[1])


def frame_chunks(
    shape: Sequence[int], itemsize: int, file_chunks: Sequence[int] | None = None, limit: int = CHUNK_BYTES
) -> tuple[int, int, int, int]:
    """Dask chunk shape of whole frames, at most ``limit`` bytes (unless one file chunk is bigger).

    Contiguous sources (``file_chunks`` None) get runs of whole scan rows, which are single contiguous reads.
    Chunked sources get multiples of the file's scan chunk, grown by doubling the shorter side while under the
    limit.
    """
    sy, sx, dy, dx = (int(s) for s in shape)
    frame = max(dy * dx * itemsize, 1)
    per_chunk = max(1, limit // frame)
    if file_chunks is None:
        if per_chunk >= sx:
            return (max(1, min(sy, per_chunk // sx)), sx, dy, dx)
        return (1, per_chunk, dy, dx)
    fy = max(1, min(int(file_chunks[0]), sy))
    fx = max(1, min(int(file_chunks[1]), sx))
    cy, cx = fy, fx
    while True:
        grow_y = (min(cy * 2, _round_up(sy, fy)), cx)
        grow_x = (cy, min(cx * 2, _round_up(sx, fx)))
        order = (grow_y, grow_x) if min(cy, sy) < min(cx, sx) else (grow_x, grow_y)  # keep it square-ish
        for cand in order:
            if cand != (cy, cx) and min(cand[0], sy) * min(cand[1], sx) * frame <= limit:
                cy, cx = cand
                break
        else:
            return (min(cy, sy), min(cx, sx), dy, dx)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def dask_chunks(shape: Sequence[int], chunk: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Explicit Dask chunks (edge chunks clipped) for a regular ``chunk`` over ``shape``."""
    return tuple(tuple(min(c, s - i) for i in range(0, s, c)) for s, c in zip(shape, chunk, strict=True))


def frames_to_cube(frames: Any, scan_shape: tuple[int, int], chunk: Sequence[int]) -> Any:
    """Reshape a lazy 3-D stack ``(frames, dy, dx)`` into ``(sy, sx, dy, dx)`` without moving data.

    ``frames`` must be chunked in whole scan rows (multiples of ``sx`` frames), so the reshape is blockwise.
    """
    sy, sx = scan_shape
    cube = frames.reshape((sy, sx, *frames.shape[1:]), merge_chunks=False)
    want = dask_chunks(cube.shape, (int(chunk[0]), int(chunk[1]), cube.shape[2], cube.shape[3]))
    return cube if cube.chunks == want else cube.rechunk(want, method="tasks")  # no P2P: any scheduler


def frame_stack_chunks(n_frames: int, scan_shape: tuple[int, int], chunk: Sequence[int]) -> int:
    """Frames per chunk of a 3-D stack so that the reshape to ``chunk`` (whole frames) is blockwise."""
    cy, cx = int(chunk[0]), int(chunk[1])
    return cy * scan_shape[1] if cx >= scan_shape[1] else cx


def to_native(arr: Any) -> Any:
    """A lazy array in native byte order (blockwise ``astype`` only when needed)."""
    dt = np.dtype(arr.dtype)
    nat = native(dt)
    if nat == dt:
        return arr
    return arr.astype(nat)


def first_line(exc: BaseException) -> str:
    """The first line of an exception message (third-party messages can be long)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
