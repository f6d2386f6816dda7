"""Estimate a cell's time before running it, from a small sample of the staged cube.

A few frames are encoded and decoded in-process with the codec's chunk encoder; the cell time is the cube's
size over those speeds, divided by the parallelism the backend can use (one core for the HDF5 filter path),
plus a disk floor. Good enough to skip a gzip-9 cell that would take an hour, and to give the progress bar an
ETA; not a measurement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cubebench.errors import CodecUnavailableError

if TYPE_CHECKING:
    from cubebench.codecs import CodecSpec
    from cubebench.cube import Block, StagedCube

#: Raw bytes sampled per estimate (a few frames from spread-out probe positions).
SAMPLE_BYTES = 2 * 2**20
#: Places in the scan the sampled frames come from (each a run of neighbouring frames).
SAMPLE_SPOTS = 4
#: Disk floor assumed for the write + read of the compressed bytes (GB/s).
DISK_GBPS = 1.0
#: Seconds every cell costs beyond its bytes and chunks (tasks, file creation, verification, fsync): the quick
#: experiment's 468 cells of 8 MiB ran 82 s here against 26 s of estimated codec and disk time.
CELL_SECONDS = 0.1


@dataclass(frozen=True)
class CodecSpeed:
    """Measured on a sample: bytes in per second for encode and decode, and the sample's ratio."""

    encode_Bps: float
    decode_Bps: float
    ratio: float


def sample_blocks(
    shape: tuple[int, ...], dtype: str, limit: int = SAMPLE_BYTES, spots: int = SAMPLE_SPOTS
) -> list[Block]:
    """Runs of neighbouring frames at ``spots`` probe positions spread along the scan's diagonal, about ``limit``
    bytes in all.

    Runs rather than single frames: a lazily opened source (a synthetic preset, a compressed file) produces a
    whole chunk of frames for any one of them, so a few runs read a few chunks where frames spread one by one
    would read one chunk each (16 frames of the full-size ``4d_diff`` preset: 8.6 s spread, about 2 s in runs).
    """
    sy, sx = shape[:2]
    frame_bytes = int(np.prod(shape[2:])) * np.dtype(dtype).itemsize
    n = int(max(1, min(sy * sx, limit // max(1, frame_bytes))))
    spots = max(1, min(spots, n, sy))
    run = min(sx, -(-n // spots))
    rows = np.linspace(0, sy - 1, spots).astype(int)
    starts = np.linspace(0, sx - run, spots).astype(int)
    return [(slice(int(y), int(y) + 1), slice(int(x), int(x) + run)) for y, x in zip(rows, starts, strict=True)]


def stack_frames(frames: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Sampled runs of frames as one array of shape ``(1, n, det_y, det_x)``, the shape a chunk encoder takes."""
    joined = np.concatenate([np.asarray(f).reshape(-1, *shape[2:]) for f in frames], axis=0)
    return np.ascontiguousarray(joined.reshape(1, -1, *shape[2:]))


def sample_frames(staged: StagedCube, limit: int = SAMPLE_BYTES) -> np.ndarray:
    """Frames from probe positions spread over the scan of a staged cube (see :func:`sample_blocks`)."""
    blocks = sample_blocks(staged.shape, staged.dtype, limit)
    return stack_frames([staged.read_block(block) for block in blocks], staged.shape)


def measure_speed(codec: CodecSpec, sample: np.ndarray) -> CodecSpeed | None:
    """Encode and decode ``sample`` once with ``codec``; None when it has no chunk encoder here."""
    try:
        encoder = codec.encoder(sample.dtype)
    except CodecUnavailableError:
        return None
    start = time.perf_counter()
    data = encoder.encode(sample)
    encode = time.perf_counter() - start
    out = np.empty_like(sample)
    start = time.perf_counter()
    encoder.decode(data, out)
    decode = time.perf_counter() - start
    nbytes = sample.nbytes
    return CodecSpeed(nbytes / max(encode, 1e-9), nbytes / max(decode, 1e-9), nbytes / max(1, len(data)))


def estimate_cell_seconds(
    nbytes: int, speed: CodecSpeed | None, parallelism: int, chunks: int, chunk_seconds: float
) -> float:
    """Seconds to write and read ``nbytes`` at ``speed`` on ``parallelism`` cores, stored as ``chunks`` chunks
    that cost ``chunk_seconds`` each (the backend's :attr:`~cubebench.backends.Backend.chunk_seconds`); NaN
    when the codec's speed is unknown."""
    if speed is None:
        return float("nan")
    cores = max(1, parallelism)
    codec = nbytes / speed.encode_Bps / cores + nbytes / speed.decode_Bps / cores
    disk = 2 * nbytes / speed.ratio / (DISK_GBPS * 1e9)
    return codec + disk + chunks * chunk_seconds + CELL_SECONDS
