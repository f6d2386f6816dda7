"""``cubebench plan``: every cell's estimate and the disk a run needs, before anything runs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from tests.helpers import DIFF_32MIB, experiment

import cubebench
from cubebench.cli import main

if TYPE_CHECKING:
    from pathlib import Path

PLANNED = {
    "name": "planned",
    "datasets": [DIFF_32MIB],
    "backends": ["hdf5", "hdf5_direct", "csr"],
    "codecs": ["none", "gzip-6", "pcodec"],
    "chunks": ["real_space", "balanced"],
    "runs": 2,
    "warmup": True,
}


def test_plan_estimates_every_cell_and_the_disk_without_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    plan = cubebench.plan(experiment(PLANNED, layout="chunked"))
    assert len(plan.cells) == 3 * 3 * 2 and plan.runs == 2 and plan.threads == 2
    status = {(c.backend, c.codec, c.chunk): c.status for c in plan.cells}
    assert status["hdf5", "pcodec", "balanced"] == "unavailable"  # no HDF5 filter: as the run would record it
    assert status["csr", "gzip-6", "real_space"] == "unavailable"  # csr stores raw arrays
    assert status["csr", "none", "balanced"] == "unavailable"  # one chunking only: the whole array
    assert status["hdf5_direct", "gzip-6", "balanced"] == "run"
    seconds = {(c.backend, c.codec, c.chunk): c.seconds for c in plan.cells}
    # the filter path compresses on one core, the direct path on both worker threads
    assert seconds["hdf5", "gzip-6", "balanced"] > 1.5 * seconds["hdf5_direct", "gzip-6", "balanced"]
    running = [c.seconds for c in plan.cells if c.status == "run"]
    assert all(math.isfinite(s) and s > 0 for s in running)
    assert plan.total_seconds == pytest.approx(2 * sum(running))
    assert plan.datasets == {"diff": 32 * 2**20}
    assert plan.staging_bytes == 2 * 32 * 2**20  # the staged cube and the balanced chunking's chunk-major copy
    assert plan.scratch_bytes >= 32 * 2**20  # 'none' stores the cube as it is
    assert cubebench.plan(experiment(PLANNED, layout="source")).staging_bytes == 32 * 2**20
    assert list(tmp_path.iterdir()) == []  # no results folder, no scratch


def test_plan_marks_the_cells_over_budget_as_the_run_skips_them() -> None:
    exp = experiment(PLANNED, codecs=["gzip-9", "blosc-lz4"], backends=["hdf5"])
    seconds = {c.codec: c.seconds for c in cubebench.plan(exp).cells}
    assert seconds["gzip-9"] > 10 * seconds["blosc-lz4"]  # gzip-9 runs at MB/s, blosc-lz4 at GB/s
    # a budget between the two (their geometric mean), so that the machine's load cannot move either across it
    budget = round((seconds["gzip-9"] * seconds["blosc-lz4"]) ** 0.5, 3)
    plan = cubebench.plan(dict(exp, max_cell_seconds=budget))
    status = {c.codec: c.status for c in plan.cells}
    assert status["gzip-9"] == "skipped" and status["blosc-lz4"] == "run"
    reasons = [c.reason for c in plan.cells if c.status == "skipped"]
    assert reasons and all(f"> max_cell_seconds {budget:g}" in r for r in reasons)
    text = str(plan)
    assert "2 run, 2 skipped" in text and "2 cells over max_cell_seconds skipped" in text


def test_plan_agrees_with_the_estimate_the_run_records(tmp_path: Path) -> None:
    """The same sample, the same formula: within the noise of timing a few MiB once."""
    exp = experiment(PLANNED, backends=["hdf5_direct"], codecs=["gzip-6"], chunks=["balanced"], runs=1, warmup=False)
    planned = cubebench.plan(exp).cells[0].seconds
    ds = cubebench.run(exp, out=tmp_path / "r", progress=False)
    recorded = float(ds["estimate_seconds"].item())
    assert 1 / 3 < planned / recorded < 3


def test_cli_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump(
            experiment(
                PLANNED,
            )
        )
    )
    assert main(["plan", str(path), "--scale", "0.5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("experiment planned: 18 cells (9 run, 9 unavailable) x 2 runs")
    assert "dataset diff: 8.0 MiB uncompressed" in out  # --scale 0.5 of a 16 x 16 scan
    assert "\ntotal: about " in out
    assert main(["plan", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_each_stored_chunk_adds_its_backends_cost_to_the_estimate() -> None:
    """Single-frame Zarr cells are the slowest by far (a file per frame): the estimate counts the files."""
    from cubebench.backends import BACKENDS

    plan = cubebench.plan(
        experiment(PLANNED, backends=["zarr", "hdf5"], codecs=["none"], chunks=["balanced", "single_frame"])
    )
    seconds = {(c.backend, c.chunk): c.seconds for c in plan.cells}
    for backend in ("zarr", "hdf5"):  # 16 x 16 frames: 256 chunks against 4 (2 x 2 detector quarters)
        extra = seconds[backend, "single_frame"] - seconds[backend, "balanced"]
        assert extra == pytest.approx(252 * BACKENDS[backend].chunk_seconds)
    assert BACKENDS["zarr"].chunk_seconds > BACKENDS["zarr_direct"].chunk_seconds > 0
