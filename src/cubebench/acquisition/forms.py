"""Reduced representations as acquisition pipelines: ``bin<k>-sum``/``bin<k>-mean`` and ``events``, on the fly.

The workers transform each completed chunk of whole frames with the representation's own transform
(:meth:`cubebench.sufficiency.representations.Layout.transform`), then encode and store it:

- ``bin<k>``: a dense cube ``(scan_y, scan_x, det_y/k, det_x/k)`` in the sum's (or mean's) dtype, chunked like
  the source chunk's scan part with the binned detector, through ``hdf5_direct`` or ``zarr_direct``;
- ``events``: per chunk of probe positions a group ``events/<r>_<c>`` holding the non-zero pixels' ``y``, ``x``
  (uint16) and ``count`` as one-chunk datasets encoded on the workers, and the per-frame event counts in
  ``events/frame_counts`` (scan_y, scan_x): an HDF5 file through ``hdf5_direct`` (here), a Zarr v3 hierarchy
  through ``zarr_direct`` (:mod:`~cubebench.acquisition.zarr_events`). Rates stay in source frames per second.

Verification compares each stored chunk with the transform of the source chunk (its form's XXH3-64), so the
reduced file is checked as strictly as a lossless one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import encoder_for, padded
from cubebench.cube import checksum
from cubebench.errors import CodecUnavailableError
from cubebench.parallel import run_batches, scan_batches
from cubebench.sufficiency.representations import Layout, form_checksum, get_representation

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.cube import Block, StagedCube

ChunkIndex = tuple[int, ...]
#: Representation families that run as acquisition pipelines.
FAMILIES = ("bin", "events")
EVENTS_GROUP = "events"


def parse_pipeline(label: str) -> tuple[str | None, str]:
    """``"bin2-sum+blosc-lz4"`` -> ``("bin2-sum", "blosc-lz4")``; a plain codec id -> ``(None, codec)``."""
    if "+" in label:
        rep, codec = label.split("+", 1)
        return rep, codec
    return None, label


def pipeline_layout(rep_id: str, backend: str, staged: StagedCube, chunks: tuple[int, ...], codec_id: str) -> Layout:
    """The representation's layout for this cube and chunk, or ``CodecUnavailableError`` with the reason."""
    spec = get_representation(rep_id)
    if spec.family not in FAMILIES:
        raise CodecUnavailableError(f"{rep_id}: only {', '.join(FAMILIES)} run as acquisition pipelines")
    if tuple(chunks[2:]) != tuple(staged.shape[2:]):
        raise CodecUnavailableError(f"{rep_id}: needs chunks of whole frames (the detector is not split)")
    return spec.layout(staged.shape, staged.dtype, max_value=None, chunks=chunks, codec=codec_id)


def encode_dense(
    items: list[tuple[ChunkIndex, Block]], staged: StagedCube, codec_id: str, layout: Layout, zarr: bool
) -> list[Any]:
    """A task's chunks transformed and encoded: (index, chunk offset, uint8 array of the stored bytes)."""
    chunks = layout.stored_chunks
    encoder = encoder_for(codec_id, layout.stored_dtype, zarr=zarr)
    blocks = [block for _, block in items]
    out = []
    for (index, block), data in zip(items, staged.iter_blocks(blocks), strict=True):
        form = padded(layout.transform(data)["data"], chunks)
        out.append((index, tuple(b.start for b in block), np.frombuffer(encoder.encode(form), dtype=np.uint8)))
    return out


def encode_events(
    items: list[tuple[ChunkIndex, Block]], staged: StagedCube, codec_id: str, layout: Layout
) -> list[Any]:
    """A task's chunks as events: (index, block origin, frame counts, {name: (length, dtype, bytes or None)})."""
    blocks = [block for _, block in items]
    out = []
    for (index, block), data in zip(items, staged.iter_blocks(blocks), strict=True):
        form = layout.transform(data)
        arrays = {}
        for name in ("y", "x", "count"):
            array = np.ascontiguousarray(form[name])
            encoded = encoder_for(codec_id, array.dtype.str).encode(array) if array.size else None
            arrays[name] = (array.size, array.dtype.str, None if encoded is None else np.frombuffer(encoded, np.uint8))
        out.append((index, (block[0].start, block[1].start), form["frame_counts"], arrays))
    return out


def expected_sums(client: Client, staged: StagedCube, chunks: tuple[int, ...], layout: Layout) -> dict[ChunkIndex, int]:
    """Each chunk's expected hash: the dense stored chunk's (bin), or the events form's."""
    sums: dict[ChunkIndex, int] = {}
    work = scan_batches(client, staged.shape, chunks, np.dtype(staged.dtype).itemsize)
    for result in run_batches(client, _expected_batch, work, staged, layout):
        sums.update(result)
    return sums


def _expected_batch(group: list[tuple[ChunkIndex, Block]], staged: StagedCube, layout: Layout) -> dict[ChunkIndex, int]:
    blocks = [block for _, block in group]
    out = {}
    for (index, _), data in zip(group, staged.iter_blocks(blocks), strict=True):
        form = layout.transform(data)
        out[index] = form_checksum(form) if layout.kind == "events" else checksum(form["data"])
    return out


def read_events(target: Path, chunks: tuple[int, ...], codec_id: str) -> dict[ChunkIndex, int]:
    """Read every events group of ``target`` back (plain h5py + the filter) and hash each chunk's form."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filters)

    sums: dict[ChunkIndex, int] = {}
    with h5py.File(target, "r") as f:
        group = f[EVENTS_GROUP]
        counts = group["frame_counts"]
        for name in group:
            if name == "frame_counts":
                continue
            r, c = (int(v) for v in name.split("_"))
            ys = slice(r * chunks[0], (r + 1) * chunks[0])
            xs = slice(c * chunks[1], (c + 1) * chunks[1])
            form = {"frame_counts": counts[ys, xs], **{k: group[name][k][...] for k in ("y", "x", "count")}}
            sums[(r, c, 0, 0)] = form_checksum(form)
    return sums


def create_events_file(f: Any, shape: tuple[int, ...], layout: Layout, codec_id: str) -> Any:
    """The events group and its per-frame count dataset; returns the group."""
    group = f.require_group(EVENTS_GROUP)
    group.attrs["cubebench_representation"] = layout.spec.id
    group.attrs["cubebench_codec"] = codec_id
    group.attrs["detector_shape"] = list(shape[2:])
    group.create_dataset("frame_counts", shape=shape[:2], dtype="uint32")
    return group


def store_events(group: Any, result: Any, codec_id: str) -> ChunkIndex:
    """Write one chunk's events (from :func:`encode_events`) into ``group``; return its chunk index."""
    from cubebench.codecs import get_codec

    index, (y0, x0), counts, arrays = result
    group["frame_counts"][y0 : y0 + counts.shape[0], x0 : x0 + counts.shape[1]] = counts
    sub = group.require_group(f"{index[0]}_{index[1]}")
    for name, (length, dtype, data) in arrays.items():
        if data is None:
            sub.create_dataset(name, shape=(0,), dtype=dtype)
            continue
        ds = sub.create_dataset(
            name, shape=(length,), dtype=dtype, chunks=(length,), **get_codec(codec_id).hdf5_filter(np.dtype(dtype))
        )
        ds.id.write_direct_chunk((0,), data)
    return tuple(index)
