"""Where the performance goals stand over several runs of ``bench_throughput.py``: median, range, runs that met.

This host is shared and its speed drifts from minute to minute, so one run of the benchmark says little about a
goal near its threshold. Run the benchmark several times (each writes one JSON report) and summarize them::

    for i in 1 2 3 4 5; do python benchmarks/bench_throughput.py --gib 1 --out benchmarks/out/t$i.json; done
    python benchmarks/goals.py benchmarks/out/t*.json

Prints the README's goals tables (Markdown): for each goal, worker kind and codec, the median over the runs that
measured it, its range, and in how many of them the goal was met.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

Report = dict[str, Any]
#: A goal's measurement in one report, or None when that report did not measure it (an older benchmark).
Measure = Callable[[Report], float | None]

CODECS = ("blosc-zstd", "blosc-lz4")
WORKERS = ("processes", "threads")


def cell(report: Report, workers: str, backend: str, codec: str) -> dict[str, Any] | None:
    """The matrix row of one backend x codec on one kind of workers, if the report has it."""
    for row in report.get("matrix", []):
        if (row["workers"], row["backend"], row["codec"]) == (workers, backend, codec):
            return dict(row)
    return None


def efficiency(backend: str, key: str, workers: str, codec: str) -> Measure:
    """Throughput over twice the one-core codec speed (``write_eff`` or ``read_eff``)."""

    def measure(report: Report) -> float | None:
        row = cell(report, workers, backend, codec)
        return None if row is None else float(row[key])

    return measure


def speedup(fast: str, slow: str, key: str, workers: str, codec: str) -> Measure:
    """``fast``'s throughput over ``slow``'s (``write_GBps`` or ``read_GBps``) in the same run."""

    def measure(report: Report) -> float | None:
        a, b = cell(report, workers, fast, codec), cell(report, workers, slow, codec)
        return None if a is None or b is None else float(a[key]) / float(b[key])

    return measure


def bare(key: str, workers: str, codec: str) -> Measure:
    """The framework-free pipeline's efficiency measured around the run (``write_eff`` or ``read_eff``)."""

    def measure(report: Report) -> float | None:
        around = report.get("bare_around", {}).get(workers, {}).get(codec)
        return None if around is None else float(around[key])

    return measure


def baseline(key: str, workers: str) -> Measure:
    """cubebench's wall time or peak memory over the study-style script's, on the same matrix."""

    def measure(report: Report) -> float | None:
        ours = report.get("cubebench_same_matrix", {}).get(workers)
        return None if ours is None else float(ours[key]) / float(report["baseline"][key])

    return measure


def scaling(backend: str, key: str) -> Measure:
    """Seconds with one worker over seconds with two (``write_s`` or ``read_s``)."""

    def measure(report: Report) -> float | None:
        runs = report.get("scaling", {})
        runs = runs.get(backend) if backend in runs or backend != "zarr" else runs  # oldest: zarr only, unnamed
        if not runs or "1" not in runs:
            return None
        return float(runs["1"][key]) / float(runs["2"][key])

    return measure


def summary(reports: list[Report], measure: Measure, met: Callable[[float], bool], unit: str = "") -> str:
    """``median (min-max), met n/N`` over the reports that measured it."""
    values = [v for v in (measure(r) for r in reports) if v is not None]
    if not values:
        return "-"
    median, low, high = statistics.median(values), min(values), max(values)
    count = sum(met(v) for v in values)
    return f"{median:.2f}{unit} ({low:.2f}-{high:.2f}{unit}), {count}/{len(values)}"


def at_least(goal: float) -> Callable[[float], bool]:
    """Met when the value reaches ``goal``."""
    return lambda value: value >= goal


def at_most(goal: float) -> Callable[[float], bool]:
    """Met when the value stays within ``goal``."""
    return lambda value: value <= goal


def codec_table(reports: list[Report]) -> list[str]:
    """The per-codec goals: efficiency and the direct path over the filter path."""
    columns = [(codec, workers) for codec in CODECS for workers in WORKERS]
    rows: list[tuple[str, Callable[[str, str], Measure], Callable[[float], bool], str]] = [
        (
            "`hdf5_direct` write efficiency >= 0.8",
            lambda w, c: efficiency("hdf5_direct", "write_eff", w, c),
            at_least(0.8),
            "",
        ),
        (
            "`hdf5_direct` read efficiency >= 0.7",
            lambda w, c: efficiency("hdf5_direct", "read_eff", w, c),
            at_least(0.7),
            "",
        ),
        (
            "Zarr write efficiency >= 0.8: `zarr_direct`",
            lambda w, c: efficiency("zarr_direct", "write_eff", w, c),
            at_least(0.8),
            "",
        ),
        ("(through zarr-python: `zarr`)", lambda w, c: efficiency("zarr", "write_eff", w, c), at_least(0.8), ""),
        (
            "Zarr read efficiency >= 0.7: `zarr_direct`",
            lambda w, c: efficiency("zarr_direct", "read_eff", w, c),
            at_least(0.7),
            "",
        ),
        ("(through zarr-python: `zarr`)", lambda w, c: efficiency("zarr", "read_eff", w, c), at_least(0.7), ""),
        (
            "`hdf5_direct` / `hdf5` write >= 1.7x",
            lambda w, c: speedup("hdf5_direct", "hdf5", "write_GBps", w, c),
            at_least(1.7),
            "x",
        ),
        (
            "`hdf5_direct` / `hdf5` read >= 1.7x",
            lambda w, c: speedup("hdf5_direct", "hdf5", "read_GBps", w, c),
            at_least(1.7),
            "x",
        ),
        (
            "for reference, no Dask and no single writer (bare): write efficiency",
            lambda w, c: bare("write_eff", w, c),
            at_least(0.8),
            "",
        ),
        ("for reference, bare: read efficiency", lambda w, c: bare("read_eff", w, c), at_least(0.7), ""),
    ]
    lines = [
        "| goal | " + " | ".join(f"{codec}, {workers}" for codec, workers in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, make, met, unit in rows:
        cells = [summary(reports, make(workers, codec), met, unit) for codec, workers in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def run_table(reports: list[Report]) -> list[str]:
    """The goals of the whole run: against the study-style script, and scaling from one worker to two."""
    lines = ["| goal | processes | threads |", "|---|---|---|"]
    for name, key, met in [
        ("study-style baseline: wall time <= 0.5x the script's", "wall_seconds", at_most(0.5)),
        ("study-style baseline: peak memory <= 0.25x the script's", "peak_rss", at_most(0.25)),
    ]:
        cells = [summary(reports, baseline(key, workers), met, "x") for workers in WORKERS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for backend in ("zarr", "zarr_direct"):
        for key, what in [("write_s", "writes"), ("read_s", "reads")]:
            value = summary(reports, scaling(backend, key), at_least(1.7), "x")
            lines.append(f"| scaling 1 -> 2 workers >= 1.7x, `{backend}` {what} (blosc-zstd) | {value} | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of bench_throughput.py")
    args = parser.parse_args()
    reports = [json.loads(path.read_text()) for path in args.reports]
    print(f"Over {len(reports)} runs; each cell: median (range), runs that met the goal / runs that measured it.\n")
    print("\n".join(codec_table(reports)))
    print()
    print("\n".join(run_table(reports)))


if __name__ == "__main__":
    main()
