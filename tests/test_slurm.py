"""HPC through dask-jobqueue: a real Slurm (started by .ci/run) gives the same results as a LocalCluster.

Without Slurm here these tests skip, unless ``CUBEBENCH_REQUIRE_SLURM=1`` (CI), where they fail instead. PBS
cannot run here: its job script is built and checked without submitting anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from tests.helpers import DIFF, experiment

import cubebench
from cubebench.acquisition import acquire
from cubebench.acquisition.results import load_acquisition
from cubebench.cli import main
from cubebench.cluster import jobqueue_cluster, worker_environment
from cubebench.experiment import parse_experiment

if TYPE_CHECKING:
    from pathlib import Path


def slurm_ready() -> str:
    """'' when a Slurm controller answers here, else why not."""
    if shutil.which("sinfo") is None:
        return "no sinfo: Slurm is not installed"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if done.returncode != 0:
        return f"Slurm controller not answering: {done.stderr.strip()}"
    return ""


@pytest.fixture(scope="module")
def slurm() -> None:
    why = slurm_ready()
    if why:
        if os.environ.get("CUBEBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"CUBEBENCH_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)


HPC = {"name": "hpc"}


def slurm_cluster(log_directory: Path, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "jobqueue": "slurm",
        "workers": 2,
        "cores": 1,
        "memory": "2GiB",
        "walltime": "00:10:00",
        "queue": "debug",
        "interface": "lo",
        "log_directory": str(log_directory),
        "timeout": 120,
    }
    spec.update(overrides)
    return spec


def queued(job_ids: set[str]) -> set[str]:
    """Which of ``job_ids`` Slurm still lists (any state, completing included)."""
    done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True, timeout=20)
    return job_ids & set(done.stdout.split())


@pytest.mark.slurm
def test_slurm_run_matches_local_cluster(slurm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a job log written into the submit folder would show up here
    logs = tmp_path / "logs"
    backends = ["hdf5_direct", "zarr", "zarr_direct"]  # batch-job workers write chunk files of the shared store
    hpc = cubebench.run(
        experiment(HPC, cluster=slurm_cluster(logs), scratch=str(tmp_path / "scratch"), backends=backends),
        out=tmp_path / "slurm",
        progress=False,
    )
    local = cubebench.run(experiment(HPC, backends=backends), out=tmp_path / "local", progress=False)
    for ds in (hpc, local):
        assert (ds["status"] == "ok").all(), ds["reason"].values
        assert ds["verified"].all()
    np.testing.assert_array_equal(hpc["ratio"].values, local["ratio"].values)
    np.testing.assert_array_equal(hpc["stored_bytes"].values, local["stored_bytes"].values)
    assert (hpc["workers"] == 2).all() and (hpc["threads_per_worker"] == 1).all()
    # the batch jobs' workers are not this process's children: they report their own peaks
    assert float(hpc["peak_memory_bytes"].min()) > 0.7 * float(local["peak_memory_bytes"].min())
    assert '"kind": "slurm"' in hpc.attrs["cluster"]

    # job logs went to log_directory, one .out/.err per job; nothing into the submit folder
    job_ids = {p.stem.rsplit("-", 1)[1] for p in logs.glob("dask-worker-*.err")}
    assert len(job_ids) == 2, sorted(p.name for p in logs.iterdir())
    assert not list(tmp_path.glob("slurm-*.out"))
    assert not (tmp_path / "dask-scratch-space").exists()
    assert list((tmp_path / "scratch").iterdir()) == []

    # the jobs are cancelled when the run ends (they may linger a moment as "completing")
    deadline = time.monotonic() + 30
    while queued(job_ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not queued(job_ids)


@pytest.mark.slurm
def test_paced_acquisition_on_slurm_keeps_up_and_is_verified(
    slurm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the batch jobs' workers read the staged copy and write zarr chunk files; hdf5_direct's writer is this process
    monkeypatch.chdir(tmp_path)
    exp = {
        "name": "acq-slurm",
        "datasets": [DIFF],
        "cluster": slurm_cluster(tmp_path / "logs"),
        "scratch": str(tmp_path / "scratch"),
        "acquisition": {
            "frame_rate": 100,
            "backends": ["hdf5_direct", "zarr_direct"],
            "codecs": ["blosc-lz4"],
            "chunks": ["single_frame"],
        },
    }
    (tmp_path / "acq.yaml").write_text(yaml.safe_dump(exp))
    out = acquire(tmp_path / "acq.yaml", tmp_path / "out")
    ds = load_acquisition(out)
    assert (ds["status"] == "ok").all(), ds["status"].values
    assert (ds["verified"] == 1).all() and (ds["kept_up"] == 1).all()
    assert list(ds["workers"].values) == [2] and (ds["frames"] == 64).all()
    assert (ds["dispatch"] == "stream").all()  # the workers connect back to this process from their jobs
    assert (ds["peak_memory_bytes"] > 0).all()  # the jobs' workers report their own peaks
    assert (out / "buffer_latency.png").exists()
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.slurm
def test_ctrl_c_on_slurm_saves_cells_and_cancels_the_jobs(slurm: None, tmp_path: Path) -> None:
    # importing dask_jobqueue turns SIGINT into a silent sys.exit() (exit code 0): cubebench must undo that
    logs, out = tmp_path / "logs", tmp_path / "res"
    exp = experiment(HPC, cluster=slurm_cluster(logs), runs=3, datasets=[{"preset": "4d_diff", "scale": 0.0625}])
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cubebench.cli", "run", str(tmp_path / "exp.yaml"), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = out / "cells.jsonl"
    deadline = time.monotonic() + 120
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "--resume" in err
    assert (out / "results.nc").exists()
    job_ids = {p.stem.rsplit("-", 1)[1] for p in logs.glob("dask-worker-*.err")}
    assert job_ids
    deadline = time.monotonic() + 30
    while queued(job_ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not queued(job_ids)


@pytest.mark.slurm
def test_slurm_rejected_job_fails_fast_with_one_line(
    slurm: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment(HPC, cluster=slurm_cluster(tmp_path / "logs", queue="no_such_queue"))))
    start = time.monotonic()
    code = main(["run", str(path), "--out", str(tmp_path / "res"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - start < 30
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no_such_queue" in err and "invalid partition" in err
    assert not (tmp_path / "res" / "cells.jsonl").exists()


def test_pbs_job_script_has_the_directives(tmp_path: Path) -> None:
    exp = parse_experiment(
        experiment(
            HPC,
            cluster={
                "jobqueue": "pbs",
                "cores": 4,
                "memory": "8GiB",
                "walltime": "02:00:00",
                "queue": "workq",
                "interface": "lo",
                "job_directives": ["-A proj123", "-l place=scatter"],
                "log_directory": str(tmp_path / "logs"),
                "local_directory": "/local/scratch",
            },
        )
    )
    assert exp.cluster.threads_per_worker == 4  # one worker process per job, `cores` threads
    with jobqueue_cluster(exp.cluster, worker_environment(exp.cluster)) as cluster:
        assert type(cluster).__name__ == "PBSCluster"
        script = cluster.job_script()
    lines = script.splitlines()
    for directive in (
        "#PBS -q workq",
        "#PBS -l select=1:ncpus=4:mem=8192MB",
        "#PBS -l walltime=02:00:00",
        f"#PBS -o {tmp_path / 'logs'}/",
        f"#PBS -e {tmp_path / 'logs'}/",
        "#PBS -A proj123",
        "#PBS -l place=scatter",
        "export BLOSC_NTHREADS=1",
    ):
        assert directive in lines, script
    command = lines[-1]
    for flag in ("--nthreads 4", "--local-directory /local/scratch", "--interface lo", "--nanny"):
        assert flag in command


def test_jobqueue_defaults_keep_worker_files_out_of_the_submit_folder(tmp_path: Path) -> None:
    exp = parse_experiment(experiment(HPC, cluster={"jobqueue": "slurm", "queue": "debug", "interface": "lo"}))
    with jobqueue_cluster(exp.cluster, worker_environment(exp.cluster)) as cluster:
        script = cluster.job_script()
    assert f"--local-directory {tempfile.gettempdir()}" in script
    assert "#SBATCH -p debug" in script.splitlines()
