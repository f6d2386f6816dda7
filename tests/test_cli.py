"""The CLI: each bad input gives one line naming the culprit and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pytest

from cubebench.cli import main

if TYPE_CHECKING:
    from pathlib import Path


def cubebench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "cubebench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def write_yaml(folder: Path, text: str) -> Path:
    path = folder / "exp.yaml"
    path.write_text(text)
    return path


BAD_EXPERIMENTS = {
    "unknown_key": ("name: x\ndatasets: [{preset: 4d_diff}]\ncolour: red\n", "'colour'"),
    "unknown_codec": ("name: x\ndatasets: [{preset: 4d_diff}]\ncodecs: [gzip-10]\n", "'gzip-10'"),
    "unknown_chunk": ("name: x\ndatasets: [{preset: 4d_diff}]\nchunks: [diagonal]\n", "'diagonal'"),
    "bad_chunk_tuple": ("name: x\ndatasets: [{preset: 4d_diff}]\nchunks: [[0, 1, 1, 1]]\n", "[0, 1, 1, 1]"),
    "short_chunk_tuple": ("name: x\ndatasets: [{preset: 4d_diff}]\nchunks: [[1, 1, 1]]\n", "[1, 1, 1]"),
    "unknown_backend": ("name: x\ndatasets: [{preset: 4d_diff}]\nbackends: [tiff]\n", "'tiff'"),
    "unknown_preset": ("name: x\ndatasets: [{preset: 5d_magic}]\n", "5d_magic"),
    "malformed_yaml": ("name: x\ndatasets: [a, b\n", "line"),
    "conflicting_cluster": (
        "name: x\ndatasets: [{preset: 4d_diff}]\ncluster: {address: 'tcp://127.0.0.1:1', jobqueue: slurm}\n",
        "conflict",
    ),
    "missing_file": ("name: x\ndatasets: [{path: /nonexistent/scan.emd}]\n", "/nonexistent/scan.emd"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPERIMENTS))
def test_bad_experiment_one_line_exit_2(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    text, culprit = BAD_EXPERIMENTS[case]
    code = main(["run", str(write_yaml(tmp_path, text)), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert culprit in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unreachable_scheduler_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    text = (
        "name: x\ndatasets: [{preset: 4d_diff, scale: 0.03125}]\ncluster: {address: 'tcp://127.0.0.1:9', timeout: 3}\n"
    )
    start = time.perf_counter()
    code = main(["run", str(write_yaml(tmp_path, text)), "--out", str(tmp_path / "o"), "--no-progress"])
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert code == 2 and "tcp://127.0.0.1:9" in err and "Traceback" not in err


def test_results_folder_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    text = "name: x\ndatasets: [{preset: 4d_diff, scale: 0.03125}]\n"
    code = main(["run", str(write_yaml(tmp_path, text)), "--out", str(blocker / "sub"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(blocker / "sub") in err


def test_inspect_bad_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_d = tmp_path / "flat.h5"
    with h5py.File(two_d, "w") as f:
        f["x"] = np.zeros((4, 4))
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(two_d.read_bytes()[:600])
    for source, culprit in [(str(two_d), "flat.h5"), (str(truncated), "cut.h5"), ("nope_preset", "nope_preset")]:
        assert main(["inspect", source]) == 2
        err = capsys.readouterr().err
        assert culprit in err and "Traceback" not in err


def test_console_script_inspect_preset() -> None:
    done = cubebench("inspect", "4d_diff", "--scale", "0.03125")
    assert done.returncode == 0, done.stderr
    assert "zero_fraction" in done.stdout and "entropy" in done.stdout


def test_console_script_codecs_lists_matrix() -> None:
    done = cubebench("codecs")
    assert done.returncode == 0, done.stderr
    for cid in ("gzip-9", "blosc-zstd", "bitshuffle-lz4", "szip", "lzf"):
        assert cid in done.stdout
    assert "hdf5_direct" in done.stdout and "zarr_direct" in done.stdout
    from cubebench.backends import BACKENDS

    assert done.stdout.splitlines()[0].split() == ["codec", *BACKENDS, "description"]  # columns apart


def test_console_script_codecs_into_a_closed_pipe_ends_quietly() -> None:
    """``cubebench codecs | head -1``: the reader leaves early; no traceback, the shell's SIGPIPE status 141."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cubebench.cli", "codecs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes: every write, or the final flush, meets a closed pipe
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_summary_says_why_each_cell_that_is_not_ok_ended_so() -> None:
    """Below the table, one line per cell that failed, was skipped or did not verify, with its reason."""
    from tests import _results_factory as factory

    from cubebench.cli import summary_table

    ds = factory.make_results(runs=2)
    table, notes = summary_table(ds).split("\n\n")
    lines = notes.splitlines()
    assert "4d_diff hdf5 gzip-9 single_frame: skipped: estimated 5000 s > max_cell_seconds 600" in lines
    assert "4d_diff zarr bitshuffle-lz4 single_frame: unverified: chunk (0, 0, 0, 0) differs" in lines
    failed = [line for line in lines if ": failed: " in line]
    assert failed and all(line.endswith(": failed: szip in zarr needs imagecodecs") for line in failed)
    not_ok = [row for row in table.splitlines()[1:] if row.split()[4] != "ok"]
    assert len(not_ok) == len(lines)  # one note per row whose status is not ok, in the table's order
    assert [row.split()[:4] for row in not_ok] == [line.split(":")[0].split() for line in lines]
    assert "\n\n" not in summary_table(factory.make_minimal_results())  # all ok: the table alone
