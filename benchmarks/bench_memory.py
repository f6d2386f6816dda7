"""Peak resident memory of a whole cubebench run (client, scheduler and workers together), sampled from outside.

    python benchmarks/bench_memory.py configs/memory_8gib.yaml [--out benchmarks/out/memory]

Runs ``cubebench run EXPERIMENT`` in a child process, samples the resident set of its whole process tree every
50 ms, and prints the peak beside the cube size and each cell's own ``peak_memory_bytes``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from cubebench.memory import tree_rss

GIB = 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--out", default="benchmarks/out/memory")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cubebench.cli", "run", args.experiment, "--out", str(out), "--no-progress"]
    )
    root = psutil.Process(proc.pid)
    peak, peak_at = 0, 0.0
    while proc.poll() is None:
        try:
            rss = tree_rss(root)
        except psutil.NoSuchProcess:
            break
        if rss > peak:
            peak, peak_at = rss, time.perf_counter() - start
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"cubebench run failed with exit code {proc.returncode}")
    from cubebench.results import load_results

    ds = load_results(out)
    cube = float(ds["source_bytes"].max()) / GIB
    print(
        f"\ncube {cube:.2f} GiB; wall {wall:.0f} s; peak RSS of all processes {peak / GIB:.2f} GiB "
        f"(at {peak_at:.0f} s)\n"
    )
    print("| backend | chunk | status | ratio | write GiB/s | read GiB/s | cell peak memory GiB |")
    print("|---|---|---|---|---|---|---|")
    for backend in ds["backend"].values:
        for chunk in ds["chunk"].values:
            others = {dim: 0 for dim in ("dataset", "storage", "codec", "run") if dim in ds.dims}
            cell = ds.sel(backend=backend, chunk=chunk).isel(others)
            print(
                f"| {backend} | {chunk} | {cell['status'].item()} | {float(cell['ratio']):.2f} | "
                f"{float(cell['write_GiBps']):.3f} | {float(cell['read_GiBps']):.3f} | "
                f"{float(cell['peak_memory_bytes']) / GIB:.2f} |"
            )


if __name__ == "__main__":
    main()
