"""The ``events`` representation through ``zarr_direct``: a Zarr v3 hierarchy written chunk by chunk by the workers.

The same layout as the HDF5 events file (:mod:`~cubebench.acquisition.forms`): a group ``events`` holding
``frame_counts`` (scan_y, scan_x; uint32, chunked like the scan part of the source chunk) and, per chunk of
probe positions, a group ``events/<r>_<c>`` with the non-zero pixels' ``y``, ``x`` (uint16) and ``count``, each
a one-chunk array (no chunk file when empty). This process creates the root, the ``events`` group and
``frame_counts`` before the clock starts; a worker creates each chunk's group and arrays (their lengths are
known only after the transform), writes the encoded chunk files and ``frame_counts``' chunk, and fsyncs every new
file and then every new folder, deepest first. Plain ``zarr`` reads the result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.acquisition.forms import EVENTS_GROUP
from cubebench.backends.base import encoder_for, padded
from cubebench.codecs import get_codec, stores_raw
from cubebench.fileio import fsync_tree, fsync_written
from cubebench.sufficiency.representations import form_checksum

if TYPE_CHECKING:
    from cubebench.codecs import CodecSpec
    from cubebench.cube import Block, StagedCube
    from cubebench.sufficiency.representations import Layout

ChunkIndex = tuple[int, ...]
FIELDS = ("y", "x", "count")


def create_events_store(
    target: Path, shape: tuple[int, ...], chunks: tuple[int, ...], layout: Layout, codec: CodecSpec
) -> Any:
    """The root group, ``events`` (with the representation's attributes) and ``frame_counts``; returns that array."""
    import zarr

    root = zarr.open_group(str(target), mode="w", zarr_format=3)
    group = root.create_group(EVENTS_GROUP)
    group.attrs.update(
        cubebench_representation=layout.spec.id, cubebench_codec=codec.id, detector_shape=list(shape[2:])
    )
    counts = group.create_array(
        "frame_counts",
        shape=shape[:2],
        chunks=chunks[:2],
        dtype="uint32",
        fill_value=0,
        dimension_names=("scan_y", "scan_x"),
        **codec.zarr_kwargs(np.dtype("uint32")),
    )
    fsync_tree(target)
    return counts


def write_events(
    work: list[tuple[ChunkIndex, Block, str]],
    staged: StagedCube,
    root: str,
    codec_id: str,
    chunks: tuple[int, ...],
    layout: Layout,
) -> int:
    """Transform each chunk into events, store its group and its ``frame_counts`` chunk (at the given key), fsync
    everything new; the number of chunks."""
    import zarr

    codec = get_codec(codec_id)
    events: Any = zarr.open_group(root, mode="r+", zarr_format=3)[EVENTS_GROUP]
    files: list[str] = []
    folders: set[str] = set()
    blocks = [block for _, block, _ in work]
    for (index, _, key), data in zip(work, staged.iter_blocks(blocks), strict=True):
        form = layout.transform(data)
        name = f"{index[0]}_{index[1]}"
        sub = events.create_group(name, overwrite=True)
        for field in FIELDS:
            array = np.ascontiguousarray(form[field])
            stored = sub.create_array(
                field,
                shape=array.shape,
                chunks=(max(1, array.size),),
                dtype=array.dtype,
                fill_value=0,
                **codec.zarr_kwargs(array.dtype),
            )
            if array.size:
                chunk_key = stored.metadata.encode_chunk_key((0,))
                files.append(_write_chunk(root, f"{EVENTS_GROUP}/{name}/{field}", chunk_key, array, codec_id))
        counts = padded(np.ascontiguousarray(form["frame_counts"], dtype=np.uint32), tuple(chunks[:2]))
        files.append(_write_chunk(root, f"{EVENTS_GROUP}/frame_counts", key, counts, codec_id))
        group_dir = os.path.join(root, EVENTS_GROUP, name)
        files += [str(p) for p in Path(group_dir).rglob("zarr.json")]
        folders.update(str(p) for p in Path(group_dir).rglob("*") if p.is_dir())
        folders.add(group_dir)
    fsync_written(files, folders, root)
    return len(work)


def _write_chunk(root: str, array_path: str, key: str, data: np.ndarray, codec_id: str) -> str:
    encoder = encoder_for(codec_id, data.dtype.str, zarr=True)
    payload: Any = data if stores_raw(encoder) else encoder.encode(data)
    path = os.path.join(root, array_path, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(memoryview(payload).cast("B"))
    return path


def read_zarr_events(target: Path, chunks: tuple[int, ...]) -> dict[ChunkIndex, int]:
    """Read every events group of ``target`` back with plain zarr and hash each chunk's form."""
    import zarr

    group: Any = zarr.open_group(str(target), mode="r", zarr_format=3)[EVENTS_GROUP]
    counts: Any = group["frame_counts"]
    sums: dict[ChunkIndex, int] = {}
    sub: Any
    for name, sub in group.groups():
        r, c = (int(v) for v in name.split("_"))
        ys = slice(r * chunks[0], (r + 1) * chunks[0])
        xs = slice(c * chunks[1], (c + 1) * chunks[1])
        form = {"frame_counts": counts[ys, xs], **{k: sub[k][...] for k in FIELDS}}
        sums[(r, c, 0, 0)] = form_checksum(form)
    return sums
