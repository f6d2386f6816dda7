"""One worker's sharded write and read, in process: zarr_direct against tensorstore on the same shards.

    python benchmarks/bench_shards.py [--mib 256] [--repeats 5] [--chunks balanced single_frame]
                                      [--scratch DIR] [--json FILE]

A synthetic 4d_diff cube (about ``--mib`` MiB of 256 x 256 uint16 frames) written and read as ``zarr: {shards:
true}`` stores it (each chunking's block one shard of its frame-sized inner chunks: balanced 16 x 16 x 128 x 128
shards of 128 x 128 inner chunks; single_frame one frame per shard), with blosc-lz4 and blosc-zstd. Each pass
calls the backends' own worker functions (``_write_batch``, ``_read_batch``) on the task batches a 2-worker cluster
would get, in this one thread: no Dask, no scheduler, so the time is the worker's. The cube is staged as the runner
stages it (balanced: a chunk-major copy by shard). One codec thread, as on the workers; tensorstore with
``data_copy_concurrency`` 1 and ``file_io_concurrency`` 2 (cubebench's defaults). A write ends when its shard
files are fsynced, as a cell's does. Warm page cache; one untimed pass of each first, then the passes of both
backends alternate. Prints per pass the median over ``--repeats`` (ms, ms per shard, GiB/s) and the CPU time per
wall second of this process (tensorstore's threads count in it). With ``--scratch``, the staged cube stays there
for the next run (of this or another checkout: ``PYTHONPATH=other/src``), so runs can alternate between versions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from cubebench.cube import StagedCube

CODECS = ["blosc-lz4", "blosc-zstd"]
KINDS = ["zarr_direct", "tensorstore"]
#: Chunking -> (shard, inner chunk), as ``ZarrBackend._layout`` makes them for 256 x 256 frames.
SHARDS = {
    "balanced": ((16, 16, 128, 128), (1, 1, 128, 128)),
    "single_frame": ((1, 1, 256, 256), (1, 1, 256, 256)),
}
WORKERS = 2
#: tensorstore's store options: write_empty_chunks, data_copy_concurrency, file_io_concurrency.
TS_OPTIONS = (True, 1, 2)
GIB = 2**30


def make_cube(mib: int, folder: Path) -> StagedCube:
    """The cube as a ``.npy`` (made once per folder): scan rows of 32 frames, a multiple of 16 of them."""
    import cubebench
    from cubebench.cube import StagedCube

    sx = 32
    sy = max(16, mib * 2**20 // (sx * 256 * 256 * 2) // 16 * 16)
    shape = (sy, sx, 256, 256)
    path = folder / f"cube-{sy}x{sx}.npy"
    if not path.exists():
        np.save(path, np.asarray(cubebench.open_cube({"preset": "4d_diff", "shape": list(shape), "name": "x"}).data))
    return StagedCube(path, shape, "<u2", "x")


def chunk_major(staged: StagedCube, shard: tuple[int, ...]) -> StagedCube:
    """``staged`` reading each shard from a chunk-major copy beside it (made once), as the runner stages it."""
    from cubebench.cube import block_grid, grid_counts, is_contiguous

    if is_contiguous(tuple(slice(0, s) for s in shard), staged.shape):
        return staged  # whole frames lie in one run already
    path = staged.path.with_suffix(".{}.npy".format("x".join(map(str, shard))))
    if not path.exists():
        data = np.load(staged.path, mmap_mode="r")
        copy = np.lib.format.open_memmap(
            path, mode="w+", dtype=data.dtype, shape=grid_counts(staged.shape, shard) + shard
        )
        for index, block in block_grid(staged.shape, shard):
            copy[index] = data[block]
        copy.flush()
        del copy
    return staged.with_layout(path, shard)


def passes(kind: str, codec: str, chunks: str, staged: StagedCube, folder: Path) -> dict[str, Callable[[], Any]]:
    """The write (into the store ``fresh`` makes) and the read of one backend, codec and chunking: whole passes."""
    from cubebench.backends import tensorstore_ as ts
    from cubebench.backends import zarr_direct as zd
    from cubebench.backends.zarr_ import create_store
    from cubebench.codecs import get_codec
    from cubebench.fileio import wait_synced
    from cubebench.parallel import SCAN_BATCH_BYTES, SCAN_BATCHES_PER_THREAD, batches

    shard, inner = SHARDS[chunks]
    dtype = np.dtype(staged.dtype)
    groups = batches(staged.shape, shard, dtype.itemsize, SCAN_BATCH_BYTES, SCAN_BATCHES_PER_THREAD * WORKERS)
    target = folder / f"{kind}-{codec}-{chunks}.zarr"

    def fresh() -> Any:
        shutil.rmtree(target, ignore_errors=True)
        if kind == "tensorstore":
            ts.create(target, staged.shape, dtype, get_codec(codec), inner, shard)
            return None
        return create_store(target, staged.shape, dtype, get_codec(codec), inner, shard)

    def synced() -> None:
        asyncio.run(wait_synced(str(target)))

    if kind == "tensorstore":
        return {
            "write": lambda: ([ts._write_batch(g, staged, str(target), TS_OPTIONS) for g in groups], synced()),
            "read": lambda: [ts._read_batch(g, str(target), TS_OPTIONS) for g in groups],
            "fresh": fresh,
        }
    array = fresh()
    layout = zd._Layout.of(array, codec, str(target))
    work = [[(index, block, array.metadata.encode_chunk_key(index)) for index, block in g] for g in groups]
    return {
        "write": lambda: ([zd._write_batch(g, staged, layout, True) for g in work], synced()),
        "read": lambda: [zd._read_batch(g, layout) for g in work],
        "fresh": fresh,
    }


def measure(mib: int, repeats: int, chunkings: list[str], scratch: str | None) -> dict[str, Any]:
    """Median seconds per pass and CPU seconds per wall second, per chunking, codec, operation and backend."""
    import tensorstore  # noqa: F401  (loaded before the clock)

    from cubebench.codecs import set_codec_threads
    from cubebench.cube import grid_counts

    set_codec_threads(1)
    report: dict[str, Any] = {"repeats": repeats, "cells": []}
    with contextlib.ExitStack() as stack:
        folder = Path(scratch) if scratch else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        cube = make_cube(mib, folder)
        report.update(shape=list(cube.shape), gib=cube.nbytes / GIB)
        print(f"cube {cube.shape} ({cube.nbytes / GIB:.3f} GiB)", flush=True)
        for chunks in chunkings:
            staged = chunk_major(cube, SHARDS[chunks][0])
            shards = int(np.prod(grid_counts(cube.shape, SHARDS[chunks][0])))
            for codec in CODECS:
                work = {kind: passes(kind, codec, chunks, staged, folder) for kind in KINDS}
                for op in ("write", "read"):
                    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
                    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
                    for repeat in range(repeats + 1):
                        for kind in KINDS:
                            if op == "write":
                                work[kind]["fresh"]()
                            start, start_cpu = time.perf_counter(), time.process_time()
                            work[kind][op]()
                            if repeat:  # the first pass loads libraries and fills caches
                                seconds[kind].append(time.perf_counter() - start)
                                cpu[kind].append(time.process_time() - start_cpu)
                    for kind in KINDS:
                        report["cells"].append(cell(chunks, codec, op, kind, shards, cube.nbytes, seconds, cpu))
    return report


def cell(
    chunks: str,
    codec: str,
    op: str,
    kind: str,
    shards: int,
    nbytes: int,
    seconds: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> dict[str, Any]:
    """One line of the report, printed as it comes."""
    median = statistics.median(seconds[kind])
    out = {
        "chunks": chunks,
        "codec": codec,
        "op": op,
        "backend": kind,
        "shards": shards,
        "seconds": median,
        "ms_per_shard": median / shards * 1e3,
        "GiBps": nbytes / GIB / median,
        "cpu_per_wall": statistics.median(cpu[kind]) / median,
        "all_seconds": seconds[kind],
    }
    print(
        f"{chunks:12s} {codec:11s} {op:5s} {kind:12s} {median * 1e3:8.1f} ms {out['ms_per_shard']:7.3f} ms/shard"
        f"  {out['GiBps']:5.2f} GiB/s  cpu/wall {out['cpu_per_wall']:.2f}",
        flush=True,
    )
    return out


def main() -> None:
    """Parse the arguments, measure, print, and write the JSON if asked."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=256, help="cube size in MiB (default 256)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per cell (median; default 5)")
    p.add_argument("--chunks", nargs="+", choices=list(SHARDS), default=list(SHARDS), help="chunkings (shards)")
    p.add_argument("--scratch", default=None, help="folder for the cube and stores, kept (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = p.parse_args()
    report = measure(args.mib, args.repeats, args.chunks, args.scratch)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
