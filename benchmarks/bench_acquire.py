"""Can it keep up? Maximum sustainable rate of paced acquisition against this machine's own ceiling.

The issue 22 benchmark: the synthetic 4d_diff cube (1 GiB by default), blosc-lz4 and blosc-zstd, single_frame and
balanced chunks, hdf5_direct and zarr_direct, 2 workers. For each cell: the maximum sustainable frame rate
(:func:`cubebench.acquisition.search.find_max`, each trial verified) against the *ceiling*: the same codec
encoding the same chunks and syncing them as fast as it can in two plain processes, unpaced (each process
appends its half of the chunks to its own file and fsyncs it every 64 MiB and at the end). Then a paced run at
half the maximum rate: the measured buffer (peak backlog) against the chunking's implied buffer + 2 chunks per
worker, and the p99 frame-to-durable latency against max(2 chunk-fill times, 0.5 s). Medians of ``--runs`` runs.

    python benchmarks/bench_acquire.py --gib 1 --runs 3 --out benchmarks/out/acquire.json
    python benchmarks/bench_acquire.py --gib 0.004 --runs 1 --trials 2    # a smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cubebench.acquisition.cell import CellSpec, paced_cell, warm_up
from cubebench.acquisition.config import AcquisitionOptions
from cubebench.acquisition.search import find_max
from cubebench.backends.base import padded
from cubebench.chunking import Chunking
from cubebench.cluster import open_client
from cubebench.codecs import get_codec
from cubebench.cube import StagedCube, block_grid
from cubebench.experiment import ClusterSpec
from cubebench.sources import open_cube
from cubebench.staging import stage_cube

CODECS = ["blosc-lz4", "blosc-zstd"]
CHUNKS = ["single_frame", "balanced"]
BACKENDS = ["hdf5_direct", "zarr_direct"]
SYNC_BYTES = 64 * 2**20


def _encode_half(staged: StagedCube, codec_id: str, chunks: tuple[int, ...], part: int, path: str) -> int:
    """One plain process: encode every other chunk (``part`` 0 or 1), append it to ``path``, fsync as it goes."""
    os.environ["BLOSC_NTHREADS"] = "1"
    encoder = get_codec(codec_id).encoder(np.dtype(staged.dtype))
    blocks = [block for n, (_, block) in enumerate(block_grid(staged.shape, chunks)) if n % 2 == part]
    written = unsynced = 0
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
        written = fh.tell()
    return written


def ceiling(staged: StagedCube, codec_id: str, chunks: tuple[int, ...], folder: Path) -> float:
    """Frames per second two plain processes encode and sync, unpaced (the machine's own limit for this cell)."""
    frames = staged.shape[0] * staged.shape[1]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_encode_half, [staged] * 2, [codec_id] * 2, [chunks] * 2, [0, 1], [str(folder / "warm")] * 2))
        start = time.perf_counter()
        paths = [str(folder / f"ceiling{p}.bin") for p in (0, 1)]
        list(pool.map(_encode_half, [staged] * 2, [codec_id] * 2, [chunks] * 2, [0, 1], paths))
        seconds = time.perf_counter() - start
    for p in folder.glob("ceiling*.bin"):
        p.unlink()
    (folder / "warm").unlink(missing_ok=True)
    return frames / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="cube size in GiB (4d_diff, 256 x 256 frames)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=7, help="max-rate trials per cell and run")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="trial length (or the whole cube)")
    parser.add_argument("--out", type=Path, help="raw numbers as JSON")
    args = parser.parse_args()
    scale = math.sqrt(args.gib / 8)
    dataset = {"preset": "4d_diff", "scale": scale, "seed": 1}
    folder = Path(tempfile.mkdtemp(prefix="cubebench-bench-acquire-"))
    spec = ClusterSpec(workers=2, threads_per_worker=1)
    rows: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    try:
        with open_client(spec) as client:
            staged = stage_cube(client, open_cube(dataset), folder)
        frames_total = staged.shape[0] * staged.shape[1]
        frame_bytes = int(np.prod(staged.shape[2:])) * 2
        for _ in range(args.runs):
            ceilings = {
                (codec, chunk): ceiling(staged, codec, Chunking.resolve(chunk, staged.shape).shape, folder)
                for codec in CODECS
                for chunk in CHUNKS
            }
            with open_client(spec) as client:
                for backend in BACKENDS:
                    for codec in CODECS:
                        for chunk in CHUNKS:
                            chunking = Chunking.resolve(chunk, staged.shape)
                            cell = CellSpec(staged, backend, get_codec(codec), chunking, 2)
                            opts = AcquisitionOptions(frame_rates=(1.0,), min_seconds=args.min_seconds)
                            warm_up(client, cell)
                            sums: dict[Any, Any] = {}
                            scratch = folder / "cells"
                            scratch.mkdir(exist_ok=True)

                            def trial(
                                rate: float,
                                cell: CellSpec = cell,
                                opts: AcquisitionOptions = opts,
                                sums: dict[Any, Any] = sums,
                            ) -> Any:
                                n = min(frames_total, math.ceil(rate * opts.min_seconds))
                                return paced_cell(client, cell, rate, opts, n, folder / "cells", sums)

                            top = ceilings[(codec, chunk)]
                            best, trials = find_max(trial, top, args.trials)
                            half = paced_cell(client, cell, max(best, 1.0) / 2, opts, None, scratch, sums)
                            cy, cx = chunking.shape[:2]
                            fill = cy * cx / max(best / 2, 1e-9) if cy * cx > 1 else 1 / max(best / 2, 1e-9)
                            row = rows.setdefault((backend, codec, chunk), {})
                            for key, value in (
                                ("ceiling", top),
                                ("max", best),
                                ("trials", len(trials)),
                                ("buffer", half.peak_backlog_frames),
                                ("buffer_target", half.implied_buffer_frames + 2 * 2 * cy * cx),
                                ("p99", half.latency_p99),
                                ("p99_target", max(2 * fill, 0.5)),
                                ("verified", float(half.verified and all(t.verified for t in trials))),
                            ):
                                row.setdefault(key, []).append(float(value))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"4d_diff {args.gib:g} GiB ({frames_total} frames of {frame_bytes} B), 2 workers, median of {args.runs} runs\n"
    )
    print(
        "| backend | codec | chunk | max rate (Hz) | GB/s | ceiling (Hz) | max / ceiling | buffer at max/2 (frames) "
        "| target | p99 at max/2 (s) | target | verified |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    table = {}
    for (backend, codec, chunk), row in rows.items():
        med = {k: statistics.median(v) for k, v in row.items()}
        table[f"{backend}/{codec}/{chunk}"] = {**med, "raw": row}
        print(
            f"| {backend} | {codec} | {chunk} | {med['max']:.0f} | {med['max'] * frame_bytes / 1e9:.3f} | "
            f"{med['ceiling']:.0f} | {med['max'] / med['ceiling']:.2f} | {med['buffer']:.0f} | "
            f"{med['buffer_target']:.0f} | {med['p99']:.3f} | {med['p99_target']:.3f} | {med['verified'] == 1} |"
        )
    print(f"\ncommand: python benchmarks/bench_acquire.py --gib {args.gib:g} --runs {args.runs} --trials {args.trials}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
