"""HDF5 on several writers: hdf5, hdf5_direct and hdf5_vds writes and reads against the bare pipeline.

One synthetic 4d_diff cube (1 GiB by default), blosc-zstd and blosc-lz4, balanced and single-frame chunks, 2 worker
processes, warm page cache. Beside each chunking, the bare pipeline of ``benchmarks/bench_throughput.py`` (two
processes read a chunk-major copy, encode, append to a file of their own and fdatasync; then read, decode and
hash; no Dask, no single writer): the bound of any implementation here. And the bound of any HDF5 writer: the
same two processes writing into an HDF5 file each with h5py's direct chunk writes (the chunk index HDF5 keeps,
no framework; ``bare HDF5``). Prints a Markdown table (for docs/scaling.md) and the command; writes the numbers
as JSON.

    python benchmarks/bench_vds.py --gib 1 --runs 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_throughput import GB, GIB, bare_pipeline, make_cube, run_cubebench, stage_chunk_major
from cubebench.chunking import resolve_chunks
from cubebench.cube import block_grid

BACKENDS = ["hdf5", "hdf5_direct", "hdf5_vds"]
CODECS = ["blosc-zstd", "blosc-lz4"]
CHUNKS = ["balanced", "single_frame"]
WORKERS = 2


def bare_hdf5(
    source: Path, cube: tuple[int, ...], chunks: tuple[int, ...], folder: Path, codecs: list[str], repeats: int
) -> dict[str, float]:
    """Write GiB/s of two plain processes that each store every other chunk of the chunk-major copy ``source`` in
    an HDF5 file of their own (``write_direct_chunk`` of the catalog encoder's bytes, flush and fsync at the end);
    median of ``repeats``."""
    out: dict[str, float] = {}
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        for cid in codecs:
            rates = []
            for _ in range(repeats):
                start_at = time.time() + 1.0
                args = [(source, folder, cid, cube, chunks, part, start_at) for part in range(WORKERS)]
                parts = pool.map(_bare_hdf5_share, args)
                rates.append(sum(p[0] for p in parts) / max(p[1] for p in parts) / GIB)
            out[cid] = float(np.median(rates))
        pool.close()
        pool.join()
    return out


def _bare_hdf5_share(args: tuple[Path, Path, str, tuple[int, ...], tuple[int, ...], int, float]) -> tuple[int, float]:
    """One process of :func:`bare_hdf5`: (raw bytes stored, seconds)."""
    import h5py

    from cubebench.backends.hdf5_filter import create_emd_dataset
    from cubebench.codecs import get_codec, set_codec_threads

    source, folder, cid, cube, chunks, part, start_at = args
    set_codec_threads(1)
    dtype = np.dtype("uint16")
    codec = get_codec(cid)
    encoder = codec.encoder(dtype)
    buf = np.empty(chunks, dtype)
    target = folder / f"bare-{cid}-{part}.h5"
    grid = block_grid(cube, chunks)
    while time.time() < start_at:  # the processes start together
        pass
    start = time.perf_counter()
    src = os.open(source, os.O_RDONLY)
    try:
        with h5py.File(target, "w") as f:
            ds = create_emd_dataset(f, cube, dtype, chunks, codec)
            for i in range(part, len(grid), WORKERS):
                os.preadv(src, [buf.data], i * buf.nbytes)
                ds.id.write_direct_chunk(tuple(b.start for b in grid[i][1]), encoder.encode(buf))
            f.flush()
            os.fsync(f.id.get_vfd_handle())
    finally:
        os.close(src)
    seconds = time.perf_counter() - start
    target.unlink()
    return len(range(part, len(grid), WORKERS)) * buf.nbytes, seconds


def measure(gib: float, runs: int, scratch: str | None) -> dict[str, Any]:
    """Run the matrix through cubebench and the bare pipeline per chunking; medians over ``runs``."""
    report: dict[str, Any] = {"gib": gib, "runs": runs, "workers": WORKERS, "bare": {}, "cells": []}
    with tempfile.TemporaryDirectory(prefix="cubebench-vds-", dir=scratch) as tmp:
        folder = Path(tmp)
        path = make_cube(gib, folder)
        shape = np.load(path, mmap_mode="r").shape
        report["shape"] = list(shape)
        print(f"cube: {path.stat().st_size / GIB:.3f} GiB {shape}", flush=True)
        for chunk in CHUNKS:
            chunks = resolve_chunks(chunk, shape)
            source = stage_chunk_major(path, chunks, folder)
            bare = bare_pipeline(source, chunks, folder, CODECS, WORKERS, repeats=runs)
            hdf5 = bare_hdf5(source, shape, chunks, folder, CODECS, runs)
            source.unlink()
            report["bare"][chunk] = {
                cid: {
                    "write_GiBps": v["write_GBps"] * GB / GIB,
                    "read_GiBps": v["read_GBps"] * GB / GIB,
                    "hdf5_write_GiBps": hdf5[cid],
                }
                for cid, v in bare.items()
            }
        matrix = run_cubebench(path, BACKENDS, CODECS, CHUNKS, runs, WORKERS, folder / "matrix")
        ds = matrix["ds"]
        report["peak_rss_all_processes"] = matrix["peak_rss"]
        for chunk in CHUNKS:
            for cid in CODECS:
                for backend in BACKENDS:
                    cell = ds.sel(dataset="bench", backend=backend, codec=cid, chunk=chunk)
                    ok = (cell["status"] == "ok") & cell["verified"]
                    report["cells"].append(
                        {
                            "chunk": chunk,
                            "codec": cid,
                            "backend": backend,
                            "verified_runs": int(ok.sum()),
                            "write_GiBps": float(cell["write_GiBps"].where(ok).median()),
                            "read_GiBps": float(cell["read_GiBps"].where(ok).median()),
                            "peak_memory_GiB": float(cell["peak_memory_bytes"].where(ok).max()) / GIB,
                        }
                    )
    return report


def table(report: dict[str, Any]) -> str:
    """The Markdown table: per chunking and codec, the bare pipeline, then each backend and its share of it."""
    lines = [
        "| chunks | codec | path | write GiB/s | read GiB/s | write / bare | write / bare HDF5 | read / bare "
        "| peak memory (GiB) |",
        "|:---|:---|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for chunk in CHUNKS:
        for cid in CODECS:
            bare = report["bare"][chunk][cid]
            h5 = bare["hdf5_write_GiBps"]
            lines.append(
                f"| {chunk} | {cid} | bare pipeline | {bare['write_GiBps']:.3g} | {bare['read_GiBps']:.3g} | 1 | "
                f"{bare['write_GiBps'] / h5:.2f} | 1 | |"
            )
            lines.append(f"| {chunk} | {cid} | bare HDF5 | {h5:.3g} | | {h5 / bare['write_GiBps']:.2f} | 1 | | |")
            for cell in report["cells"]:
                if cell["chunk"] != chunk or cell["codec"] != cid:
                    continue
                w, r = cell["write_GiBps"], cell["read_GiBps"]
                lines.append(
                    f"| {chunk} | {cid} | {cell['backend']} | {w:.3g} | {r:.3g} | {w / bare['write_GiBps']:.2f} | "
                    f"{w / h5:.2f} | {r / bare['read_GiBps']:.2f} | {cell['peak_memory_GiB']:.2f} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="cube size in GiB (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per cell, medians reported (default 3)")
    parser.add_argument("--out", default="benchmarks/out/vds.json")
    parser.add_argument("--scratch", default=None, help="folder for the cube and the stores (default: the temp dir)")
    args = parser.parse_args()
    report = measure(args.gib, args.runs, args.scratch)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"\n`python benchmarks/bench_vds.py --gib {args.gib:g} --runs {args.runs}` ({WORKERS} worker processes):\n")
    print(table(report))


if __name__ == "__main__":
    main()
