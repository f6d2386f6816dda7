"""The runner end to end on a real LocalCluster: every cell verified, results saved, resume, failures recorded."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.helpers import experiment

import cubebench
from cubebench.errors import ConfigError
from cubebench.experiment import parse_experiment
from cubebench.results import LOG_FILE, load_results
from cubebench.runner import plan_cells

if TYPE_CHECKING:
    from pathlib import Path


RUNNER = {
    "backends": ["hdf5", "hdf5_direct", "zarr"],
    "codecs": ["none", "gzip-1", "blosc-zstd", "bitshuffle-lz4"],
    "chunks": ["real_space", "single_frame"],
    "runs": 2,
}


def test_plan_interleaves_runs() -> None:
    exp = parse_experiment(
        experiment(
            RUNNER,
        )
    )
    cells = plan_cells(exp, ["diff"])
    assert len(cells) == 3 * 4 * 2 * 2
    assert [c.run for c in cells[: len(cells) // 2]] == [0] * (len(cells) // 2)


def test_run_writes_verified_dataset(tmp_path: Path) -> None:
    out = tmp_path / "res"
    ds = cubebench.run(
        experiment(
            RUNNER,
        ),
        out=out,
        progress=False,
    )
    assert set(ds.dims) == {"dataset", "backend", "codec", "chunk", "storage", "run"}
    assert (ds["status"] == "ok").all(), ds["reason"].values
    assert ds["verified"].all()
    ratio = ds["ratio"].sel(dataset="diff")
    assert float(ratio.sel(codec="none").mean()) == pytest.approx(1.0, abs=0.05)
    assert float(ratio.sel(codec="blosc-zstd").min()) > 3
    # ratio is deterministic across runs and the same codec agrees across backends within header overhead
    assert float(ratio.std("run").max()) == 0.0
    zstd = ratio.sel(codec="blosc-zstd", chunk="real_space", run=0)
    assert float(zstd.max() / zstd.min()) < 1.02
    assert (ds["peak_memory_bytes"] > 0).all()
    assert str(ds["chunk_shape"].sel(dataset="diff", chunk="single_frame").item()) == "1x1x256x256"
    loaded = load_results(out)
    assert loaded["ratio"].equals(ds["ratio"])
    assert (out / "results.csv").read_text().count("\n") == 1 + ds["status"].size
    attrs = json.loads(loaded.attrs["libraries"])
    assert "zarr" in attrs and "hdf5" in attrs
    assert float(loaded["dataset_zero_fraction"].sel(dataset="diff")) == pytest.approx(0.747, abs=0.015)


def test_existing_results_are_never_overwritten_and_resume_runs_only_missing(tmp_path: Path) -> None:
    exp = experiment(RUNNER, backends=["zarr"], codecs=["gzip-1"], chunks=["real_space"], runs=1)
    out = tmp_path / "res"
    cubebench.run(exp, out=out, progress=False)
    with pytest.raises(ConfigError, match=r"--resume"):
        cubebench.run(exp, out=out, progress=False)
    # drop the log's only line; resume must re-run exactly that cell
    log = out / LOG_FILE
    first = log.read_text()
    log.write_text("")
    exp2 = dict(exp, runs=2)
    ds = cubebench.run(exp2, out=out, resume=True, progress=False)
    assert ds.sizes["run"] == 2 and (ds["status"] == "ok").all()
    assert len(log.read_text().splitlines()) == 2
    assert first.split('"status"')[0] in log.read_text()


def test_unavailable_codec_is_recorded_not_swapped(tmp_path: Path) -> None:
    ds = cubebench.run(
        experiment(RUNNER, backends=["hdf5"], codecs=["pcodec"], chunks=["real_space"], runs=1),
        out=tmp_path / "r",
        progress=False,
    )
    assert ds["status"].item() == "unavailable"
    assert "pcodec" in ds["reason"].item()
    assert np.isnan(ds["write_seconds"].item())


def test_progress_bar_ends_exactly_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The bar counts estimated seconds; its total once rounded below their sum (tqdm warned, ETA went negative)."""
    from cubebench.runner.session import Session as _Session

    monkeypatch.setattr(_Session, "estimate", lambda self, cell: 0.13)  # 4 x 0.13: 0.52, which rounded to 0.5
    exp = experiment(RUNNER, backends=["hdf5"], codecs=["none", "blosc-zstd"], chunks=["real_space", "balanced"])
    cubebench.run(dict(exp, runs=1, warmup=False), out=tmp_path / "r", progress=True)
    err = capfd.readouterr().err
    assert "100%" in err and "4/4 " in err
    assert "TqdmWarning" not in err and "<-" not in err


def test_budget_skips_slow_cells_and_resume_retries_them(tmp_path: Path) -> None:
    import yaml

    from cubebench.cli import main

    exp = experiment(RUNNER, backends=["hdf5"], codecs=["gzip-9", "none"], chunks=["real_space"], runs=1)
    ds = cubebench.run(dict(exp, max_cell_seconds=1e-6), out=tmp_path / "r", progress=False)
    status = ds["status"].sel(codec="gzip-9").item()
    assert status == "skipped"
    assert "estimated" in ds["reason"].sel(codec="gzip-9").item()
    assert float(ds["estimate_seconds"].sel(codec="gzip-9").item()) > 0
    # the budget raised (here: dropped), a resume runs the skipped cells again
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    args = ["run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "r"), "--no-progress", "--resume"]
    assert main([*args, "--retry", "skipped"]) == 0
    ds = load_results(tmp_path / "r")
    assert (ds["status"] == "ok").all() and ds["verified"].all()
    lines = [json.loads(line) for line in (tmp_path / "r" / LOG_FILE).read_text().splitlines()]
    assert [c["status"] for c in lines] == ["skipped", "skipped", "ok", "ok"]
    assert main([*args, "--retry", "skipped", "failed"]) == 0  # nothing left to retry: nothing runs
    assert len((tmp_path / "r" / LOG_FILE).read_text().splitlines()) == 4


@pytest.mark.slow
def test_every_backend_every_preset_and_a_mib_source(tmp_path: Path) -> None:
    """The whole matrix end to end: all backends, all five presets (scaled) and a .mib file, each cell verified."""
    from tests.test_sources import write_mib

    from cubebench.backends import BACKENDS
    from cubebench.sources import list_presets

    frames = np.random.default_rng(1).poisson(0.4, size=(16, 32, 32)).astype("uint16")
    write_mib(tmp_path / "scan.mib", frames)
    datasets: list[dict[str, Any]] = [{"preset": p, "scale": 0.03125, "name": p} for p in list_presets()]
    datasets.append({"path": str(tmp_path / "scan.mib"), "scan_shape": [4, 4], "name": "mib"})
    ds = cubebench.run(
        experiment(
            RUNNER,
            datasets=datasets,
            backends=list(BACKENDS),
            codecs=["none", "gzip-1", "blosc-zstd"],
            chunks=["balanced"],
            runs=1,
        ),
        out=tmp_path / "all",
        progress=False,
    )
    status = ds["status"].values
    assert set(np.unique(status)) <= {"ok", "unavailable"}, ds["reason"].values[status != "ok"]
    assert (ds["verified"].values == (status == "ok")).all()
    for backend in BACKENDS:  # every backend ran something on every dataset
        assert (ds["status"].sel(backend=backend) == "ok").any("codec").all()
    unavailable = ds["reason"].values[status == "unavailable"]
    assert all(reason for reason in unavailable)


def test_uncompressed_npy_source_is_read_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A native C-ordered 4-D .npy is already a staged cube: the run reads it without copying it."""
    import cubebench.runner.session

    array = np.random.default_rng(3).poisson(0.5, size=(4, 4, 32, 32)).astype("uint16")
    np.save(tmp_path / "scan.npy", array)

    def no_copy(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the .npy source was copied")

    monkeypatch.setattr(cubebench.runner.session, "stage_cube", no_copy)
    ds = cubebench.run(
        experiment(
            RUNNER,
            datasets=[{"path": str(tmp_path / "scan.npy"), "name": "npy"}],
            backends=["zarr"],
            codecs=["blosc-zstd"],
            chunks=["balanced"],
            runs=1,
        ),
        out=tmp_path / "r",
        progress=False,
    )
    assert ds["status"].item() == "ok" and bool(ds["verified"].item())
    assert (tmp_path / "scan.npy").exists()


def test_chunk_major_layout_changes_timing_source_not_results(tmp_path: Path) -> None:
    """``layout: chunked`` (default) and ``layout: source`` store identical bytes; only scattered chunkings use it."""
    runs = {}
    for layout in ("chunked", "source"):
        runs[layout] = cubebench.run(
            experiment(
                RUNNER, layout=layout, chunks=["balanced", "single_frame"], codecs=["blosc-zstd"], runs=1, warmup=True
            ),
            out=tmp_path / layout,
            progress=False,
        )
    chunked, source = runs["chunked"], runs["source"]
    assert (chunked["status"] == "ok").all() and (source["status"] == "ok").all()
    assert chunked["stored_bytes"].equals(source["stored_bytes"])
    flags = chunked["chunk_major"].sel(dataset="diff", codec="blosc-zstd", run=0)
    assert bool(flags.sel(chunk="balanced").all()), "hdf5, hdf5_direct and zarr read balanced chunks chunk-major"
    assert not bool(flags.sel(chunk="single_frame").any()), "single frames already lie in one run"
    assert not bool(source["chunk_major"].any())
    timing = json.loads(chunked.attrs["timing"])
    assert "chunk-major" in timing["source"]
    assert not list((tmp_path / "chunked").glob("*.npy")), "the chunk-major copies are scratch, removed after the run"


def test_auto_layout_copies_only_when_enough_cells_read_the_chunking(tmp_path: Path) -> None:
    """``layout: auto``: 3 backends x 1 codec x 1 run = 3 writes do not repay a copy; 3 x 3 = 9 do."""
    few = cubebench.run(
        experiment(RUNNER, chunks=["balanced"], codecs=["blosc-zstd"], runs=1), out=tmp_path / "few", progress=False
    )
    many = cubebench.run(
        experiment(RUNNER, chunks=["balanced"], codecs=["none", "blosc-zstd", "gzip-1"], runs=1),
        out=tmp_path / "many",
        progress=False,
    )
    assert (few["status"] == "ok").all() and (many["status"] == "ok").all()
    assert not bool(few["chunk_major"].any())
    assert bool(many["chunk_major"].all())
    assert few["stored_bytes"].sel(codec="blosc-zstd").equals(many["stored_bytes"].sel(codec="blosc-zstd"))
