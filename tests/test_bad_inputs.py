"""Bad inputs through the real CLI: exit code 2, one line on stderr naming the culprit, no traceback, and the
results already in the output folder untouched.

Complements tests/test_cli.py (unknown codec/chunk/backend/preset/key, malformed YAML, zero or short chunk tuples,
address + jobqueue, missing file, unreachable scheduler) and the library-level checks in tests/test_sources.py and
tests/test_experiment.py; every case here goes through ``cubebench.cli.main`` with ``--resume`` into a folder
that already holds results, so a failing run must leave them as they were.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pytest
import yaml

from cubebench.cli import main
from cubebench.results import CellResult, ResultsLog, records_to_dataset, save_results

if TYPE_CHECKING:
    from pathlib import Path

PRESET = {"preset": "4d_diff", "scale": 0.03125}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Broken inputs of every kind, made once."""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "dir.h5").mkdir()  # a directory where a file is expected
    os.mkfifo(folder / "fifo.h5")  # a FIFO: reading it would block forever (root can read anything else)
    rng = np.random.default_rng(0)
    (folder / "random.h5").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with h5py.File(folder / "arrays.h5", "w") as f:
        f["cube"] = np.ones((4, 4, 16, 16), np.uint16)
        f["flat"] = np.zeros((4, 4), np.uint16)
        f["five"] = np.zeros((2, 2, 2, 2, 2), np.uint16)
        f["cplx"] = np.zeros((2, 2, 4, 4), np.complex64)
        f["flag"] = np.zeros((2, 2, 4, 4), bool)
        f["empty"] = np.zeros((2, 0, 4, 4), np.uint16)
        f.create_dataset("text", shape=(2, 2, 2, 2), dtype=h5py.string_dtype())  # object (vlen str)
    raw = (folder / "arrays.h5").read_bytes()
    (folder / "cut.h5").write_bytes(raw[: len(raw) // 2])
    header = b"MQ1,000001,00384,01,0016,0016,U16,   1x1,01,2020-01-01 00:00:00.000000,0.000000,0,0,0"
    frame = header.ljust(384, b" ") + np.ones((16, 16), ">u2").tobytes()
    (folder / "cut.mib").write_bytes(frame * 3 + frame[:200])  # 3 frames and a half, 4 needed
    (folder / "regular_file").write_text("not a folder\n")
    with h5py.File(folder / "unreadable.h5", "w") as f:  # opens well; one compressed chunk cannot be decoded
        ds = f.create_dataset("cube", shape=(4, 4, 16, 16), dtype=np.uint16, chunks=(1, 1, 16, 16), compression="gzip")
        ds[...] = rng.poisson(0.5, size=ds.shape)
        offset = ds.id.get_chunk_info(5).byte_offset
    with open(folder / "unreadable.h5", "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 32)
    return folder


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder from an earlier run (a log, results.nc, results.csv, experiment and dataset info)."""
    folder = tmp_path_factory.mktemp("earlier")
    cell = CellResult("diff", "zarr", "none", "balanced", 0, "8x8x128x128", "ok", "", True, 2**23, 2**23, 0.1, 0.1)
    ResultsLog(folder / "cells.jsonl").append(cell)
    save_results(records_to_dataset([cell]), folder)
    (folder / "experiment.json").write_text('{"name": "earlier"}\n')
    (folder / "datasets.json").write_text('{"diff": {}}\n')
    return folder


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and modification time of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_cli(folder: Path, text: str, *extra: str, out: Path) -> int:
    path = folder / "exp.yaml"
    path.write_text(text)
    return main(["run", str(path), "--out", str(out), "--no-progress", *extra])


def yaml_text(**entries: Any) -> str:
    raw: dict[str, Any] = {
        "name": "bad",
        "datasets": [PRESET],
        "codecs": ["none"],
        "backends": ["zarr"],
        "chunks": ["balanced"],
        "runs": 1,
        "warmup": False,
    }
    raw.update(entries)
    return yaml.safe_dump(raw)


def check(code: int, err: str, *culprits: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("cubebench: error: "), err
    assert "Traceback" not in err
    for culprit in culprits:
        assert culprit in err, (culprit, err)


# each case: the experiment YAML (``{files}`` becomes the folder of broken inputs) and what stderr must name
CASES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "directory_instead_of_file": ({"datasets": [{"path": "{files}/dir.h5"}]}, ("dir.h5", "not a Zarr store")),
    "fifo_instead_of_file": ({"datasets": [{"path": "{files}/fifo.h5"}]}, ("fifo.h5", "not a regular file")),
    "corrupt_hdf5": ({"datasets": [{"path": "{files}/random.h5"}]}, ("random.h5", "not an HDF5 file")),
    "truncated_hdf5": ({"datasets": [{"path": "{files}/cut.h5"}]}, ("cut.h5", "truncated")),
    "truncated_mib": (
        {"datasets": [{"path": "{files}/cut.mib", "scan_shape": [2, 2]}]},
        ("cut.mib", "truncated", "3 complete frames"),
    ),
    "unreadable_chunk": ({"datasets": [{"path": "{files}/unreadable.h5"}]}, ("unreadable.h5", "staging failed")),
    "wrong_dataset_path": (
        {"datasets": [{"path": "{files}/arrays.h5", "dataset": "/nope"}]},
        ("arrays.h5", "'/nope'", "/cube"),
    ),
    "2d_array": ({"datasets": [{"path": "{files}/arrays.h5", "dataset": "flat"}]}, ("/flat", "2-D")),
    "5d_array": ({"datasets": [{"path": "{files}/arrays.h5", "dataset": "five"}]}, ("/five", "5-D")),
    "complex_dtype": ({"datasets": [{"path": "{files}/arrays.h5", "dataset": "cplx"}]}, ("/cplx", "complex")),
    "object_dtype": ({"datasets": [{"path": "{files}/arrays.h5", "dataset": "text"}]}, ("/text", "object")),
    "bool_dtype": ({"datasets": [{"path": "{files}/arrays.h5", "dataset": "flag"}]}, ("/flag", "bool")),
    "empty_array": ({"datasets": [{"path": "{files}/arrays.h5", "dataset": "empty"}]}, ("/empty", "empty")),
    "negative_chunk": ({"chunks": [[-1, 2, 64, 64]]}, ("[-1, 2, 64, 64]", "positive")),
    "unknown_cluster_key": ({"cluster": {"workerz": 2}}, ("'workerz'", "workers")),
    "processes_not_a_bool": ({"cluster": {"processes": "no"}}, ("cluster.processes", "'no'")),
    "processes_with_jobqueue": ({"cluster": {"jobqueue": "slurm", "processes": False}}, ("processes", "local")),
    "unknown_dataset_key": ({"datasets": [dict(PRESET, colour="red")]}, ("'colour'",)),
    "duplicate_dataset_names": (
        {"datasets": [dict(PRESET, name="a"), {"preset": "4d_eels", "name": "a"}]},
        ("'a'", "name"),
    ),
    "threads_vs_cores_with_jobqueue": (
        {"cluster": {"jobqueue": "slurm", "cores": 2, "threads_per_worker": 1}},
        ("threads_per_worker", "cores", "conflict"),
    ),
    "bad_walltime": ({"cluster": {"jobqueue": "slurm", "walltime": "soon"}}, ("walltime", "'soon'")),
    "bad_memory": ({"cluster": {"jobqueue": "pbs", "memory": "lots"}}, ("cluster.memory", "'lots'")),
    "scratch_under_a_file": ({"scratch": "{files}/regular_file/sub"}, ("scratch", "regular_file/sub")),
    "staging_under_a_file": (
        {"staging": "{files}/regular_file/sub", "scratch": "{files}/scratch"},
        ("staging", "regular_file/sub"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_exit_2_results_untouched(
    case: str, files: Path, earlier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries, culprits = CASES[case]
    text = yaml_text(**entries).replace("{files}", str(files))
    before = snapshot(earlier)
    code = run_cli(tmp_path, text, "--resume", out=earlier)
    check(code, capsys.readouterr().err, *culprits)
    assert snapshot(earlier) == before
    assert not list((files / "scratch").glob("cubebench-*"))  # no scratch folder left behind


def test_yaml_that_is_not_a_mapping(tmp_path: Path, earlier: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(earlier)
    code = run_cli(tmp_path, "- 4d_diff\n- zarr\n", "--resume", out=earlier)
    check(code, capsys.readouterr().err, "exp.yaml", "mapping")
    assert snapshot(earlier) == before


def test_experiment_path_is_a_directory(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(files / "dir.h5"), "--out", str(files / "never"), "--no-progress"])
    check(code, capsys.readouterr().err, "dir.h5", "a directory that is not a Zarr store")
    assert not (files / "never").exists()


@pytest.mark.parametrize("scale", ["0", "-1", "3"])
def test_scale_out_of_range(tmp_path: Path, earlier: Path, scale: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(earlier)
    code = run_cli(tmp_path, yaml_text(), "--resume", "--scale", scale, out=earlier)
    check(code, capsys.readouterr().err, "--scale")
    assert snapshot(earlier) == before


def test_results_folder_is_a_regular_file(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = files / "regular_file"
    before = target.read_bytes()
    code = run_cli(tmp_path, yaml_text(), out=target)
    check(code, capsys.readouterr().err, "regular_file", "is a file")
    assert target.read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "culprit"), [(["--resume", "--retry", "ok"], "'ok'"), (["--retry", "failed"], "--resume")]
)
def test_bad_retry(
    tmp_path: Path, earlier: Path, extra: list[str], culprit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(earlier)
    code = run_cli(tmp_path, yaml_text(), *extra, out=earlier)
    check(code, capsys.readouterr().err, "retry", culprit)
    assert snapshot(earlier) == before


def test_existing_results_without_resume(tmp_path: Path, earlier: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(earlier)
    code = run_cli(tmp_path, yaml_text(), out=earlier)
    check(code, capsys.readouterr().err, str(earlier), "--resume")
    assert snapshot(earlier) == before


def test_unreachable_scheduler_leaves_results_untouched(
    tmp_path: Path, earlier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(earlier)
    text = yaml_text(cluster={"address": "tcp://127.0.0.1:9", "timeout": 2})
    code = run_cli(tmp_path, text, "--resume", out=earlier)
    check(code, capsys.readouterr().err, "tcp://127.0.0.1:9")
    assert snapshot(earlier) == before


def test_jobqueue_without_dask_jobqueue(
    tmp_path: Path, earlier: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "dask_jobqueue"] + ["dask_jobqueue"]:
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    before = snapshot(earlier)
    code = run_cli(tmp_path, yaml_text(cluster={"jobqueue": "slurm"}), "--resume", out=earlier)
    check(code, capsys.readouterr().err, "dask-jobqueue", "cubebench[hpc]")
    assert snapshot(earlier) == before


@pytest.mark.parametrize("command", [["inspect"], ["convert", "--codec", "blosc-zstd", "--no-progress"]])
def test_a_source_that_fails_when_read_is_one_line(
    command: list[str], files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt chunk shows only when the data are read (statistics, staging): still one line naming the file."""
    name, *options = command
    dest = [str(tmp_path / "out.h5")] if name == "convert" else []
    code = main([name, str(files / "unreadable.h5"), *dest, *options])
    check(code, capsys.readouterr().err, "unreadable.h5", "failed: OSError")
    assert list(tmp_path.iterdir()) == []  # no half-written destination


@pytest.mark.parametrize("command", ["report", "recommend"])
def test_a_data_file_given_as_results_is_one_line(
    command: str, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An HDF5 data file where a results file is expected: named as such, with no warning from the netCDF reader."""
    check(main([command, str(files / "arrays.h5")]), capsys.readouterr().err, "arrays.h5", "not a cubebench results")


def test_plan_of_a_source_that_fails_when_read_is_one_line(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml_text(datasets=[{"path": str(files / "unreadable.h5")}]))
    check(main(["plan", str(path)]), capsys.readouterr().err, "unreadable.h5", "reading sample frames failed")
