"""Faults of S3 storage during a run, on REAL servers (SeaweedFS on loopback) and the real console entry point.

The server dies after the first cell: the run stops within seconds with one line naming the endpoint, keeps the
finished cells, and ``--resume`` with the server back finishes the rest. Ctrl-C during an S3 run keeps the finished
cells, stops the server cubebench started and removes what the run wrote, and nothing else. Data are tiny: an
8 x 8 scan of 128 x 128 frames, one codec, three cells per storage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from tests.helpers import DIFF, experiment

from cubebench.results import LOG_FILE, load_results
from cubebench.storage import list_keys, local_s3_server, put
from cubebench.storage.client import obstore_unavailable
from cubebench.storage.server import DEFAULT_SERVER, port_is_free, server_unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cubebench.storage import S3Endpoint

pytestmark = pytest.mark.slow

#: Three cells per storage: 8 x 8 scan of 128 x 128 uint16 frames (2 MiB), one codec.
FAULTS = {
    "name": "s3faults",
    "datasets": [{**DIFF, "scale": 0.015625}],
    "backends": ["zarr_direct", "hdf5_direct", "zarr"],
    "codecs": ["blosc-lz4"],
}


@pytest.fixture(autouse=True)
def _needs_a_server() -> None:
    why = server_unavailable(DEFAULT_SERVER) or obstore_unavailable()
    if why:
        if os.environ.get("CUBEBENCH_REQUIRE_S3") == "1":
            pytest.fail(f"CUBEBENCH_REQUIRE_S3=1 but {why}")
        pytest.skip(why)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[S3Endpoint]:
    """An endpoint cubebench did not start (this test's own server)."""
    with local_s3_server(tmp_path / "shared-s3") as endpoint:
        yield endpoint


def environment(endpoint: S3Endpoint) -> dict[str, str]:
    """This process's environment with the endpoint's address and credentials, as a user would export them."""
    return os.environ | {
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_ACCESS_KEY_ID": endpoint.access_key_id,
        "AWS_SECRET_ACCESS_KEY": endpoint.secret_access_key,
        "AWS_REGION": endpoint.region,
    }


def cubebench_run(
    exp: dict[str, Any], folder: Path, out: Path, env: dict[str, str], *flags: str
) -> subprocess.Popen[str]:
    """``cubebench run`` in its own process group (as a shell starts a job), its output captured."""
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    command = [sys.executable, "-m", "cubebench.cli", "run", str(path), "--out", str(out), "--no-progress", *flags]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
    )


def logged(out: Path) -> list[dict[str, Any]]:
    """The cells in a results log, in order."""
    log = out / LOG_FILE
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def when_logged(proc: subprocess.Popen[str], out: Path, action: Any, timeout: float = 180) -> threading.Thread:
    """Call ``action()`` from a thread as soon as the first cell is in ``out``'s log (or the run ended)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not logged(out):
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_server_dying_mid_run_stops_with_one_line_and_resume_finishes(shared: S3Endpoint, tmp_path: Path) -> None:
    out = tmp_path / "res"
    entry = {"kind": "s3", "bucket": shared.bucket, "prefix": "runs"}  # endpoint and credentials: the environment
    exp = experiment(FAULTS, storage=[entry], scratch=str(tmp_path / "scratch"))
    proc = cubebench_run(exp, tmp_path, out, environment(shared))
    killed: list[float] = []

    def kill_server() -> None:
        killed.append(time.monotonic())
        os.killpg(shared.pid, signal.SIGKILL)  # the server's whole process group, mid-run

    when_logged(proc, out, kill_server).join()
    _, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - killed[0]
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"S3 endpoint {shared.url} (bucket '{shared.bucket}') unreachable" in err, err
    assert "--resume" in err and str(out) in err, err
    assert elapsed < 30, f"the run took {elapsed:.0f} s to give up on a dead server"
    finished = logged(out)
    assert 1 <= len(finished) < 3 and all(c["status"] == "ok" for c in finished), finished
    assert int((load_results(out)["status"] == "ok").sum()) == len(finished)  # saved, the rest missing
    assert list((tmp_path / "scratch").iterdir()) == []

    with local_s3_server(tmp_path / "back-s3") as back:  # the server is back (here: a new one, same bucket)
        resumed = cubebench_run(exp, tmp_path, out, environment(back), "--resume")
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        cells = logged(out)
        assert [c["backend"] for c in cells[: len(finished)]] == [c["backend"] for c in finished]  # not redone
        assert sorted(c["backend"] for c in cells) == sorted(FAULTS["backends"])  # each missing one once
        ds = load_results(out)
        assert (ds["status"] == "ok").all() and ds["verified"].all()
        assert list_keys(back.storage()) == []  # what the resumed run wrote is gone


def weed_processes(root: Path) -> list[int]:
    """Pids of SeaweedFS processes whose data live under ``root``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"weed") and any(str(root).encode() in a for a in args):
            pids.append(int(entry.name))
    return pids


def test_ctrl_c_during_an_s3_run_keeps_cells_stops_the_server_and_removes_only_the_runs_objects(
    shared: S3Endpoint, tmp_path: Path
) -> None:
    out, scratch = tmp_path / "res", tmp_path / "scratch"
    outside = shared.storage("team")
    put(outside, "runs/keep.bin", b"someone else's")  # beside the run's prefix, in the same bucket
    # the endpoint's cells first: the interrupt lands while the run has objects there
    storages = [{"kind": "s3", "bucket": shared.bucket, "prefix": "team/runs", "latency_ms": 5}]
    storages.append({"kind": "s3", "server": "local"})
    exp = experiment(FAULTS, storage=storages, scratch=str(scratch))
    proc = cubebench_run(exp, tmp_path, out, environment(shared))
    seen: dict[str, Any] = {}

    def interrupt() -> None:
        seen["servers"] = weed_processes(scratch)
        seen["ports"] = [int(a.split(b"=")[1]) for pid in seen["servers"] for a in _args(pid) if b".port" in a]
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole foreground group

    when_logged(proc, out, interrupt).join()
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - start < 20
    assert err.count("\n") == 1 and "Traceback" not in err and "--resume" in err, err
    finished = logged(out)
    assert 1 <= len(finished) < 6 and all(c["status"] == "ok" for c in finished), finished
    assert int((load_results(out)["status"] == "ok").sum()) == len(finished)
    assert seen["servers"], "cubebench's own server was not running when interrupted"
    assert weed_processes(scratch) == []  # the server cubebench started is stopped ...
    assert seen["ports"] and all(port_is_free(port) for port in seen["ports"])  # ... and its ports are free
    assert list(scratch.iterdir()) == []
    assert list_keys(shared.storage()) == ["team/runs/keep.bin"]  # the run's objects gone, the other one kept


def _args(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
