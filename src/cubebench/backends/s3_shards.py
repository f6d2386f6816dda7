"""Partial reads of Zarr shards on S3: the shard's index by one suffix-ranged GET, then only the inner chunks a
selection needs by ranged GETs, as zarr-python's sharding codec reads them (a whole shard may hold hundreds of
frames; a single-frame read should not fetch them all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cubebench.storage import get_range, get_suffix

if TYPE_CHECKING:
    from cubebench.codecs import ChunkEncoder
    from cubebench.cube import Block
    from cubebench.storage import RequestCounter, S3Storage

#: An index entry of an inner chunk that is not stored (Zarr's sharding specification).
MISSING = 2**64 - 1


def _overlaps(block: Block, origin: tuple[int, ...], window: tuple[slice, ...]) -> bool:
    return all(b.start + o < w.stop and w.start < b.stop + o for b, o, w in zip(block, origin, window, strict=True))


def fetch_shard_window(
    storage: S3Storage,
    key: str,
    grid: list[tuple[tuple[int, ...], Block]],
    origin: tuple[int, ...],
    window: tuple[slice, ...],
    counter: RequestCounter | None = None,
) -> dict[int, bytes | None] | None:
    """The stored bytes of the inner chunks of shard ``key`` (at ``origin``; inner ``grid`` in index order) that
    overlap ``window`` (absolute slices): None for one not stored; None for all when the shard is not stored."""
    import google_crc32c

    tail = get_suffix(storage, key, 16 * len(grid) + 4, counter)
    if tail is None:
        return None
    raw, crc = tail[:-4], np.frombuffer(tail[-4:], dtype="<u4")[0]
    if google_crc32c.value(raw) != crc:
        raise OSError(f"{key}: the shard index fails its CRC-32C check")
    index = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    parts: dict[int, bytes | None] = {}
    for n, (_, block) in enumerate(grid):
        if _overlaps(block, origin, window):
            offset, nbytes = (int(v) for v in index[n])
            stored = offset != MISSING
            parts[n] = get_range(storage, key, offset, nbytes, counter) if stored else None
    return parts


def decode_shard_window(
    parts: dict[int, bytes | None] | None,
    grid: list[tuple[tuple[int, ...], Block]],
    encoder: ChunkEncoder,
    out: np.ndarray,
) -> None:
    """Decode the fetched inner chunks into ``out`` (the shard's buffer); chunks not stored are the fill value."""
    if parts is None:
        out[...] = 0
        return
    for n, data in parts.items():
        target = out[grid[n][1]]
        if data is None:
            target[...] = 0
        else:
            encoder.decode(data, target)
