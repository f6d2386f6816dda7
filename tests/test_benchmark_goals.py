"""benchmarks/goals.py, the summary of several benchmark runs that README's goals tables come from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

GOALS = Path(__file__).resolve().parents[1] / "benchmarks" / "goals.py"


def report(write_eff: float, ratio: float, wall: float, with_zarr_direct: bool) -> dict[str, Any]:
    """A benchmark report holding what the goals read (an older report lacks ``zarr_direct`` and the bare runs)."""
    matrix = []
    for workers in ("processes", "threads"):
        for codec in ("blosc-zstd", "blosc-lz4"):
            for backend in ("hdf5", "hdf5_direct", "zarr", *(["zarr_direct"] if with_zarr_direct else [])):
                speed = ratio if backend == "hdf5_direct" else 1.0
                row = {"workers": workers, "backend": backend, "codec": codec, "write_eff": write_eff}
                matrix.append(row | {"read_eff": 0.5, "write_GBps": speed, "read_GBps": speed})
    out: dict[str, Any] = {
        "matrix": matrix,
        "baseline": {"wall_seconds": 10.0, "peak_rss": 100},
        "cubebench_same_matrix": {k: {"wall_seconds": wall, "peak_rss": 30} for k in ("processes", "threads")},
        "scaling": {"zarr": {"1": {"write_s": 3.6, "read_s": 1.0}, "2": {"write_s": 2.0, "read_s": 1.0}}},
    }
    if with_zarr_direct:
        eff = {"write_eff": 0.9, "read_eff": 0.6}
        out["bare_around"] = {k: {c: eff for c in ("blosc-zstd", "blosc-lz4")} for k in ("processes", "threads")}
    return out


def table_rows(markdown: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines()]
    return {row[0]: row[1:] for row in rows if len(row) > 1}


def test_goals_summarize_median_range_and_runs_that_met_them(tmp_path: Path) -> None:
    runs = [(0.7, 1.6, 4.0, False), (0.9, 1.8, 6.0, True), (0.85, 2.0, 5.0, True)]
    paths = [tmp_path / f"t{i}.json" for i in range(len(runs))]
    for path, run in zip(paths, runs, strict=True):
        path.write_text(json.dumps(report(*run)))
    done = subprocess.run([sys.executable, str(GOALS), *map(str, paths)], capture_output=True, text=True, check=True)
    rows = table_rows(done.stdout)
    assert rows["`hdf5_direct` write efficiency >= 0.8"][0] == "0.85 (0.70-0.90), 2/3"
    assert rows["Zarr write efficiency >= 0.8: `zarr_direct`"][0] == "0.88 (0.85-0.90), 2/2"  # the newer two only
    assert rows["`hdf5_direct` / `hdf5` write >= 1.7x"][0] == "1.80x (1.60-2.00x), 2/3"
    assert rows["for reference, bare: read efficiency"][3] == "0.60 (0.60-0.60), 0/2"
    assert rows["study-style baseline: wall time <= 0.5x the script's"] == ["0.50x (0.40-0.60x), 2/3"] * 2
    assert rows["study-style baseline: peak memory <= 0.25x the script's"][1] == "0.30x (0.30-0.30x), 0/3"
    assert rows["scaling 1 -> 2 workers >= 1.7x, `zarr` writes (blosc-zstd)"][0] == "1.80x (1.80-1.80x), 3/3"
    assert rows["scaling 1 -> 2 workers >= 1.7x, `zarr_direct` writes (blosc-zstd)"][0] == "-"  # never measured
