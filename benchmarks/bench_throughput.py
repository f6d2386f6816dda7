"""Throughput, efficiency, scaling and memory of cubebench against the codecs' own speed and a study-style script.

All measured in one run, on one synthetic cube, warm page cache, on this machine (ratios side by side, so that
the noise of a shared machine hits every number alike). Prints Markdown tables for README.md and writes the raw
numbers as JSON.

    python benchmarks/bench_throughput.py --gib 1 --out benchmarks/out/throughput.json

Sections:
1. raw codec speed: encode/decode GB/s of each codec's chunk encoder, in-process, one core (the ceiling), the
   codec alone on both cores at once, and zarr-python's own per-chunk path on one core (the ceiling of anything
   that goes through zarr's API);
2. cubebench write/read GiB/s per backend and codec, and efficiency = throughput / (raw speed x cores used),
   with the LocalCluster's 2 workers as processes (the default) and as threads (``processes: false``); the
   one-core speed is measured again after each of the two matrix runs, and each run's efficiency is taken
   against the mean of the measurements just before and just after it; beside it, the same work with no Dask
   and no single writer (two bare processes reading, encoding and writing, then reading, decoding and hashing
   the chunks), also measured before and after each matrix run: what any implementation gets from this machine;
3. a study-style baseline: load the whole cube, then for each codec and chunking ``create_dataset(data=...)``
   serially and read back with ``ds[:]``; against cubebench (hdf5_direct, both kinds of workers) on the same
   matrix: wall time and peak memory of all processes;
4. scaling: the same blosc-zstd cell on 1 and 2 workers, through `zarr` and the codec-bound `zarr_direct`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from cubebench.chunking import resolve_chunks
from cubebench.codecs import get_codec
from cubebench.cube import block_grid, checksum
from cubebench.memory import tree_rss

CODECS = ["blosc-zstd", "blosc-lz4"]
#: The LocalCluster's workers: ``cluster.processes`` of each kind.
WORKER_KINDS = {"processes": True, "threads": False}
BASELINE_CODECS = ["blosc-zstd", "blosc-lz4", "gzip-1"]
BASELINE_CHUNKS = ["real_space", "balanced"]
GB = 1e9
GIB = 2**30


def make_cube(gib: float, folder: Path) -> Path:
    """Generate the synthetic 4d_diff cube of about ``gib`` GiB once, as .npy (shared by every section)."""
    import dask

    import cubebench

    frames = int(gib * GIB) // (256 * 256 * 2)
    sy = 128
    sx = max(1, frames // sy)
    cube = cubebench.open_cube({"preset": "4d_diff", "shape": [sy, sx, 256, 256], "name": "bench"})
    path = folder / "bench.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=cube.data.dtype, shape=cube.data.shape)
    with dask.config.set(scheduler="threads", num_workers=2):
        cube.data.store(out, lock=False)
    out.flush()
    del out
    return path


def _chunks_of(path: Path, part: int = 0, parts: int = 1) -> list[np.ndarray]:
    """Every ``parts``-th balanced chunk of the cube from ``part`` on, gathered in memory (outside any timing)."""
    cube = np.load(path, mmap_mode="r")
    grid = block_grid(cube.shape, resolve_chunks("balanced", cube.shape))
    return [np.ascontiguousarray(cube[block]) for _, block in grid[part::parts]]


def _encode_decode(cid: str, blocks: list[np.ndarray], repeats: int, start_at: float = 0.0) -> dict[str, float]:
    """Median encode and decode GB/s of ``cid`` over ``blocks`` on this core (``start_at``: a shared start time)."""
    from cubebench.codecs import set_codec_threads

    set_codec_threads(1)
    enc = get_codec(cid).encoder(blocks[0].dtype)
    nbytes = sum(b.nbytes for b in blocks)
    encode, decode = [], []
    buf = np.empty_like(blocks[0])
    for _ in range(repeats):
        while time.time() < start_at:  # parallel runs start together
            pass
        start = time.perf_counter()
        data = [enc.encode(b) for b in blocks]
        encode.append(time.perf_counter() - start)
        start = time.perf_counter()
        for d in data:
            enc.decode(d, buf)
        decode.append(time.perf_counter() - start)
        start_at = 0.0
    return {
        "encode_GBps": nbytes / float(np.median(encode)) / GB,
        "decode_GBps": nbytes / float(np.median(decode)) / GB,
        "ratio": nbytes / sum(len(d) for d in data),
    }


def _share(args: tuple[Path, str, int, int, float]) -> dict[str, float]:
    path, cid, part, parts, start_at = args
    return _encode_decode(cid, _chunks_of(path, part, parts), 1, start_at)


def raw_speed(path: Path, codecs: list[str]) -> dict[str, dict[str, float]]:
    """Encode/decode GB/s per codec over every balanced chunk of the cube, one core (median of 3).

    Every chunk, not a sample: on this data a corner of the detector encodes faster than the whole (blosc-lz4
    1.8 vs 1.5 GB/s), so a sample would set the ceiling too high or too low. Measured in a fresh process each
    time, so that repeated measurements see the same conditions (this one's heap grows over the benchmark).
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, dict[str, float]] = pool.apply(_raw_here, (path, codecs))
        pool.close()  # a worker that exits on its own releases its semaphores; a terminated one leaves them behind
        pool.join()
    return result


def _raw_here(path: Path, codecs: list[str]) -> dict[str, dict[str, float]]:
    os.environ["BLOSC_NTHREADS"] = "1"
    blocks = _chunks_of(path)
    return {cid: _encode_decode(cid, blocks, 3) for cid in codecs}


def mean_speeds(samples: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean GB/s per codec and key over several :func:`raw_speed` (or :func:`bare_pipeline`) measurements."""
    return {cid: {key: float(np.mean([s[cid][key] for s in samples])) for key in samples[0][cid]} for cid in samples[0]}


def parallel_ceiling(path: Path, codecs: list[str], cores: int) -> dict[str, dict[str, float]]:
    """The codec alone on every core at once (one process per core, each on its share of the chunks, no I/O).

    What the machine itself gives when all cores encode together (shared caches and memory bandwidth), the
    fairest ceiling for a parallel pipeline; compare with ``cores`` x the one-core speed.
    """
    import multiprocessing

    out = {}
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        for cid in codecs:
            start_at = time.time() + 3.0  # after every process has gathered its chunks
            parts = pool.map(_share, [(path, cid, i, cores, start_at) for i in range(cores)])
            out[cid] = {
                "encode_GBps": sum(p["encode_GBps"] for p in parts),
                "decode_GBps": sum(p["decode_GBps"] for p in parts),
            }
        pool.close()  # as in raw_speed
        pool.join()
    return out


def stage_chunk_major(path: Path, chunks: tuple[int, ...], folder: Path) -> Path:
    """The cube's chunks of shape ``chunks`` one after another in one raw file (as cubebench stages them), for
    :func:`bare_pipeline`; the cube's shape must be a multiple of ``chunks``."""
    cube = np.load(path, mmap_mode="r")
    grid = block_grid(cube.shape, chunks)
    target = folder / "bare-source.bin"
    with open(target, "wb") as fh:
        for _, block in grid:
            fh.write(np.ascontiguousarray(cube[block]).data)
        fh.flush()
        os.fsync(fh.fileno())
    return target


def _bare_share(args: tuple[Path, Path, str, tuple[int, ...], int, int, float]) -> dict[str, float]:
    """One process's share of :func:`bare_pipeline`: every ``parts``-th chunk from ``part`` on."""
    from cubebench.codecs import set_codec_threads

    source, folder, cid, shape, part, parts, start_at = args
    set_codec_threads(1)
    dtype = np.dtype("uint16")
    buf = np.empty(shape, dtype)
    out = np.empty(shape, dtype)
    enc = get_codec(cid).encoder(dtype)
    nbytes = buf.nbytes
    count = os.path.getsize(source) // nbytes
    mine = range(part, count, parts)
    target = folder / f"bare-{cid}-{part}.bin"
    while time.time() < start_at:  # the processes start together
        pass
    start = time.perf_counter()
    sizes = []
    src = os.open(source, os.O_RDONLY)
    dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for i in mine:
            os.preadv(src, [buf.data], i * nbytes)
            data = enc.encode(buf)
            os.write(dst, data)
            sizes.append(len(data))
        os.fdatasync(dst)
    finally:
        os.close(src)
        os.close(dst)
    write_end = time.perf_counter()
    stored = np.empty(max(sizes), np.uint8)
    fd = os.open(target, os.O_RDONLY)
    read_start = time.perf_counter()
    pos = 0
    try:
        for size in sizes:
            view = stored[:size]
            os.preadv(fd, [view.data], pos)
            pos += size
            enc.decode(view, out)
            checksum(out)
    finally:
        os.close(fd)
    read_end = time.perf_counter()
    target.unlink()
    return {
        "start": start,
        "write_end": write_end,
        "read_start": read_start,
        "read_end": read_end,
        "bytes": float(nbytes * len(sizes)),
    }


def bare_pipeline(
    source: Path, shape: tuple[int, ...], folder: Path, codecs: list[str], cores: int, repeats: int = 3
) -> dict[str, dict[str, float]]:
    """The work of a verified, durable write and read with no Dask and no single writer: the bound of any
    implementation on this machine.

    ``cores`` processes each take every ``cores``-th chunk (of ``shape``) of the chunk-major copy ``source``: read it
    with ``preadv`` into a reused buffer, encode, append the bytes to a file of its own and ``fdatasync`` it (the
    write); then read those bytes back, decode into a reused buffer and hash (XXH3) each chunk (the read).
    Seconds from the common start to the last process's end, median of ``repeats``.
    """
    import multiprocessing

    out: dict[str, dict[str, float]] = {}
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        for cid in codecs:
            writes, reads = [], []
            for _ in range(repeats):
                start_at = time.time() + 1.0
                parts = pool.map(_bare_share, [(source, folder, cid, shape, i, cores, start_at) for i in range(cores)])
                total = sum(p["bytes"] for p in parts)
                # each process's own clock for its spans; the spans start together, so the slowest one counts
                writes.append(total / max(p["write_end"] - p["start"] for p in parts) / GB)
                reads.append(total / max(p["read_end"] - p["read_start"] for p in parts) / GB)
            out[cid] = {"write_GBps": float(np.median(writes)), "read_GBps": float(np.median(reads))}
        pool.close()  # as in raw_speed
        pool.join()
    return out


def zarr_library_speed(path: Path, codecs: list[str], folder: Path) -> dict[str, dict[str, float]]:
    """Zarr's own per-chunk path in this process, pinned to one core: ``arr[block] = data``, and reads through
    ``arr.get_basic_selection(block, out=...)`` into one reused array (as cubebench's ``zarr`` backend reads).

    The ceiling of any pipeline that reads and writes through zarr-python's API (as cubebench's ``zarr`` backend
    and a user's analysis code do): codec plus zarr's per-chunk work (buffers, copies, its async bridge), over
    every balanced chunk gathered in memory first, no fsync; median of 3.
    """
    import shutil

    import zarr
    from zarr.core.buffer import default_buffer_prototype

    cube = np.load(path, mmap_mode="r")
    chunks = resolve_chunks("balanced", cube.shape)
    grid = block_grid(cube.shape, chunks)
    blocks = _chunks_of(path)
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    out: dict[str, dict[str, float]] = {}
    try:
        for cid in codecs:
            store = folder / "library.zarr"
            shutil.rmtree(store, ignore_errors=True)
            arr = zarr.create_array(
                store=str(store),
                shape=cube.shape,
                chunks=chunks,
                dtype=cube.dtype,
                fill_value=0,
                config={"write_empty_chunks": True},  # as cubebench's default: no all-zero test per chunk
                **get_codec(cid).zarr_kwargs(cube.dtype),
            )
            target = default_buffer_prototype().nd_buffer.from_numpy_array(np.empty(chunks, dtype=cube.dtype))
            write, read = [], []
            for _ in range(3):
                start = time.perf_counter()
                for (_, block), data in zip(grid, blocks, strict=True):
                    arr[block] = data
                write.append(time.perf_counter() - start)
                start = time.perf_counter()
                for _, block in grid:
                    arr.get_basic_selection(block, out=target)
                read.append(time.perf_counter() - start)
            nbytes = sum(b.nbytes for b in blocks)
            out[cid] = {
                "write_GBps": nbytes / float(np.median(write)) / GB,
                "read_GBps": nbytes / float(np.median(read)) / GB,
            }
            shutil.rmtree(store)
    finally:
        os.sched_setaffinity(0, affinity)
    return out


def run_cubebench(
    path: Path,
    backends: list[str],
    codecs: list[str],
    chunks: list[str],
    runs: int,
    workers: int,
    out: Path,
    processes: bool = True,
) -> dict[str, Any]:
    """Run cubebench in a child process; return its results and the peak RSS of its whole process tree."""
    exp = {
        "name": out.name,
        "datasets": [{"path": str(path), "name": "bench"}],
        "backends": backends,
        "codecs": codecs,
        "chunks": chunks,
        "runs": runs,
        "cluster": {"workers": workers, "threads_per_worker": 1, "codec_threads": 1, "processes": processes},
    }
    spec = out.with_suffix(".json")
    spec.write_text(json.dumps(exp))
    code = (
        "import json,sys,cubebench; exp=json.load(open(sys.argv[1])); "
        "cubebench.run(exp, out=sys.argv[2], progress=False)"
    )
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(spec), str(out)])
    peak = _watch(proc)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"cubebench run failed ({proc.returncode})")
    from cubebench.results import load_results

    ds = load_results(out)
    return {"wall_seconds": wall, "peak_rss": peak, "ds": ds}


def _watch(proc: subprocess.Popen[bytes]) -> int:
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss(root))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    return peak


BASELINE = r"""
import sys, time, json, numpy as np, h5py, hdf5plugin
from cubebench.codecs import get_codec
from cubebench.chunking import resolve_chunks
from cubebench.cube import block_grid
path, folder, codecs, chunks = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
times = {}
start = time.perf_counter()
data = np.load(path)                      # the study's script: the whole cube in RAM
times["load"] = time.perf_counter() - start
for cid in codecs:
    for chunk in chunks:
        target = f"{folder}/baseline.h5"
        t0 = time.perf_counter()
        with h5py.File(target, "w") as f:
            filters = get_codec(cid).hdf5_filter(data.dtype)
            f.create_dataset("data", data=data, chunks=resolve_chunks(chunk, data.shape), **filters)
        t1 = time.perf_counter()
        with h5py.File(target, "r") as f:
            back = f["data"][:]
        t2 = time.perf_counter()
        del back
        times[f"{cid}/{chunk}"] = [t1 - t0, t2 - t1]
print(json.dumps(times))
"""


def run_baseline(path: Path, folder: Path, codecs: list[str], chunks: list[str]) -> dict[str, Any]:
    """The study-style serial script in a child process: wall time and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", BASELINE, str(path), str(folder), ",".join(codecs), ",".join(chunks)],
        stdout=subprocess.PIPE,
        env={**os.environ, "BLOSC_NTHREADS": "1"},
    )
    peak = _watch(proc)
    stdout = proc.stdout.read() if proc.stdout else b""
    wall = time.perf_counter() - start
    return {"wall_seconds": wall, "peak_rss": peak, "times": json.loads(stdout or b"{}")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="cube size in GiB (default 1)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/out/throughput.json")
    parser.add_argument("--scratch", default=None)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    report: dict[str, Any] = {"gib": args.gib, "cores": cores}
    with tempfile.TemporaryDirectory(prefix="cubebench-bench-", dir=args.scratch) as tmp:
        folder = Path(tmp)
        path = make_cube(args.gib, folder)
        print(f"cube: {path.stat().st_size / GIB:.2f} GiB", flush=True)

        raw = raw_speed(path, CODECS + [c for c in BASELINE_CODECS if c not in CODECS])
        report["raw"] = raw
        ceiling = parallel_ceiling(path, CODECS, 2)
        report["ceiling"] = ceiling
        report["zarr_library"] = zarr_library_speed(path, CODECS, folder)

        # the same work with no Dask and no single writer, on a chunk-major copy like the one cubebench stages
        shape = resolve_chunks("balanced", np.load(path, mmap_mode="r").shape)
        bare_source = stage_chunk_major(path, shape, folder)
        bare_samples = [bare_pipeline(bare_source, shape, folder, CODECS, cores)]

        rows = []
        samples = [{cid: raw[cid] for cid in CODECS}]
        report["raw_around"], report["bare_around"] = {}, {}
        for kind, processes in WORKER_KINDS.items():
            matrix = run_cubebench(
                path, BACKENDS, CODECS, ["balanced"], args.runs, 2, folder / f"matrix-{kind}", processes
            )
            # the one-core speed (and the bare pipeline) again right after, so that each kind is measured against
            # them in the same minutes (this host's speed drifts between minutes)
            samples.append(raw_speed(path, CODECS))
            bare_samples.append(bare_pipeline(bare_source, shape, folder, CODECS, cores))
            around = mean_speeds(samples[-2:])
            report["raw_around"][kind] = around
            report["bare_around"][kind] = {
                cid: {
                    **v,
                    "write_eff": v["write_GBps"] / (cores * around[cid]["encode_GBps"]),
                    "read_eff": v["read_GBps"] / (cores * around[cid]["decode_GBps"]),
                }
                for cid, v in mean_speeds(bare_samples[-2:]).items()
            }
            rows.extend(matrix_rows(matrix.pop("ds"), kind, around, ceiling))
        bare_source.unlink()
        report["matrix"] = rows
        report["raw_samples"] = samples
        report["bare_samples"] = bare_samples

        base = run_baseline(path, folder, BASELINE_CODECS, BASELINE_CHUNKS)
        report["baseline"] = base
        # the same matrix on a slice of one real_space chunk (32 x 32 frames): what cubebench holds whatever the
        # cube size (interpreters, imported libraries, the cluster, the largest chunk in flight)
        small = folder / "small.npy"
        cube = np.load(path, mmap_mode="r")
        np.save(small, cube[:32, :32])
        del cube
        report["cubebench_same_matrix"] = {}
        report["cubebench_floor"] = {}
        for kind, processes in WORKER_KINDS.items():
            cb = run_cubebench(
                path, ["hdf5_direct"], BASELINE_CODECS, BASELINE_CHUNKS, 1, 2, folder / f"vs-{kind}", processes
            )
            cb.pop("ds")
            report["cubebench_same_matrix"][kind] = cb
            floor = run_cubebench(
                small, ["hdf5_direct"], BASELINE_CODECS, BASELINE_CHUNKS, 1, 2, folder / f"floor-{kind}", processes
            )
            floor.pop("ds")
            report["cubebench_floor"][kind] = {**floor, "gib": small.stat().st_size / GIB}

        # the same cell on 1 and 2 workers, through zarr-python's path (whose reads are bound by its per-chunk Python
        # code) and through zarr_direct (codec-bound both ways), measured in the same runs
        # keyed by the worker count as a string, as the saved report (JSON) keys it
        scaling: dict[str, dict[str, dict[str, float]]] = {backend: {} for backend in SCALING_BACKENDS}
        for workers in (1, 2):
            res = run_cubebench(
                path, SCALING_BACKENDS, ["blosc-zstd"], ["balanced"], args.runs, workers, folder / f"scale{workers}"
            )
            for backend in SCALING_BACKENDS:
                cell = res["ds"].sel(dataset="bench", backend=backend, codec="blosc-zstd", chunk="balanced")
                scaling[backend][str(workers)] = {
                    "write_s": float(cell["write_seconds"].median()),
                    "read_s": float(cell["read_seconds"].median()),
                }
        report["scaling"] = scaling

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float))
    print_tables(report)


BACKENDS = ["hdf5", "hdf5_direct", "zarr", "zarr_direct"]
#: The scaling cell's backends: zarr-python's own path and the direct one, side by side.
SCALING_BACKENDS = ["zarr", "zarr_direct"]


def matrix_rows(ds: Any, kind: str, raw: dict[str, Any], ceiling: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend x codec of a matrix run: throughput, efficiency, peak memory."""
    rows = []
    for backend in BACKENDS:
        used = 1 if backend == "hdf5" else 2
        for cid in CODECS:
            cell = ds.sel(dataset="bench", backend=backend, codec=cid, chunk="balanced")
            write = float(cell["write_GiBps"].median()) * GIB / GB
            read = float(cell["read_GiBps"].median()) * GIB / GB
            rows.append(
                {
                    "workers": kind,
                    "backend": backend,
                    "codec": cid,
                    "cores": used,
                    "ratio": float(cell["ratio"].mean()),
                    "write_GBps": write,
                    "read_GBps": read,
                    "write_eff": write / (raw[cid]["encode_GBps"] * used),
                    "read_eff": read / (raw[cid]["decode_GBps"] * used),
                    "write_of_ceiling": write / (ceiling if used == 2 else raw)[cid]["encode_GBps"],
                    "read_of_ceiling": read / (ceiling if used == 2 else raw)[cid]["decode_GBps"],
                    "peak_GiB": float(cell["peak_memory_bytes"].max()) / GIB,
                }
            )
    return rows


def print_tables(r: dict[str, Any]) -> None:
    """The Markdown tables that go into README.md."""
    print(f"\nRaw codec speed over every balanced chunk of the {r['gib']:g} GiB cube, in-process\n")
    print("| codec | ratio | encode GB/s, 1 core | decode GB/s, 1 core | encode GB/s, 2 cores | decode GB/s, 2 cores |")
    print("|---|---|---|---|---|---|")
    ceiling = r.get("ceiling", {})
    for cid, v in r["raw"].items():
        c = ceiling.get(cid)
        both = f"{c['encode_GBps']:.3f} | {c['decode_GBps']:.3f}" if c else "- | -"
        print(f"| {cid} | {v['ratio']:.2f} | {v['encode_GBps']:.3f} | {v['decode_GBps']:.3f} | {both} |")
    if r.get("raw_samples"):
        print("\nOne-core speed measured again after each matrix run (efficiencies use the two around each run)\n")
        print("| codec | encode GB/s, each measurement | decode GB/s, each measurement |\n|---|---|---|")
        for cid in r["raw_samples"][0]:
            enc = ", ".join(f"{s[cid]['encode_GBps']:.3f}" for s in r["raw_samples"])
            dec = ", ".join(f"{s[cid]['decode_GBps']:.3f}" for s in r["raw_samples"])
            print(f"| {cid} | {enc} | {dec} |")
    if "zarr_library" in r:
        print("\nZarr's own per-chunk path (`arr[block] = data`, `get_basic_selection(block, out=)`), one core\n")
        print("| codec | write GB/s | of raw encode | read GB/s | of raw decode |\n|---|---|---|---|---|")
        for cid, v in r["zarr_library"].items():
            raw = r["raw"][cid]
            print(
                f"| {cid} | {v['write_GBps']:.3f} | {v['write_GBps'] / raw['encode_GBps']:.2f} | "
                f"{v['read_GBps']:.3f} | {v['read_GBps'] / raw['decode_GBps']:.2f} |"
            )
    print("\ncubebench throughput (balanced chunks, 2 workers x 1 thread, median of runs) and efficiency\n")
    print(
        "| workers | backend | codec | cores | ratio | write GB/s | write eff. | of 2-core ceiling | read GB/s "
        "| read eff. | of 2-core ceiling | peak memory GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in r["matrix"]:
        print(
            f"| {row['workers']} | {row['backend']} | {row['codec']} | {row['cores']} | "
            f"{row['ratio']:.2f} | {row['write_GBps']:.3f} | {row['write_eff']:.2f} | "
            f"{row['write_of_ceiling']:.2f} | {row['read_GBps']:.3f} | {row['read_eff']:.2f} | "
            f"{row['read_of_ceiling']:.2f} | {row['peak_GiB']:.2f} |"
        )
    by = {(row["workers"], row["backend"], row["codec"]): row for row in r["matrix"]}
    kinds = list(dict.fromkeys(key[0] for key in by))
    if "zarr_library" in r:
        print(
            "\n| workers | codec | zarr write / (2 x zarr's own path) | zarr read / (2 x zarr's own path) |\n"
            "|---|---|---|---|"
        )
        for kind in kinds:
            for cid, v in r["zarr_library"].items():
                z = by[(kind, "zarr", cid)]
                write, read = z["write_GBps"] / (2 * v["write_GBps"]), z["read_GBps"] / (2 * v["read_GBps"])
                print(f"| {kind} | {cid} | {write:.2f} | {read:.2f} |")
    if "bare_around" in r:
        print(
            "\nThe same work with no Dask and no single writer (2 processes: pread, encode, append to a file of its "
            "own, fdatasync; read back, decode, hash), measured before and after each matrix run\n"
        )
        print(
            "| workers | codec | bare write GB/s | bare write eff. | bare read GB/s | bare read eff. | "
            "hdf5_direct write / bare | hdf5_direct read / bare | zarr_direct write / bare | zarr_direct read / bare |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for kind, per_codec in r["bare_around"].items():
            for cid, v in per_codec.items():
                h, z = by[(kind, "hdf5_direct", cid)], by[(kind, "zarr_direct", cid)]
                print(
                    f"| {kind} | {cid} | {v['write_GBps']:.3f} | {v['write_eff']:.2f} | {v['read_GBps']:.3f} | "
                    f"{v['read_eff']:.2f} | {h['write_GBps'] / v['write_GBps']:.2f} | "
                    f"{h['read_GBps'] / v['read_GBps']:.2f} | {z['write_GBps'] / v['write_GBps']:.2f} | "
                    f"{z['read_GBps'] / v['read_GBps']:.2f} |"
                )
    for direct, library in (("hdf5_direct", "hdf5"), ("zarr_direct", "zarr")):
        print(f"\n| workers | codec | {direct} / {library} write | {direct} / {library} read |\n|---|---|---|---|")
        for kind in kinds:
            for cid in CODECS:
                d, h = by[(kind, direct, cid)], by[(kind, library, cid)]
                ratio_w, ratio_r = d["write_GBps"] / h["write_GBps"], d["read_GBps"] / h["read_GBps"]
                print(f"| {kind} | {cid} | {ratio_w:.2f}x | {ratio_r:.2f}x |")
    b = r["baseline"]
    same, floors = r["cubebench_same_matrix"], r["cubebench_floor"]
    print(f"\nStudy-style baseline vs cubebench (hdf5_direct), codecs {BASELINE_CODECS} x chunks {BASELINE_CHUNKS}\n")
    print("| | wall time s | peak memory GiB | wall / script | memory / script |\n|---|---|---|---|---|")
    print(f"| study-style script | {b['wall_seconds']:.1f} | {b['peak_rss'] / GIB:.2f} | 1 | 1 |")
    for kind, c in same.items():
        print(
            f"| cubebench, worker {kind} | {c['wall_seconds']:.1f} | {c['peak_rss'] / GIB:.2f} | "
            f"{c['wall_seconds'] / b['wall_seconds']:.2f}x | {c['peak_rss'] / b['peak_rss']:.2f}x |"
        )
    for kind, f in floors.items():
        print(
            f"| cubebench, worker {kind}, same matrix on a {f['gib'] * 1024:.0f} MiB slice (its fixed floor) | "
            f"{f['wall_seconds']:.1f} | {f['peak_rss'] / GIB:.2f} | | |"
        )
    print("\nScaling, blosc-zstd balanced, worker processes: seconds on 1 and 2 workers\n")
    print("| backend | write s, 1 | write s, 2 | write speed-up | read s, 1 | read s, 2 | read speed-up |")
    print("|---|---|---|---|---|---|---|")
    for backend, by_workers in r["scaling"].items():
        one, two = by_workers["1"], by_workers["2"]
        print(
            f"| {backend} | {one['write_s']:.2f} | {two['write_s']:.2f} | {one['write_s'] / two['write_s']:.2f}x | "
            f"{one['read_s']:.2f} | {two['read_s']:.2f} | {one['read_s'] / two['read_s']:.2f}x |"
        )


if __name__ == "__main__":
    main()
