"""Reports and recommendations of results measured on REAL S3 (a SeaweedFS cubebench starts on loopback).

One tiny run for the module (a 4 x 4 scan of 64 x 64 frames, one codec, two backends, the frame pattern) on local
disk and on S3 at 0 and 20 ms per request: the latency sweep figure and its table, the report's HDF5-vs-Zarr table
per storage, and ``cubebench recommend --storage``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pytest
from tests.helpers import DIFF, experiment

from cubebench.cli import main
from cubebench.report import write_report
from cubebench.report.latency import latency_figure, latency_frame, swept_storages
from cubebench.results import load_results
from cubebench.storage.client import obstore_unavailable
from cubebench.storage.server import DEFAULT_SERVER, server_unavailable

if TYPE_CHECKING:
    from pathlib import Path

    import xarray as xr

pytestmark = pytest.mark.slow

BACKENDS = ["hdf5_direct", "zarr_direct"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on local disk, S3 and S3 at 20 ms per request; its results folder."""
    why = server_unavailable(DEFAULT_SERVER) or obstore_unavailable()
    if why:
        if os.environ.get("CUBEBENCH_REQUIRE_S3") == "1":
            pytest.fail(f"CUBEBENCH_REQUIRE_S3=1 but {why}")
        pytest.skip(why)
    from cubebench.runner import run

    out = tmp_path_factory.mktemp("s3report") / "res"
    storages = ["local", {"kind": "s3", "server": "local"}, {"kind": "s3", "server": "local", "latency_ms": 20}]
    exp = experiment(
        name="s3report",
        datasets=[{**DIFF, "scale": 0.0078125}],
        backends=BACKENDS,
        codecs=["blosc-lz4"],
        storage=storages,
        access_patterns=["frame"],
    )
    run(exp, out, progress=False)
    return out


@pytest.fixture(scope="module")
def ds(results: Path) -> xr.Dataset:
    return load_results(results)


def test_the_latency_sweep_has_a_row_per_access_backend_and_latency(ds: xr.Dataset) -> None:
    assert swept_storages(ds) == {"s3": 0.0, "s3-20ms": 20.0}  # local disk is not part of the sweep
    frame = latency_frame(ds)
    assert len(frame) == 2 * 2 * 2  # (full, frame) x backends x (0, 20) ms
    assert set(frame["access"]) == {"full", "frame"} and set(frame["backend"]) == set(BACKENDS)
    for (access, backend), line in frame.groupby(["access", "backend"]):
        line = line.sort_values("latency_ms")
        assert list(line["latency_ms"]) == [0.0, 20.0]
        slower = line["read_seconds"].iloc[1] - line["read_seconds"].iloc[0]
        assert slower > 0.015, (access, backend, list(line["read_seconds"]))  # at least one 20 ms round trip
        assert (line["read_requests"] > 0).all()
    assert latency_figure(frame) is not None


def test_no_sweep_no_figure_and_no_error(ds: xr.Dataset, tmp_path: Path) -> None:
    one = ds.sel(storage=["local", "s3"])
    assert swept_storages(one) == {} and latency_frame(one).empty and latency_figure(latency_frame(one)) is None
    index = write_report(one, tmp_path / "report", html=False)
    assert "latency" not in index.read_text() and not (tmp_path / "report" / "figures").exists()


def test_the_report_links_the_sweep_and_compares_hdf5_and_zarr_per_storage(results: Path) -> None:
    assert main(["report", str(results)]) == 0
    report = results / "report"
    index = (report / "index.md").read_text()
    assert "figures/latency_sweep.png" in index and "tables/latency_sweep.csv" in index
    assert (report / "figures" / "latency_sweep.png").stat().st_size > 0
    assert "latency_sweep.png" in (report / "index.html").read_text()
    for column in ("ratio", "write GiB/s", "read GiB/s", "requests / cell", "objects / cell"):
        assert column in index
    table = (report / "tables" / "storage.csv").read_text().splitlines()
    assert len(table) == 1 + 3 * len(BACKENDS)  # a row per storage and backend
    assert {f"storage-{s}" for s in ("local", "s3", "s3-20ms")} <= {p.name for p in report.iterdir()}


def test_recommend_for_reading_on_s3(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(results), "--for", "read", "--storage", "s3"]) == 0
    text = capsys.readouterr().out
    assert any(backend in text for backend in BACKENDS) and "blosc-lz4" in text
    assert main(["recommend", str(results), "--for", "read"]) == 2  # several storages: say which
    assert "--storage" in capsys.readouterr().err


def test_latency_frame_reads_only_ok_verified_cells(ds: xr.Dataset) -> None:
    broken = ds.copy(deep=True)
    broken["status"].loc[{"backend": "zarr_direct"}] = "failed"
    frame = latency_frame(broken)
    assert set(frame["backend"]) == {"hdf5_direct"} and np.isfinite(frame["read_seconds"]).all()
