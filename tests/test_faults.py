"""Nothing measured is lost, and nothing lossy counts: real processes killed, interrupted, starved of disk.

Each test runs real experiments on a real LocalCluster (worker processes) or the real console entry point in its
own process group, and checks that every cell ends up in the results exactly once, with honest statuses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from tests.helpers import DIFF, experiment

import cubebench
from cubebench.backends import BACKENDS
from cubebench.backends.zarr_ import ZarrBackend
from cubebench.cli import main
from cubebench.recommend import USES, recommend
from cubebench.results import LOG_FILE, load_results

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: This module's experiments: 8 MiB of 4d_diff (tests.helpers.DIFF) through hdf5_direct and zarr.
FAULTS = {"name": "faults"}


def log_keys(folder: Path) -> list[tuple[Any, ...]]:
    """The cell keys in a results log, one per line, in order."""
    lines = (folder / LOG_FILE).read_text().splitlines()
    return [tuple(json.loads(line)[k] for k in ("dataset", "backend", "codec", "chunk", "run")) for line in lines]


def cli_process(exp: dict[str, Any], folder: Path, out: Path) -> subprocess.Popen[str]:
    """``cubebench run`` in a fresh process group (as a shell starts a job), its output captured."""
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return subprocess.Popen(
        [sys.executable, "-m", "cubebench.cli", "run", str(path), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_lines(proc: subprocess.Popen[str], log: Path, n: int, timeout: float = 120) -> int:
    """Poll until ``log`` has ``n`` lines (or the process ends); return the count seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = len(log.read_text().splitlines()) if log.exists() else 0
        if count >= n or proc.poll() is not None:
            return count
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{log} did not reach {n} lines in {timeout} s")


# --- a worker process killed in the middle of a cell -----------------------------------------------------------


@pytest.fixture
def kill_a_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Wrap every backend's write: on the first attempt of each cell, SIGKILL the worker running its write task.

    Yields the list of cells whose writer was killed (``backend/codec``).
    """
    killed: list[str] = []
    threads: list[threading.Thread] = []

    def killer(client: Any, label: str, stop: threading.Event) -> None:
        pids = client.run(os.getpid)
        while not stop.is_set():
            busy = [a for a, keys in client.processing().items() if any("write" in str(k) for k in keys)]
            if busy and busy[0] in pids:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(label)
                return
            time.sleep(0.005)

    def wrap(cls: type[Any]) -> None:
        original = cls.write

        def write(self: Any, client: Any, staged: Any, codec: Any, *args: Any) -> None:
            label = f"{self.name}/{codec.id}"
            stop = threading.Event()
            if label not in killed:
                thread = threading.Thread(target=killer, args=(client, label, stop), daemon=True)
                thread.start()
                threads.append(thread)
            try:
                original(self, client, staged, codec, *args)
            finally:
                stop.set()

        monkeypatch.setattr(cls, "write", write)

    for name in ("hdf5", "zarr"):
        wrap(BACKENDS[name])
    yield killed
    for thread in threads:
        thread.join()


def test_worker_killed_mid_cell_is_rerun_and_recorded_once(tmp_path: Path, kill_a_writer: list[str]) -> None:
    out = tmp_path / "res"
    # 32 MiB so that the write tasks are still running when the killer finds them
    exp = experiment(FAULTS, datasets=[dict(DIFF, scale=0.0625)], backends=["hdf5", "zarr"], codecs=["gzip-1"], runs=2)
    ds = cubebench.run(exp, out=out, progress=False)
    keys = log_keys(out)
    assert len(keys) == len(set(keys)) == 4  # every cell exactly once
    assert sorted(kill_a_writer) == ["hdf5/gzip-1", "zarr/gzip-1"]
    assert (ds["status"] == "ok").all(), ds["reason"].values
    assert ds["verified"].all()
    # the cells whose worker died were run again from scratch: honest timings, and the reason says so
    first = ds.sel(run=0)
    assert all("second attempt" in str(r) for r in first["reason"].values.ravel())
    assert all(str(r) == "" for r in ds.sel(run=1)["reason"].values.ravel())
    assert float(ds["ratio"].std("run").max()) == 0.0


# --- the main process killed, then --resume -----------------------------------------------------------------


def test_main_process_sigkilled_then_resume_runs_only_missing(tmp_path: Path) -> None:
    out, scratch = tmp_path / "res", tmp_path / "scratch"
    exp = experiment(FAULTS, datasets=[dict(DIFF, scale=0.0625)], runs=2, scratch=str(scratch))
    total = 2 * 3 * 2
    proc = cli_process(exp, tmp_path, out)
    seen = wait_for_lines(proc, out / LOG_FILE, 2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process, scheduler, nannies, workers
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = log_keys(out)
    assert seen >= 2 and 2 <= len(before) < total, "the run must be killed mid-way"
    assert not (out / "results.nc").exists()
    assert [p.name for p in scratch.iterdir()], "SIGKILL leaves the run's scratch folder behind"

    assert main(["run", str(tmp_path / "exp.yaml"), "--out", str(out), "--resume", "--no-progress"]) == 0
    after = log_keys(out)
    assert after[: len(before)] == before  # finished cells were not redone ...
    assert len(after) == total and len(set(after)) == total  # ... and every missing one ran exactly once
    ds = load_results(out)
    assert int((ds["status"] != "missing").sum()) == total
    assert (ds["status"] == "ok").all() and ds["verified"].all()
    assert list(scratch.iterdir()) == []  # the killed run's scratch was cleaned by the next run


# --- Ctrl-C ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "processes"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["ctrl-c", "sigterm", "ctrl-c-thread-workers"],
)
def test_interrupt_keeps_finished_cells_and_cleans_scratch(tmp_path: Path, signum: int, processes: bool) -> None:
    out, scratch = tmp_path / "res", tmp_path / "scratch"
    cluster = {"workers": 2, "threads_per_worker": 1, "processes": processes}
    exp = experiment(FAULTS, datasets=[dict(DIFF, scale=0.0625)], runs=2, scratch=str(scratch), cluster=cluster)
    proc = cli_process(exp, tmp_path, out)
    wait_for_lines(proc, out / LOG_FILE, 2)
    start = time.monotonic()
    os.killpg(proc.pid, signum)  # a terminal's Ctrl-C reaches the whole foreground group, workers included
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 130, err
    assert elapsed < 20
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "--resume" in err and str(out) in err and "exp.yaml" in err
    finished = log_keys(out)
    assert 2 <= len(finished) < 12
    ds = load_results(out)
    assert int((ds["status"] != "missing").sum()) == len(finished)
    assert list(scratch.iterdir()) == []


# --- scratch disk full ----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_scratch(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root, as in CI); skipped where mounting is not permitted."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full scratch disk (needs root): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_scratch_disk_fails_the_cell_and_the_run_goes_on(tmp_path: Path, tiny_scratch: Path) -> None:
    out = tmp_path / "res"
    # 8 MiB uncompressed does not fit in 3 MiB; blosc-zstd (about 9x) does. Staging lives on the normal disk.
    exp = experiment(
        FAULTS,
        backends=["hdf5", "hdf5_direct", "zarr"],
        codecs=["none", "blosc-zstd"],
        scratch=str(tiny_scratch),
        staging=str(tmp_path / "staging"),
    )
    ds = cubebench.run(exp, out=out, progress=False)
    assert len(set(log_keys(out))) == len(log_keys(out)) == 6
    none, zstd = ds.sel(codec="none"), ds.sel(codec="blosc-zstd")
    assert (none["status"] == "failed").all()
    for reason in none["reason"].values.ravel():
        assert str(reason).startswith("ENOSPC") and "No space left" in str(reason)
    assert (zstd["status"] == "ok").all() and zstd["verified"].all(), zstd["reason"].values
    assert np.isnan(none["write_seconds"]).all()
    assert list(tiny_scratch.iterdir()) == []  # failed cells' files removed, the run's scratch folder too
    assert list((tmp_path / "staging").iterdir()) == []  # the staged copy is removed at the end
    assert os.statvfs(tiny_scratch).f_bfree == os.statvfs(tiny_scratch).f_blocks  # no space held by open files


def test_hdf5_writes_on_thread_workers_survive_a_full_scratch_disk(tmp_path: Path, tiny_scratch: Path) -> None:
    """A failed HDF5 write must not leave libhdf5 holding a broken file: at exit it segfaulted the whole run."""
    exp = experiment(
        FAULTS,
        backends=["hdf5", "hdf5_direct"],
        codecs=["none", "blosc-zstd"],
        scratch=str(tiny_scratch),
        staging=str(tmp_path / "staging"),
        cluster={"workers": 2, "threads_per_worker": 1, "processes": False},
    )
    out = tmp_path / "res"
    proc = cli_process(exp, tmp_path, out)
    summary, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]  # was -11 (SIGSEGV) after the run's last line
    assert err == ""  # no traceback of distributed's per failed task: the summary says why, once per cell
    for backend in ("hdf5", "hdf5_direct"):
        assert f"\ndiff {backend} none balanced: failed: ENOSPC: no space left on device" in summary
    ds = load_results(out)
    none, zstd = ds.sel(codec="none"), ds.sel(codec="blosc-zstd")
    assert (none["status"] == "failed").all()
    for reason in none["reason"].values.ravel():
        assert str(reason).startswith("ENOSPC"), reason
    assert (zstd["status"] == "ok").all() and zstd["verified"].all(), zstd["reason"].values
    assert list(tiny_scratch.iterdir()) == []
    assert os.statvfs(tiny_scratch).f_bfree == os.statvfs(tiny_scratch).f_blocks


HALF_WRITTEN = r"""
import os, sys
from pathlib import Path
import numpy as np
from cubebench.fileio import hdf5_for_writing
target = Path(sys.argv[1]) / "x.h5"
try:
    with hdf5_for_writing(target) as f:  # 8 MiB into a 3 MiB disk, as the backends write: a block at a time
        ds = f.create_dataset("d", shape=(4 * 2**20,), dtype=np.uint16, chunks=(2**18,))
        for start in range(0, 4 * 2**20, 2**20):
            ds[start : start + 2**20] = np.full(2**20, 7, dtype=np.uint16)
except Exception as exc:
    print(type(exc).__name__, "No space left" in str(exc))
target.unlink()
print(os.statvfs(sys.argv[1]).f_bfree == os.statvfs(sys.argv[1]).f_blocks)
"""


def test_a_failed_hdf5_write_closes_its_file_and_frees_its_space(tiny_scratch: Path) -> None:
    done = subprocess.run([sys.executable, "-c", HALF_WRITTEN, str(tiny_scratch)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]  # h5py.File alone: -11 at interpreter exit
    error, space_freed = done.stdout.split("\n")[:2]
    assert error.endswith("True")  # the write's own error (ENOSPC), not one from closing
    assert space_freed == "True"  # the unlinked file is closed: nothing holds its blocks


def test_source_with_an_unreadable_chunk_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A source that opens but fails on the workers while it is read: one line on stderr, exit 2, no results."""
    import h5py

    source = tmp_path / "scan.h5"
    with h5py.File(source, "w") as f:
        ds = f.create_dataset("data", shape=(8, 8, 64, 64), dtype=np.uint16, chunks=(1, 1, 64, 64), compression="gzip")
        ds[...] = np.random.default_rng(0).poisson(0.5, size=ds.shape)
        offset = ds.id.get_chunk_info(20).byte_offset
    with open(source, "r+b") as f:  # one compressed chunk overwritten: the file opens, that chunk cannot decode
        f.seek(offset)
        f.write(b"\xff" * 64)
    out = tmp_path / "res"
    exp = experiment(FAULTS, datasets=[{"path": str(source), "dataset": "data", "name": "scan"}], codecs=["blosc-zstd"])
    proc = cli_process(exp, tmp_path, out)
    summary, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    assert summary == ""
    assert err.startswith(f"cubebench: error: dataset 'scan' ({source}): staging failed: OSError: ")
    assert err.count("\n") == 1  # the line alone: no worker's report of the failed task above it
    assert not out.exists()  # nothing written, not even the results folder


def test_full_staging_disk_is_one_clear_error(
    tmp_path: Path, tiny_scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment(FAULTS, codecs=["none"], backends=["zarr"], scratch=str(tiny_scratch))))
    code = main(["run", str(path), "--out", str(tmp_path / "res"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "staging" in err and "no space" in err
    assert list(tiny_scratch.iterdir()) == []


# --- a lossy codec path is never counted -------------------------------------------------------------------


class LossyZarr(ZarrBackend):
    """Test-only: Zarr whose write silently changes one stored value (a codec that is not lossless)."""

    name = "lossy_zarr"

    def write(self, client: Any, staged: Any, codec: Any, chunks: Any, target: Path, settings: Any) -> None:
        """Write as Zarr does, then perturb one pixel of one chunk in place."""
        import zarr

        super().write(client, staged, codec, chunks, target, settings)
        array = zarr.open_array(str(target), mode="r+")
        index = tuple(s // 2 for s in array.shape)
        array[index] = array[index] + 1


class BitFlipZarr(ZarrBackend):
    """Test-only: Zarr whose write flips one bit of one stored chunk file (uncompressed, so it still decodes)."""

    name = "bitflip_zarr"

    def write(self, client: Any, staged: Any, codec: Any, chunks: Any, target: Path, settings: Any) -> None:
        """Write as Zarr does, then flip one bit in the middle of the largest chunk file."""
        super().write(client, staged, codec, chunks, target, settings)
        chunk_file = max(
            (p for p in target.rglob("*") if p.is_file() and p.name != "zarr.json"), key=lambda p: p.stat().st_size
        )
        raw = bytearray(chunk_file.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        chunk_file.write_bytes(bytes(raw))


def test_corrupting_codec_path_is_unverified_and_never_recommended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cls in (LossyZarr, BitFlipZarr):
        monkeypatch.setitem(BACKENDS, cls.name, cls)
    exp = experiment(FAULTS, backends=["zarr", "lossy_zarr", "bitflip_zarr"], codecs=["none", "blosc-zstd"], runs=2)
    ds = cubebench.run(exp, out=tmp_path / "res", progress=False)
    good = ds.sel(backend="zarr")
    assert (good["status"] == "ok").all() and good["verified"].all()
    lossy = ds.sel(backend="lossy_zarr")
    flipped = ds.sel(backend="bitflip_zarr", codec="none")
    for bad in (lossy, flipped):
        assert (bad["status"] == "unverified").all()
        assert not bad["verified"].any()
        assert np.isnan(bad["write_seconds"]).all() and np.isnan(bad["read_seconds"]).all()
        assert np.isnan(bad["write_GiBps"]).all() and np.isnan(bad["read_GiBps"]).all()
        assert all("differ from the source" in str(r) for r in bad["reason"].values.ravel())
    # a compressed chunk with a flipped bit either fails to decode or decodes to other values: never ok
    assert not (ds.sel(backend="bitflip_zarr", codec="blosc-zstd")["status"] == "ok").any()
    for use in USES:
        assert recommend(ds, use).backend == "zarr"
        assert recommend(ds, use, include_uncompressed=True).backend == "zarr"


def test_source_that_cannot_be_hashed_fails_its_cells_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass over the source failing on the workers (an unreadable staged file, say) is a result per cell."""
    from cubebench import staging
    from cubebench.runner import session

    failing_passes: list[tuple[int, ...]] = []

    def hash_or_fail(client: Any, staged: Any, block: tuple[int, ...]) -> Any:
        if block[:2] == (1, 1):  # single-frame chunks: the workers' reads of the source fail
            failing_passes.append(block)
            client.submit(os.pread, -1, 1, 0, pure=False).result()
        return staging.source_checksums(client, staged, block)

    monkeypatch.setattr(session, "source_checksums", hash_or_fail)
    scratch = tmp_path / "scratch"
    exp = experiment(FAULTS, chunks=["balanced", "single_frame"], codecs=["none", "blosc-zstd"], scratch=str(scratch))
    ds = cubebench.run(exp, out=tmp_path / "res", progress=False)
    good, bad = ds.sel(chunk="balanced"), ds.sel(chunk="single_frame")
    assert (good["status"] == "ok").all() and good["verified"].all()
    assert (bad["status"] == "failed").all() and not bad["verified"].any()
    assert all("hashing the source's chunks failed (OSError" in str(r) for r in bad["reason"].values.ravel())
    assert len(failing_passes) == 1  # the later cells of that chunking fail without another pass over the source
    assert list(scratch.iterdir()) == []  # no stored file of the failed cells is left behind
