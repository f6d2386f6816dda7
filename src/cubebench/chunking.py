"""Chunk strategies: the study's named chunkings, or explicit tuples, clipped to a cube's shape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cubebench.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

#: The study's three strategies, as functions of the cube's shape ``(sy, sx, dy, dx)``.
CHUNK_STRATEGIES: dict[str, str] = {
    "real_space": "(32, 32, det_y, det_x): contiguous scan regions, for virtual imaging",
    "balanced": "(16, 16, det_y/2, det_x/2): a compromise between scan and detector access",
    "single_frame": "(1, 1, det_y, det_x): one diffraction pattern per chunk",
}


def chunk_name(chunk: str | Sequence[int]) -> str:
    """Label of a chunk choice: the strategy name, or ``"c32x32x256x256"`` for a tuple."""
    if isinstance(chunk, str):
        return chunk
    return "c" + "x".join(str(int(c)) for c in chunk)


def resolve_chunks(chunk: str | Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Turn a strategy name or an explicit tuple into a chunk shape valid for ``shape``.

    Parameters
    ----------
    chunk
        ``"real_space"``, ``"balanced"``, ``"single_frame"``, or a tuple with one positive int per axis.
    shape
        The cube's 4-D shape ``(scan_y, scan_x, det_y, det_x)``.

    Examples
    --------
    >>> resolve_chunks("balanced", (64, 64, 256, 256))
    (16, 16, 128, 128)
    >>> resolve_chunks("real_space", (8, 8, 256, 256))
    (8, 8, 256, 256)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ConfigError(f"chunking needs a 4-D shape, got {shape}")
    dy, dx = shape[2], shape[3]
    wanted: tuple[int, ...]
    if isinstance(chunk, str):
        if chunk == "real_space":
            wanted = (32, 32, dy, dx)
        elif chunk == "balanced":
            wanted = (16, 16, max(1, dy // 2), max(1, dx // 2))
        elif chunk == "single_frame":
            wanted = (1, 1, dy, dx)
        else:
            valid = ", ".join(CHUNK_STRATEGIES)
            raise ConfigError(f"unknown chunk strategy {chunk!r}; valid: {valid}, or a list of 4 positive ints")
    else:
        try:
            wanted = tuple(int(c) for c in chunk)
        except (TypeError, ValueError):
            raise ConfigError(f"chunk {chunk!r} must be a strategy name or a list of 4 positive ints") from None
        if len(wanted) != 4 or any(isinstance(c, bool) for c in chunk):
            raise ConfigError(f"chunk {list(chunk)!r} must have 4 entries (scan_y, scan_x, det_y, det_x)")
        if any(c <= 0 for c in wanted):
            raise ConfigError(f"chunk {list(chunk)!r} must have only positive entries")
    return tuple(min(c, s) for c, s in zip(wanted, shape, strict=True))
