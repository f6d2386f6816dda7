"""Can it keep up? Maximum sustainable rate of paced acquisition against this machine's own ceiling.

The issue 22 benchmark: the synthetic 4d_diff cube (1 GiB by default), blosc-lz4 and blosc-zstd, single_frame and
balanced chunks, hdf5_direct and zarr_direct, 2 workers. For each cell: the maximum sustainable frame rate
(:func:`cubebench.acquisition.search.find_max`, every trial verified) against the *ceiling*: the same codec
encoding the same chunks and syncing them as fast as it can in two plain processes, unpaced (each process
appends its half of the chunks to its own file and fsyncs it every 64 MiB and at the end); beside it, the ceiling of
the backend's own layout (for ``zarr_direct``: each chunk a file of its own at its Zarr key, made durable 64 at a
time with their new folders; for ``hdf5_direct`` the single-writer ceiling: two plain processes encode and send
their chunks down a pipe to one process that stores them with ``write_direct_chunk`` and fsyncs every 64 MiB).
``--dispatch stream tasks`` runs both dispatches side by side in each run; ``--backends`` and ``--chunks`` select
cells. Then a paced run at half the maximum rate for ``--half-seconds`` (at least two bands of chunk rows): the
measured buffer (peak backlog) against the chunking's implied buffer + 2 chunks per worker, and the p99
frame-to-durable latency against max(2 chunk-fill times, 0.5 s). Medians of ``--runs`` runs.

One cluster and one staged copy of the cube serve the whole benchmark; the source's chunk hashes are computed
once per chunk shape and each trial's stored chunks are checked against them. The search starts at the measured
ceiling and aims its next trial at the throughput a missed trial measured (three trials when that estimate is
steady), stopping when the rates kept up and missed are within ``--tolerance``. A time estimate is printed first
(``--estimate`` prints it and stops).

The search never asks for more than the cube's frames / ``--min-seconds`` (faster, a trial would be the whole
cube in less than ``--min-seconds``: no steady state); a maximum at that cap is a lower bound. ``missed at`` is
the lowest rate that did not keep up; ``slack`` is the criterion's resolution at the maximum: the allowed backlog
over the trial's frames, the fraction by which a pipeline slower than the rate could still pass (longer trials
and smaller chunks make it smaller).

    python benchmarks/bench_acquire.py --gib 1 --runs 3 --out benchmarks/out/acquire.json
    python benchmarks/bench_acquire.py --gib 0.004 --runs 1 --trials 2 --min-seconds 0.25 --half-seconds 0.5  # smoke
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.acquisition.assembler import implied_buffer_frames
from cubebench.acquisition.cell import CellSpec, paced_cell, warm_pipeline, warm_up
from cubebench.acquisition.config import DISPATCHES, AcquisitionOptions
from cubebench.acquisition.search import find_max
from cubebench.backends.base import padded
from cubebench.chunking import Chunking
from cubebench.cluster import open_client
from cubebench.codecs import get_codec
from cubebench.cube import StagedCube, block_grid
from cubebench.experiment import ClusterSpec
from cubebench.sources import open_cube
from cubebench.staging import stage_cube

if TYPE_CHECKING:
    from cubebench.acquisition.results import AcquisitionRecord

CODECS = ["blosc-lz4", "blosc-zstd"]
CHUNKS = ["single_frame", "balanced"]
BACKENDS = ["hdf5_direct", "zarr_direct"]
SYNC_BYTES = 64 * 2**20
FRAME_BYTES = 256 * 256 * 2

#: The time model of :func:`estimate_seconds`, measured here (2 cores, 2 workers): cluster start, staging
#: (synthesis of 4d_diff, bytes per second), the ceiling's encoding (bytes per second, both codecs and chunkings
#: on average), and each trial's and half-rate run's time beyond its paced seconds (drain, read-back
#: verification, removing the stored files: a zarr single-frame trial's thousand files take seconds here).
MODEL = {"start": 15.0, "stage_Bps": 14e6, "ceiling_Bps": 0.15e9, "trial_extra": 2.5, "trials_expected": 4.5}


def _encode_half(
    staged: StagedCube, codec_id: str, chunks: tuple[int, ...], part: int, path: str, limit: int | None = None
) -> int:
    """One plain process: encode every other chunk (``part`` 0 or 1; the first ``limit`` of them), append it to
    ``path``, fsync as it goes."""
    os.environ["BLOSC_NTHREADS"] = "1"
    encoder = get_codec(codec_id).encoder(np.dtype(staged.dtype))
    blocks = [block for n, (_, block) in enumerate(block_grid(staged.shape, chunks)) if n % 2 == part][:limit]
    unsynced = 0
    with open(path, "wb") as fh:
        for data in staged.iter_blocks(blocks):
            encoded = encoder.encode(padded(np.ascontiguousarray(data), chunks))
            fh.write(encoded)
            unsynced += len(encoded)
            if unsynced >= SYNC_BYTES:
                fh.flush()
                os.fsync(fh.fileno())
                unsynced = 0
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def ceiling(
    pool: ProcessPoolExecutor,
    staged: StagedCube,
    codec_id: str,
    chunks: tuple[int, ...],
    folder: Path,
    files: bool = False,
) -> float:
    """Frames per second two plain processes encode and sync, unpaced (the machine's own limit for this cell).

    ``files``: each chunk in a file of its own (as a Zarr store holds it), else appended to one file per process.
    A few chunks first warm the processes' encoders, unrecorded.
    """
    frames = staged.shape[0] * staged.shape[1]
    n = 2
    run = _files_half if files else _encode_half
    warm = [str(folder / f"warm{p}") for p in range(n)]
    list(pool.map(run, [staged] * n, [codec_id] * n, [chunks] * n, range(n), warm, [4] * n))
    paths = [str(folder / f"ceiling{p}") for p in range(n)]
    start = time.perf_counter()
    list(pool.map(run, [staged] * n, [codec_id] * n, [chunks] * n, range(n), paths))
    seconds = time.perf_counter() - start
    for p in (*warm, *paths):
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            Path(p).unlink(missing_ok=True)
    return frames / seconds


def writer_ceiling(staged: StagedCube, codec_id: str, chunks: tuple[int, ...], folder: Path) -> float:
    """Frames per second of HDF5's single-writer design with no framework: two plain processes encode every other
    chunk and send it down a pipe; this process stores each with ``write_direct_chunk`` into one HDF5 file and
    commits (flush + fsync) every 64 MiB and at the end. Unpaced; process start-up is not timed."""
    from multiprocessing.connection import wait

    import h5py

    from cubebench.backends.hdf5_filter import create_emd_dataset

    spawn = multiprocessing.get_context("spawn")
    pipes = [spawn.Pipe() for _ in range(2)]
    procs = [
        spawn.Process(target=_encode_to_pipe, args=(staged, codec_id, chunks, part, child))
        for part, (_, child) in enumerate(pipes)
    ]
    for proc in procs:
        proc.start()
    conns = [parent for parent, _ in pipes]
    for conn in conns:
        conn.recv()  # ready: imported and warm
    target = folder / "writer-ceiling.h5"
    with h5py.File(target, "w") as f:
        ds = create_emd_dataset(f, staged.shape, np.dtype(staged.dtype), chunks, get_codec(codec_id))
        f.flush()
        fd = f.id.get_vfd_handle()
        start = time.perf_counter()
        for conn in conns:
            conn.send("go")
        live, unsynced = list(conns), 0
        while live:
            for ready in wait(live):
                assert not isinstance(ready, (int, socket.socket))
                message = ready.recv()
                if message is None:
                    live.remove(ready)  # type: ignore[arg-type]
                    continue
                offset, data = message
                ds.id.write_direct_chunk(offset, data)
                unsynced += len(data)
                if unsynced >= SYNC_BYTES:
                    f.flush()
                    os.fsync(fd)
                    unsynced = 0
        f.flush()
        os.fsync(fd)
        seconds = time.perf_counter() - start
    for proc in procs:
        proc.join()
    target.unlink()
    return staged.shape[0] * staged.shape[1] / seconds


def _encode_to_pipe(staged: StagedCube, codec_id: str, chunks: tuple[int, ...], part: int, conn: Any) -> None:
    """One encoding process of :func:`writer_ceiling`: every other chunk, (chunk offset, encoded bytes) each."""
    os.environ["BLOSC_NTHREADS"] = "1"
    encoder = get_codec(codec_id).encoder(np.dtype(staged.dtype))
    grid = [block for n, (_, block) in enumerate(block_grid(staged.shape, chunks)) if n % 2 == part]
    for data in staged.iter_blocks(grid[:4]):  # warm, unrecorded
        encoder.encode(padded(np.ascontiguousarray(data), chunks))
    conn.send("ready")
    conn.recv()
    for block, data in zip(grid, staged.iter_blocks(grid), strict=True):
        conn.send((tuple(b.start for b in block), encoder.encode(padded(np.ascontiguousarray(data), chunks))))
    conn.send(None)
    conn.close()


def _files_half(
    staged: StagedCube, codec_id: str, chunks: tuple[int, ...], part: int, path: str, limit: int | None = None
) -> int:
    """One plain process: encode every other chunk into a file of its own under ``path`` at Zarr v3's key
    (``c/i/j/k/l``: a folder per scan position for single frames), and make each 64 files durable together (the
    files, then their new folders, 8 threads per level: :func:`cubebench.fileio.fsync_written`)."""
    from concurrent.futures import ThreadPoolExecutor

    from cubebench.fileio import fsync_written

    os.environ["BLOSC_NTHREADS"] = "1"
    encoder = get_codec(codec_id).encoder(np.dtype(staged.dtype))
    grid = [(index, block) for n, (index, block) in enumerate(block_grid(staged.shape, chunks)) if n % 2 == part]
    grid = grid[:limit]
    written = 0
    names: list[str] = []
    folders: set[str] = set()
    with ThreadPoolExecutor(8) as syncs:
        for (index, _), data in zip(grid, staged.iter_blocks([b for _, b in grid]), strict=True):
            encoded = encoder.encode(padded(np.ascontiguousarray(data), chunks))
            name = os.path.join(path, "c", *map(str, index))
            folder = os.path.dirname(name)
            if folder not in folders:
                os.makedirs(folder, exist_ok=True)
                folders.add(folder)
            with open(name, "wb") as fh:
                fh.write(encoded)
            names.append(name)
            written += len(encoded)
            if len(names) == 64:
                fsync_written(names, folders, path, syncs.map)
                names, folders = [], set()
        if names:
            fsync_written(names, folders, path, syncs.map)
    return written


def half_frames(shape: tuple[int, ...], chunks: tuple[int, ...], rate: float, seconds: float) -> int:
    """Frames of the half-rate run: ``seconds`` of them, at least two bands of chunk rows, at most the cube."""
    sy, sx = shape[0], shape[1]
    return min(sy * sx, max(math.ceil(rate * seconds), 2 * min(chunks[0], sy) * sx))


def estimate_seconds(
    gib: float,
    runs: int,
    min_seconds: float,
    half_seconds: float,
    chunks: int = 2,
    dispatches: int = 1,
    backends: int = 2,
) -> float:
    """Expected wall time of the benchmark from :data:`MODEL` (cells x expected trials, ceilings, staging)."""
    cube = gib * 2**30
    cells = backends * len(CODECS) * chunks * dispatches
    per_cell = MODEL["trials_expected"] * (min_seconds + MODEL["trial_extra"]) + half_seconds + MODEL["trial_extra"]
    per_run = cells * per_cell + 2 * len(CODECS) * chunks * cube / MODEL["ceiling_Bps"]
    return MODEL["start"] + cube / MODEL["stage_Bps"] + runs * per_run


def _trials_text(trials: list[AcquisitionRecord]) -> str:
    """Each trial's rate, + kept up, - missed."""
    return ", ".join(f"{t.requested_rate:.0f}{'+' if t.kept_up else '-'}" for t in trials)


def _log(t0: float, text: str) -> None:
    print(f"[{time.perf_counter() - t0:7.1f} s] {text}", file=sys.stderr, flush=True)


def _row_values(
    top: float,
    own: float,
    best: float,
    trials: list[AcquisitionRecord],
    half: AcquisitionRecord | None,
    chunks: tuple[int, ...],
) -> dict[str, float]:
    """A cell's numbers: ``top`` the append ceiling, ``own`` the ceiling of the backend's layout (files for Zarr)."""
    cy, cx = chunks[:2]
    # a chunk fills while the scan crosses it: its implied buffer (cy scan rows, or cx frames) at half the max rate
    fill = (half.implied_buffer_frames if half else cy * cx) / max(best / 2, 1e-9)
    nan = float("nan")
    missed = [t.requested_rate for t in trials if not t.kept_up]
    kept = [t for t in trials if t.kept_up and t.requested_rate == best]
    return {
        "ceiling": top,
        "own_ceiling": own,
        "max": best,
        "missed": min(missed) if missed else nan,
        # the excess rate the best trial's criterion could hide: allowed backlog / frames, a fraction of the rate
        "slack": kept[0].allowed_backlog_frames / kept[0].frames if kept else nan,
        "trials": float(len(trials)),
        "buffer": float(half.peak_backlog_frames) if half else nan,
        "buffer_target": float(half.implied_buffer_frames + 2 * 2 * cy * cx) if half else nan,
        "p99": half.latency_p99 if half else nan,
        "p99_target": max(2 * fill, 0.5) if half else nan,
        "verified": float((half is None or half.verified) and all(t.verified for t in trials)),
    }


def _median(values: list[float]) -> float:
    """The median of the finite values (NaN when none)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def _table(rows: dict[tuple[str, str, str, str], dict[str, list[float]]], frame_bytes: int) -> dict[str, Any]:
    print(
        "| backend | codec | chunk | dispatch | max rate (Hz) | missed at (Hz) | slack | GB/s | ceiling (Hz) "
        "| max / ceiling | own layout's ceiling (Hz) | max / own | trials | buffer at max/2 (frames) | target "
        "| p99 at max/2 (s) | target | verified |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    table = {}
    for (backend, codec, chunk, dispatch), row in rows.items():
        med = {k: _median(v) for k, v in row.items()}
        table[f"{backend}/{codec}/{chunk}/{dispatch}"] = {**med, "raw": row}
        print(
            f"| {backend} | {codec} | {chunk} | {dispatch} | {med['max']:.0f} | {med['missed']:.0f} | "
            f"{med['slack']:.2f} | {med['max'] * frame_bytes / 1e9:.3f} | {med['ceiling']:.0f} | "
            f"{med['max'] / med['ceiling']:.2f} | {med['own_ceiling']:.0f} | {med['max'] / med['own_ceiling']:.2f} | "
            f"{med['trials']:.0f} | {med['buffer']:.0f} | "
            f"{med['buffer_target']:.0f} | {med['p99']:.3f} | {med['p99_target']:.3f} | {min(row['verified']) == 1} |"
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="cube size in GiB (4d_diff, 256 x 256 frames)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=5, help="max-rate trials per cell and run, at most")
    parser.add_argument("--tolerance", type=float, default=0.05, help="stop when kept and missed rates are this close")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="trial length (or the whole cube)")
    parser.add_argument("--half-seconds", type=float, default=4.0, help="length of the run at half the max rate")
    parser.add_argument("--estimate", action="store_true", help="print the time estimate and stop")
    parser.add_argument("--out", type=Path, help="raw numbers as JSON (rewritten after every cell)")
    parser.add_argument("--chunks", nargs="+", default=CHUNKS, choices=CHUNKS)
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    parser.add_argument(
        "--dispatch", nargs="+", default=["stream"], choices=DISPATCHES, help="compared side by side in each run"
    )
    args = parser.parse_args()
    if args.gib <= 0 or args.runs < 1 or args.trials < 2 or args.min_seconds <= 0 or args.half_seconds <= 0:
        parser.error("--gib, --min-seconds and --half-seconds must be > 0, --runs >= 1, --trials >= 2")
    guess = estimate_seconds(
        args.gib,
        args.runs,
        args.min_seconds,
        args.half_seconds,
        len(args.chunks),
        len(args.dispatch),
        len(args.backends),
    )
    print(f"estimated wall time: {guess / 60:.0f} min ({guess:.0f} s) on two cores", file=sys.stderr, flush=True)
    if args.estimate:
        return
    t0 = time.perf_counter()
    scale = math.sqrt(args.gib / 8)
    dataset = {"preset": "4d_diff", "scale": scale, "seed": 1}
    folder = Path(tempfile.mkdtemp(prefix="cubebench-bench-acquire-"))
    scratch = folder / "cells"
    scratch.mkdir()
    rows: dict[tuple[str, str, str, str], dict[str, list[float]]] = {}
    warmed: set[tuple[str, str]] = set()
    spawn = multiprocessing.get_context("spawn")  # not fork: the client's threads are running
    frame_bytes = FRAME_BYTES
    try:
        with (
            open_client(ClusterSpec(workers=2, threads_per_worker=1)) as client,
            ProcessPoolExecutor(2, mp_context=spawn) as pool,
        ):
            staged = stage_cube(client, open_cube(dataset), folder)
            frames_total = staged.shape[0] * staged.shape[1]
            frame_bytes = int(np.prod(staged.shape[2:])) * np.dtype(staged.dtype).itemsize
            _log(t0, f"staged {staged.shape}")
            cap = frames_total / args.min_seconds  # faster, a trial is the whole cube in less than min_seconds
            sums: dict[Any, Any] = {}  # source hashes per chunk shape, shared by every cell and run
            for run in range(args.runs):
                tops: dict[tuple[str, str, str], float] = {}
                for codec in CODECS:
                    for chunk in args.chunks:
                        shape = Chunking.resolve(chunk, staged.shape).shape
                        tops[(codec, chunk, "append")] = ceiling(pool, staged, codec, shape, folder)
                        if "zarr_direct" in args.backends:
                            tops[(codec, chunk, "files")] = ceiling(pool, staged, codec, shape, folder, True)
                        if "hdf5_direct" in args.backends:
                            tops[(codec, chunk, "writer")] = writer_ceiling(staged, codec, shape, folder)
                _log(t0, f"run {run + 1}: ceilings " + ", ".join(f"{'/'.join(k)} {v:.0f} Hz" for k, v in tops.items()))
                for backend in args.backends:
                    for codec in CODECS:
                        for chunk in args.chunks:
                            for dispatch in args.dispatch:
                                opts = AcquisitionOptions(
                                    frame_rates=(1.0,), min_seconds=args.min_seconds, dispatch=dispatch
                                )
                                chunking = Chunking.resolve(chunk, staged.shape)
                                cell = CellSpec(staged, backend, get_codec(codec), chunking, 2)
                                if (backend, dispatch) not in warmed:
                                    warm_pipeline(client, cell, 1000.0, opts, scratch)
                                    warmed.add((backend, dispatch))
                                warm_up(client, cell)

                                def trial(
                                    rate: float, cell: CellSpec = cell, opts: AcquisitionOptions = opts
                                ) -> AcquisitionRecord:
                                    n = min(frames_total, math.ceil(rate * opts.min_seconds))
                                    return paced_cell(client, cell, rate, opts, n, scratch, sums)

                                own = "files" if backend == "zarr_direct" else "writer"
                                top = tops[(codec, chunk, own)]
                                best, trials = find_max(trial, top, args.trials, args.tolerance, cap)
                                half = None
                                if best > 0:  # nothing sustained: no half-rate run (0.5 Hz would take hours)
                                    n = half_frames(staged.shape, chunking.shape, best / 2, args.half_seconds)
                                    half = paced_cell(client, cell, best / 2, opts, n, scratch, sums)
                                row = rows.setdefault((backend, codec, chunk, dispatch), {})
                                values = _row_values(
                                    tops[(codec, chunk, "append")], top, best, trials, half, chunking.shape
                                )
                                for key, value in values.items():
                                    row.setdefault(key, []).append(value)
                                _log(
                                    t0,
                                    f"run {run + 1} {backend}/{codec}/{chunk}/{dispatch}: max {best:.0f} Hz in "
                                    f"{len(trials)} trials ({_trials_text(trials)})",
                                )
                                if args.out:
                                    args.out.parent.mkdir(parents=True, exist_ok=True)
                                    raw = {"/".join(k): v for k, v in rows.items()}
                                    args.out.write_text(json.dumps({"partial": True, "raw": raw}, indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    implied = implied_buffer_frames(
        (staged.shape[0], staged.shape[1]), Chunking.resolve("balanced", staged.shape).shape
    )
    print(
        f"4d_diff {args.gib:g} GiB ({frames_total} frames of {frame_bytes} B; balanced chunks imply {implied} "
        f"frames), 2 workers, median of {args.runs} runs, trials of >= {args.min_seconds:g} s, tolerance "
        f"{args.tolerance:g}, {time.perf_counter() - t0:.0f} s\n"
    )
    table = _table(rows, frame_bytes)
    print(
        f"\ncommand: python benchmarks/bench_acquire.py --gib {args.gib:g} --runs {args.runs} --trials {args.trials} "
        f"--min-seconds {args.min_seconds:g} --half-seconds {args.half_seconds:g} --tolerance {args.tolerance:g} "
        f"--chunks {' '.join(args.chunks)} --backends {' '.join(args.backends)} --dispatch {' '.join(args.dispatch)}"
    )
    if args.out:
        args.out.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
