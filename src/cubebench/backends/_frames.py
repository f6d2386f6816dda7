"""Helpers shared by the study's frame-oriented methods (``csr``, ``uint8_overflow``, ``npy_gzip``).

These backends do not chunk storage the way HDF5 and Zarr do; the chunk shape the runner passes only groups
the work: tasks handle *tiles* of ``(chunk_y, chunk_x)`` probe positions with the whole detector, and a read
returns one hash per block of the chunk shape, exactly as :func:`cubebench.staging.source_checksums`
computes it for the same block shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import Block, block_grid, checksum
from cubebench.errors import CodecUnavailableError
from cubebench.parallel import BATCH_BYTES

if TYPE_CHECKING:
    from cubebench.codecs import CodecSpec

ChunkIndex = tuple[int, ...]


def require_codec(codec: CodecSpec, allowed: tuple[str, ...], why: str) -> None:
    """Raise ``CodecUnavailableError("<codec>: <why>")`` unless ``codec.id`` is one of ``allowed``."""
    if codec.id not in allowed:
        raise CodecUnavailableError(f"{codec.id}: {why}")


def require_dtype(codec: CodecSpec, dtype: np.dtype[Any], backend: str) -> None:
    """Integer and float data only (what a detector cube holds)."""
    if np.dtype(dtype).kind not in "uif":
        raise CodecUnavailableError(f"{codec.id}: {backend} stores integer or float data, not {np.dtype(dtype)}")


def tile_shape(
    shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int, limit: int = BATCH_BYTES
) -> tuple[int, ...]:
    """A task's tile: whole detectors, about ``limit`` raw bytes, a multiple of ``chunks[:2]`` (or the scan's edge).

    Bands of whole scan rows when a band of ``chunks[0]`` rows fits in ``limit``, else runs of ``chunks[1]``
    columns of one band; so a tile holds whole storage blocks, and single-frame chunks do not mean one task
    (and several HDF5 calls) per frame.
    """
    sy, sx, dy, dx = shape
    c0, c1 = chunks[0], chunks[1]
    frame = dy * dx * itemsize
    band = c0 * sx * frame
    if band <= limit:
        return (min(sy, c0 * max(1, limit // band)), sx, dy, dx)
    return (c0, min(sx, c1 * max(1, limit // (c0 * c1 * frame))), dy, dx)


def frame_tiles(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int) -> list[list[Block]]:
    """The cube cut into :func:`tile_shape` tiles, one per task."""
    return [[block] for _, block in block_grid(shape, tile_shape(shape, chunks, itemsize))]


def block_checksums(data: np.ndarray, origin: tuple[int, ...], chunks: tuple[int, ...]) -> dict[ChunkIndex, int]:
    """XXH3-64 hash of every block of ``chunks`` inside ``data``, a dense piece of the cube whose corner is ``origin``.

    ``origin`` lies on the chunk grid and ``data`` ends on it or at the cube's edge, so the blocks are the
    cube's blocks.
    """
    base = [o // c for o, c in zip(origin, chunks, strict=True)]
    return {
        tuple(b + i for b, i in zip(base, index, strict=True)): checksum(data[block])
        for index, block in block_grid(data.shape, chunks)
    }
