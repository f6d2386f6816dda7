"""Write and read GiB/s and peak memory of the Zarr peers beside cubebench's own paths, on one synthetic cube.

    python benchmarks/bench_peers.py --gib 1 --runs 3 [--out benchmarks/out/peers]

The 4d_diff preset (about ``--gib`` GiB, generated once into an uncompressed ``.npy`` that every run reads in
place), blosc-zstd and blosc-lz4, balanced and single_frame chunks, unsharded and sharded (``zarr: {shards:
true}``: each chunk strategy's shape one shard of single frames), 2 worker processes, warm page cache: ``zarr``
(zarr-python's codec pipeline), ``zarr`` + zarrs (``zarr: {codec_pipeline: zarrs}``), ``zarr_direct``,
``tensorstore``, and the HDF5 paths ``hdf5``, ``hdf5_direct`` (and ``hdf5_vds`` where it is registered; HDF5 has
no shards, so they run unsharded only). Every cell is verified chunk by chunk. Medians over ``--runs`` runs
(interleaved inside each ``cubebench run``); peak memory is the cell's ``peak_memory_bytes`` (all processes).
Prints a Markdown table, the command line, and whether ``zarr_direct`` is at least as fast as tensorstore and
zarrs in each cell; the raw results stay in ``--out`` (one results folder per run call) with a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CODECS = ["blosc-zstd", "blosc-lz4"]
CHUNKS = ["balanced", "single_frame"]
ZARR_BACKENDS = ["zarr", "zarr_direct", "tensorstore"]
HDF5_BACKENDS = ["hdf5", "hdf5_direct", "hdf5_vds"]
GIB = 2**30


def make_cube(gib: float, folder: Path) -> Path:
    """Generate the synthetic 4d_diff cube of about ``gib`` GiB once, as .npy (128 scan rows of 256 x 256 frames)."""
    import dask

    import cubebench

    frames = int(gib * GIB) // (256 * 256 * 2)
    sy = min(128, max(1, frames))
    sx = max(1, frames // sy)
    cube = cubebench.open_cube({"preset": "4d_diff", "shape": [sy, sx, 256, 256], "name": "bench"})
    path = folder / "bench.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=cube.data.dtype, shape=cube.data.shape)
    with dask.config.set(scheduler="threads", num_workers=2):
        cube.data.store(out, lock=False)
    out.flush()
    del out
    return path


def calls(registered: list[str]) -> list[tuple[str, list[str], dict[str, Any]]]:
    """The ``cubebench run`` calls: (label, backends, zarr settings), one per pipeline x sharding."""
    hdf5 = [b for b in HDF5_BACKENDS if b in registered]
    zarr = [b for b in ZARR_BACKENDS if b in registered]
    return [
        ("unsharded", [*zarr, *hdf5], {"shards": False}),
        ("unsharded-zarrs", ["zarr"], {"shards": False, "codec_pipeline": "zarrs"}),
        ("sharded", zarr, {"shards": True}),
        ("sharded-zarrs", ["zarr"], {"shards": True, "codec_pipeline": "zarrs"}),
    ]


def run_call(cube: Path, label: str, backends: list[str], zarr: dict[str, Any], args: argparse.Namespace) -> Any:
    """One ``cubebench run`` of the matrix for ``backends`` under ``zarr`` settings; its results Dataset."""
    import cubebench

    exp = {
        "name": f"peers-{label}",
        "datasets": [{"path": str(cube), "name": "bench"}],
        "backends": backends,
        "codecs": CODECS,
        "chunks": CHUNKS,
        "runs": args.runs,
        "zarr": zarr,
        "scratch": str(args.out / "scratch"),
        "cluster": {"workers": args.workers, "threads_per_worker": 1, "codec_threads": 1},
    }
    out = args.out / label
    shutil.rmtree(out, ignore_errors=True)
    return cubebench.run(exp, out=out, progress=False)


def rows(ds: Any, label: str) -> list[dict[str, Any]]:
    """One row per backend x codec x chunk of a run call: medians over its runs (local storage)."""
    if "storage" in ds.dims:
        ds = ds.sel(storage="local")
    out = []
    for backend in ds["backend"].values:
        for codec in ds["codec"].values:
            for chunk in ds["chunk"].values:
                cell = ds.sel(dataset="bench", backend=backend, codec=codec, chunk=chunk)
                status = sorted(set(cell["status"].values.tolist()))
                pipeline = str(cell["codec_pipeline"].values.ravel()[0])
                name = f"{backend} + zarrs" if pipeline == "zarrs" else str(backend)
                ok = cell["status"].values == "ok"
                out.append(
                    {
                        "backend": name,
                        "codec": str(codec),
                        "chunk": str(chunk),
                        "sharded": label.startswith("sharded"),
                        "status": "/".join(status),
                        "reason": next((str(r) for r in cell["reason"].values if r), ""),
                        "runs": int(ok.sum()),
                        "ratio": _median(cell["ratio"].values[ok]),
                        "write_GiBps": _median(cell["write_GiBps"].values[ok]),
                        "read_GiBps": _median(cell["read_GiBps"].values[ok]),
                        "peak_GiB": _median(cell["peak_memory_bytes"].values[ok] / GIB),
                    }
                )
    return out


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def print_table(table: list[dict[str, Any]], command: str) -> None:
    """The Markdown table (sorted by codec, chunk, sharding, backend) and the command that made it."""
    print(f"\n```console\n$ {command}\n```\n")
    print("| codec | chunk | sharded | backend | write GiB/s | read GiB/s | peak memory GiB | ratio | runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    order = {name: i for i, name in enumerate([*ZARR_BACKENDS, "zarr + zarrs", *HDF5_BACKENDS])}
    for r in sorted(table, key=lambda r: (r["codec"], r["chunk"], r["sharded"], order.get(r["backend"], 99))):
        if r["runs"]:
            numbers = f"{r['write_GiBps']:.2f} | {r['read_GiBps']:.2f} | {r['peak_GiB']:.2f} | {r['ratio']:.2f}"
        else:
            numbers = f"{r['status']}: {r['reason']} | | | "
        sharded = "yes" if r["sharded"] else "no"
        print(f"| {r['codec']} | {r['chunk']} | {sharded} | {r['backend']} | {numbers} | {r['runs']} |")


def print_targets(table: list[dict[str, Any]]) -> None:
    """Whether zarr_direct writes and reads at least as fast as tensorstore and zarr + zarrs, cell by cell."""
    print("\nzarr_direct against the peers (median GiB/s; >= is the target):\n")
    cells = {(r["codec"], r["chunk"], r["sharded"], r["backend"]): r for r in table}
    for (codec, chunk, sharded, backend), r in sorted(cells.items()):
        if backend != "zarr_direct":
            continue
        for peer in ("tensorstore", "zarr + zarrs"):
            other = cells.get((codec, chunk, sharded, peer))
            if other is None or not other["runs"] or not r["runs"]:
                continue
            verdicts = []
            for what in ("write_GiBps", "read_GiBps"):
                mark = ">=" if r[what] >= other[what] else "<"
                verdicts.append(f"{what.split('_')[0]} {r[what]:.2f} {mark} {other[what]:.2f}")
            where = f"{codec} {chunk} {'sharded' if sharded else 'unsharded'}"
            print(f"- {where}, vs {peer}: " + "; ".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="cube size in GiB (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell; medians are reported (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/peers"), help="results folder")
    args = parser.parse_args()
    from cubebench.backends import BACKENDS

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cube = make_cube(args.gib, args.out)
    table: list[dict[str, Any]] = []
    try:
        for label, backends, zarr in calls(list(BACKENDS)):
            table.extend(rows(run_call(cube, label, backends, zarr, args), label))
    finally:
        cube.unlink(missing_ok=True)
        shutil.rmtree(args.out / "scratch", ignore_errors=True)
    command = shlex.join(["python", "benchmarks/bench_peers.py", *sys.argv[1:]])
    (args.out / "peers.json").write_text(json.dumps({"command": command, "rows": table}, indent=1))
    print_table(table, command)
    print_targets(table)
    print(f"\n{time.perf_counter() - start:.0f} s in all; results in {args.out}")


if __name__ == "__main__":
    main()
