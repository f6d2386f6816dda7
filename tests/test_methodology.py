"""Timing methodology and provenance: cold cache applied to exactly the stored files before each read, what the
results record about the machine and the method, and results of two machines merged by the CLI."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

import cubebench
from cubebench.backends import BACKENDS
from cubebench.cli import main
from cubebench.results import CellResult, load_results, records_to_dataset, save_results

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_cold_cache_drops_every_stored_file_before_each_read_and_never_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, Any]] = []
    real_fadvise = os.posix_fadvise

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        events.append(("drop", os.readlink(f"/proc/self/fd/{fd}")))
        real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    for name in ("hdf5_direct", "zarr"):
        cls = BACKENDS[name]
        for method in ("read", "read_pattern"):
            original = getattr(cls, method)

            def timed(
                self: Any, client: Any, target: Path, *args: Any, _original: Any = original, _method: str = method
            ) -> Any:
                files = sorted(str(p) for p in ([target] if target.is_file() else target.rglob("*")) if p.is_file())
                events.append((_method, files))
                return _original(self, client, target, *args)

            monkeypatch.setattr(cls, method, timed)
    staging = tmp_path / "staging"
    exp = {
        "name": "cold",
        "datasets": [{"preset": "4d_diff", "scale": 0.03125}],
        "backends": ["hdf5_direct", "zarr"],
        "codecs": ["gzip-1"],
        "chunks": ["balanced"],
        "runs": 1,
        "warmup": False,
        "cache": "cold",
        "access_patterns": ["frame"],
        "scratch": str(tmp_path / "scratch"),
        "staging": str(staging),
    }
    ds = cubebench.run(exp, out=tmp_path / "res", progress=False)
    assert (ds["status"] == "ok").all() and (ds["cache"] == "cold").all()
    reads = [i for i, (kind, _) in enumerate(events) if kind != "drop"]
    assert [events[i][0] for i in reads] == ["read", "read_pattern"] * 2
    previous = -1
    for i in reads:
        dropped = {path for kind, path in events[previous + 1 : i] if kind == "drop"}
        files = set(events[i][1])
        assert len(files) > 1 or any(f.endswith(".h5") for f in files)
        assert files <= dropped, "every stored file is dropped right before each read"
        previous = i
    assert not any(str(staging) in str(path) for kind, path in events if kind == "drop")


def test_provenance_records_machine_method_and_cluster(tmp_path: Path) -> None:
    exp = {
        "name": "prov",
        "datasets": [{"preset": "4d_diff", "scale": 0.03125}],
        "backends": ["zarr"],
        "codecs": ["blosc-zstd"],
        "chunks": ["balanced"],
        "runs": 1,
        "warmup": False,
        "cluster": {"workers": 2, "codec_threads": 1},
    }
    cubebench.run(exp, out=tmp_path / "res", progress=False)
    attrs = load_results(tmp_path / "res").attrs
    libraries = json.loads(attrs["libraries"])
    for name in ("numpy", "dask", "distributed", "zarr", "numcodecs", "h5py", "hdf5plugin", "hdf5"):
        assert libraries[name] not in ("", "missing"), name
    assert "registered_filters" in json.loads(attrs["hdf5plugin"])
    cpu = json.loads(attrs["cpu"])
    assert cpu["model"] and cpu["cores"] >= 1 and "sse2" in cpu["simd"]
    assert json.loads(attrs["threads"])["BLOSC_NTHREADS"] == "1"
    timing = json.loads(attrs["timing"])
    assert timing["cache"] == attrs["cache"] == "warm" and timing["runs"] == 1 and "fsync" in timing["write"]
    cluster = json.loads(attrs["cluster"])
    assert cluster["kind"] == "local" and cluster["workers"] == 2
    (node,) = cluster["nodes"]  # both workers on this host, with the same software: one entry
    assert node["workers"] == 2 and node["threads"]["BLOSC_NTHREADS"] == "1"
    assert node["libraries"]["zarr"] == libraries["zarr"]

    assert cluster["processes"] is True


def test_thread_workers_store_and_verify_the_same_bytes_as_worker_processes(tmp_path: Path) -> None:
    """``processes: false``: the workers are threads of this process, every backend's cells are still verified,
    the stored bytes equal a run on worker processes, and this process's environment is given back afterwards."""
    from cubebench.backends import BACKENDS
    from cubebench.cluster import MALLOC_ENVIRONMENT, tune_malloc_here

    exp = {
        "name": "threads",
        "datasets": [{"preset": "4d_diff", "scale": 0.03125}],
        "backends": list(BACKENDS),
        "codecs": ["blosc-lz4", "gzip-1"],
        "chunks": ["real_space", "single_frame"],
        "runs": 1,
        "warmup": False,
    }
    before = {key: os.environ.get(key) for key in ("BLOSC_NTHREADS", "ZARR_ASYNC__CONCURRENCY")}
    cubebench.run({**exp, "cluster": {"workers": 2, "processes": False}}, out=tmp_path / "threads", progress=False)
    assert {key: os.environ.get(key) for key in before} == before
    cubebench.run({**exp, "cluster": {"workers": 2}}, out=tmp_path / "processes", progress=False)
    threads, processes = load_results(tmp_path / "threads"), load_results(tmp_path / "processes")
    status = threads["status"].values
    assert set(np.unique(status)) == {"ok", "unavailable"}, threads["reason"].values[status != "ok"]
    assert (threads["verified"].values == (status == "ok")).all()
    np.testing.assert_array_equal(status, processes["status"].values)
    np.testing.assert_array_equal(threads["stored_bytes"], processes["stored_bytes"])
    assert int(threads["peak_memory_bytes"].where(threads["status"] == "ok").min()) > 0
    cluster = json.loads(threads.attrs["cluster"])
    assert cluster["processes"] is False and cluster["total_threads"] == 2
    assert not threads["worker_processes"].any() and processes["worker_processes"].all()
    assert tune_malloc_here() is True and len(MALLOC_ENVIRONMENT) == 2  # glibc here: the heap takes the settings


def machine_results(folder: Path, host: str, codecs: tuple[str, ...], speed: float) -> Path:
    cells = [
        CellResult(
            "diff",
            "zarr",
            codec,
            "balanced",
            run,
            "8x8x128x128",
            "ok",
            "",
            True,
            2**23,
            2**23 // (1 + i),
            0.1 / speed,
            0.05 / speed,
        )
        for i, codec in enumerate(codecs)
        for run in range(2)
    ]
    save_results(records_to_dataset(cells, attrs={"host": host, "cpu": {"model": f"cpu of {host}"}}), folder)
    return folder


def test_merge_two_machines_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = machine_results(tmp_path / "a", "vm", ("none", "gzip-1", "blosc-zstd"), 1.0)
    b = machine_results(tmp_path / "b", "vm", ("none", "blosc-zstd"), 2.0)
    out = tmp_path / "merged"
    assert main(["merge", str(out), str(a), str(b)]) == 2  # both hosts are called "vm"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--names" in err and not out.exists()
    assert main(["merge", str(out), str(a), str(b), "--names", "laptop"]) == 2
    assert "1 names for 2 results" in capsys.readouterr().err

    assert main(["merge", str(out), str(a), str(b / "results.nc"), "--names", "laptop", "hpc"]) == 0
    assert "laptop, hpc" in capsys.readouterr().out
    merged = load_results(out)
    assert list(merged["machine"].values) == ["laptop", "hpc"]
    assert merged["ratio"].dims[0] == "machine"
    hpc = merged.sel(machine="hpc")
    assert (hpc["status"].sel(codec="gzip-1") == "missing").all()  # not run there: missing, not NaN
    assert merged["verified"].dtype == bool and not hpc["verified"].sel(codec="gzip-1").any()
    assert merged["stored_bytes"].dtype == np.int64
    np.testing.assert_allclose(
        merged["write_seconds"].sel(machine="laptop", codec="none"), 2 * hpc["write_seconds"].sel(codec="none")
    )
    machines = json.loads(merged.attrs["machines"])
    assert json.loads(machines["hpc"]["cpu"])["model"] == "cpu of vm"
    assert (out / "results.csv").read_text().count("\n") == 1 + 2 * 3 + 2 * 2  # one row per cell that ran
    assert main(["merge", str(out), str(a), str(b), "--names", "x", "y"]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err


def test_local_cluster_fetches_results_from_the_workers_and_runs_no_profiler(client: Any) -> None:
    """The main process stores hdf5_direct's bytes: they must not also cross the scheduler's relay."""
    assert client.direct_to_workers is True
    import dask

    # the dashboard's statistical profiler is off in the workers (it holds the GIL 100 times a second)
    assert not any(client.run(lambda: dask.config.get("distributed.worker.profile.enabled")).values())
    future = client.submit(np.arange, 2**18, dtype=np.uint16, pure=False)
    assert int(future.result().sum()) == int(np.arange(2**18, dtype=np.uint16).sum())


def test_workers_sample_their_own_peak_memory(client: Any) -> None:
    """Workers outside this process tree (batch jobs, other hosts) are counted by their own samplers."""
    import psutil

    from cubebench.cluster import WorkerMemory, reset_worker_peaks, worker_peaks_outside

    client.register_plugin(WorkerMemory())  # what remote and batch clusters get (a LocalCluster is sampled here)
    here = {p.pid for p in psutil.Process().children(recursive=True)}
    reset_worker_peaks(client)
    client.submit(np.ones, 2**25, dtype=np.uint8, pure=False).result()  # 32 MiB on one worker
    as_if_remote = worker_peaks_outside(client, counted=set())
    assert as_if_remote > 2 * 32 * 2**20 + 2 * 40 * 2**20  # two worker processes, one with the buffer
    reset_worker_peaks(client)
    assert worker_peaks_outside(client, counted=here) == 0  # a LocalCluster's workers: counted by the tree


def _worker_log_filters() -> list[str]:
    import logging

    return sorted(type(f).__name__ for f in logging.getLogger("distributed.worker").filters)


def test_workers_do_not_report_a_heartbeat_cut_off_by_their_own_close(client: Any) -> None:
    """dask/distributed#7105: a run that went well must not end with an error traceback on the terminal."""
    import logging

    from distributed.comm.core import CommClosedError
    from distributed.core import Status

    from cubebench.cluster import HEARTBEAT_FAILED, HeartbeatCutByClose

    assert all("HeartbeatCutByClose" in names for names in client.run(_worker_log_filters).values())  # real workers

    class FakeWorker:
        status = Status.running

    worker = FakeWorker()
    quiet = HeartbeatCutByClose()
    quiet.workers.add(worker)

    def record(msg: str, error: BaseException | None) -> logging.LogRecord:
        info = (type(error), error, None) if error else None
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, None, info)

    cut = record(HEARTBEAT_FAILED + ".", CommClosedError("in <TCP (closed) ConnectionPool.heartbeat_worker>"))
    assert quiet.filter(cut)  # a running worker whose heartbeat fails: a real problem, shown
    worker.status = Status.closing
    assert not quiet.filter(cut)  # its own close cut the call: dropped
    assert quiet.filter(record(HEARTBEAT_FAILED + ".", OSError("timed out")))  # not a closed connection: shown
    assert quiet.filter(record("Compute Failed", CommClosedError("x")))  # another message: shown
    assert quiet.filter(record(HEARTBEAT_FAILED + ".", None))


def test_local_workers_leave_failed_tasks_to_cubebench_to_report(client: Any) -> None:
    """A failed cell is reported once, as its reason: not also as distributed's traceback on the terminal."""
    import logging

    from cubebench.cluster import TASK_FAILED, FailureReportedByCubebench

    filters = client.run(_worker_log_filters).values()
    assert all(names == ["FailureReportedByCubebench", "HeartbeatCutByClose"] for names in filters)
    quiet = FailureReportedByCubebench()

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, ("k",), None)

    assert not quiet.filter(record(TASK_FAILED + "\nKey:       %s\n"))
    assert quiet.filter(record("Run Failed\nFunction: %s\n"))  # anything else: shown
    assert quiet.filter(record("Worker stream died during communication: %s"))


def test_workers_reached_by_address_keep_their_failure_reports() -> None:
    """A scheduler cubebench connects to may serve others: its workers' reports of failed tasks stay."""
    from distributed import LocalCluster

    from cubebench.cluster import open_client
    from cubebench.experiment import ClusterSpec

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        open_client(ClusterSpec(address=cluster.scheduler_address)) as client,
    ):
        assert list(client.run(_worker_log_filters).values()) == [["HeartbeatCutByClose"]]


def test_thread_workers_leave_no_log_filter_behind() -> None:
    """Thread workers live in this process: once their cluster closes, a later cluster's log is not filtered."""
    from cubebench.cluster import open_client
    from cubebench.experiment import ClusterSpec

    with open_client(ClusterSpec(workers=1, processes=False)) as client:
        assert client.submit(_worker_log_filters, pure=False).result() == [
            "FailureReportedByCubebench",
            "HeartbeatCutByClose",
        ]
    assert _worker_log_filters() == []
