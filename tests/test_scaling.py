"""The scaling model (cubebench.scaling, ``cubebench scaling``): parsing, and predictions from a real tiny run.

The run test measures a small matrix with 1 and 2 workers and checks the prediction's shape: finite, never
falling with more nodes, capped by the storage, the single writer and one core where the model says. Its
accuracy (prediction vs measurement) is printed by ``cubebench scaling --check``, not asserted: timing here is
noisy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

import cubebench
from cubebench.cli import main
from cubebench.errors import ConfigError
from cubebench.scaling import (
    GIB,
    measured_rates,
    parse_bandwidth,
    parse_nodes,
    predict,
    prediction_check,
    recorded_kinds,
    scaling_report,
)

if TYPE_CHECKING:
    from pathlib import Path

    import xarray as xr


def test_parse_nodes_and_bandwidth() -> None:
    assert parse_nodes("1,2,4,...,64") == (1, 2, 4, 8, 16, 32, 64)
    assert parse_nodes("1, 3, 9, ..., 100") == (1, 3, 9, 27, 81, 100)
    assert parse_nodes("2,5") == (2, 5)
    for bad in ("", "0,1", "4,2", "1,...,8", "1,2,...", "a,b"):
        with pytest.raises(ConfigError, match="nodes"):
            parse_nodes(bad)
    assert parse_bandwidth("10GB/s") == 10e9
    assert parse_bandwidth("1.5GiB/s") == 1.5 * GIB
    assert parse_bandwidth("800 MB/s") == 800e6
    assert parse_bandwidth("2e9") == 2e9
    for bad in ("fast", "0GB/s", "-1GB/s"):
        with pytest.raises(ConfigError, match="storage bandwidth"):
            parse_bandwidth(bad)


def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["scaling", str(tmp_path / "nothing"), "--nodes", "1,2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cubebench: error: ") and err.count("\n") == 1


BACKENDS = ["hdf5", "hdf5_direct", "hdf5_vds", "zarr_direct"]


def tiny_run(folder: Path, workers: int) -> xr.Dataset:
    exp = {
        "name": f"scaling-{workers}",
        "datasets": [{"preset": "4d_diff", "scale": 0.03125}],
        "backends": BACKENDS,
        "codecs": ["none", "blosc-lz4"],
        "chunks": ["balanced"],
        "runs": 1,
        "warmup": False,
        "cluster": {"workers": workers},
    }
    return cubebench.run(exp, out=folder, progress=False)


@pytest.mark.slow  # two real runs of 8 cells on an 8 MiB cube: about 30-60 s here
def test_prediction_from_one_worker_is_finite_monotone_and_capped(tmp_path: Path) -> None:
    one, two = tiny_run(tmp_path / "one", 1), tiny_run(tmp_path / "two", 2)
    kinds = recorded_kinds(one)
    assert kinds is not None and kinds["hdf5"] == ("one_process", "one_process")
    assert kinds["hdf5_direct"] == ("one_writer", "workers") and kinds["hdf5_vds"] == ("workers", "workers")
    rates = measured_rates(one, kinds)
    assert set(rates["backend"]) == set(BACKENDS) and (rates["threads"] == 1).all()
    bandwidth = 2e9
    pred = predict(rates, (1, 2, 4, 8, 16, 32, 64), bandwidth)
    assert np.isfinite(pred[["write_GiBps", "read_GiBps"]].to_numpy()).all()
    assert (pred[["write_GiBps", "read_GiBps"]] > 0).all().all()
    for _, cell in pred.groupby(["backend", "codec"]):
        cell = cell.sort_values("nodes")
        assert (np.diff(cell["write_GiBps"]) >= 0).all() and (np.diff(cell["read_GiBps"]) >= 0).all()
    at_64 = pred[pred["nodes"] == 64].merge(rates, on=["dataset", "backend", "codec", "chunk"], suffixes=("", "_1"))
    cap = bandwidth / GIB * at_64["ratio"]
    assert (at_64["write_GiBps"] <= cap * (1 + 1e-9)).all() and (at_64["read_GiBps"] <= cap * (1 + 1e-9)).all()
    linear = at_64[at_64["writes"] == "workers"]  # linear in threads until the storage
    expected = np.minimum(linear["write_GiBps_1"] * linear["threads"] / linear["threads_1"], cap[linear.index])
    assert np.allclose(linear["write_GiBps"], expected)
    assert (linear["threads"] == 64).all()  # 1 worker per node, as measured
    hdf5 = at_64[at_64["backend"] == "hdf5"]
    assert np.allclose(hdf5["write_GiBps"], np.minimum(hdf5["write_GiBps_1"], cap[hdf5.index]))  # one core
    direct = at_64[at_64["backend"] == "hdf5_direct"]
    assert (direct["write_GiBps"] <= direct["writer_GiBps"] * direct["ratio"] * (1 + 1e-9)).all()
    assert set(direct["write_limit"]) <= {"writer", "storage"}
    # the check against 2 workers: every common cell predicted, finite (accuracy is reported, not asserted)
    check = prediction_check(rates, measured_rates(two, kinds), bandwidth)
    assert len(check) == len(rates) and (check["threads"] == 2).all()
    assert np.isfinite(check[["write_predicted", "read_predicted", "write_error", "read_error"]].to_numpy()).all()
    text = scaling_report(one, "1,2,4", "2GB/s", check=two)
    assert "Predicted write GiB/s" in text and "Prediction vs measurement" in text
    print(text)
    assert main(["scaling", str(tmp_path / "one"), "--nodes", "1,2,...,8", "--check", str(tmp_path / "two")]) == 0
    # the report draws the model's figure from the results alone
    from cubebench.report import write_report

    write_report(two, tmp_path / "report", html=False)
    assert (tmp_path / "report" / "figures" / "scaling.png").stat().st_size > 0
