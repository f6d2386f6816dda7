"""Chunk strategies: the study's named chunkings, or explicit tuples, clipped to a cube's shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from cubebench.errors import ConfigError

#: The study's three strategies, as functions of the cube's shape ``(sy, sx, dy, dx)``.
CHUNK_STRATEGIES: dict[str, str] = {
    "real_space": "(32, 32, det_y, det_x): contiguous scan regions, for virtual imaging",
    "balanced": "(16, 16, det_y/2, det_x/2): a compromise between scan and detector access",
    "single_frame": "(1, 1, det_y, det_x): one diffraction pattern per chunk",
}


def parse_chunk(chunk: Any) -> str | tuple[int, ...]:
    """The one parser of a chunking as users give it: a strategy name, ``"SY,SX,DY,DX"``, or 4 positive integers.

    Experiments, the CLI (``--chunk``, ``--chunks``) and the Python API all pass through it.

    Examples
    --------
    >>> parse_chunk("balanced"), parse_chunk("32,32,128,128"), parse_chunk([1, 1, 256, 256])
    ('balanced', (32, 32, 128, 128), (1, 1, 256, 256))
    """
    if isinstance(chunk, str):
        if "," not in chunk:
            if chunk not in CHUNK_STRATEGIES:
                valid = ", ".join(CHUNK_STRATEGIES)
                raise ConfigError(f"unknown chunk strategy {chunk!r}; valid: {valid}, or [y, x, dy, dx]")
            return chunk
        try:
            chunk = [int(c) for c in chunk.split(",")]
        except ValueError:
            raise ConfigError(f"chunk {chunk!r} must be a strategy name or 4 comma-separated integers") from None
    if not isinstance(chunk, Sequence):
        raise ConfigError(f"chunk {chunk!r} must be a strategy name or a list of 4 integers")
    items = list(chunk)
    if len(items) != 4 or not all(isinstance(c, int) and not isinstance(c, bool) for c in items):
        raise ConfigError(f"chunk {items!r} must be a list of 4 integers")
    if any(c <= 0 for c in items):
        raise ConfigError(f"chunk {items!r} must have only positive entries")
    return tuple(items)


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
    parsed = parse_chunk(chunk)
    strategies = {
        "real_space": (32, 32, dy, dx),
        "balanced": (16, 16, max(1, dy // 2), max(1, dx // 2)),
        "single_frame": (1, 1, dy, dx),
    }
    wanted = strategies[parsed] if isinstance(parsed, str) else parsed
    return tuple(min(c, s) for c, s in zip(wanted, shape, strict=True))


@dataclass(frozen=True)
class Chunking:
    """A chunking resolved once for one cube and one storage path, and passed down as it is.

    Parameters
    ----------
    label
        The results coordinate: the strategy name, or ``"c32x32x128x128"``.
    shape
        The chunk shape, clipped to the cube.
    block
        The unit a task writes and a checksum covers: the chunk, or the shard that groups chunks.

    Examples
    --------
    >>> Chunking.resolve("balanced", (64, 64, 256, 256))
    Chunking(label='balanced', shape=(16, 16, 128, 128), block=(16, 16, 128, 128))
    """

    label: str
    shape: tuple[int, ...]
    block: tuple[int, ...]

    @classmethod
    def resolve(cls, chunk: Any, cube_shape: Sequence[int]) -> Chunking:
        """Parse ``chunk`` (see :func:`parse_chunk`) and resolve it for ``cube_shape``; block = chunk."""
        shape = resolve_chunks(chunk, cube_shape)
        return cls(chunk_name(parse_chunk(chunk)), shape, shape)

    def stored_as(self, block: tuple[int, ...]) -> Chunking:
        """This chunking as a storage path stores it, in blocks (shards) of ``block``."""
        return replace(self, block=tuple(block))
