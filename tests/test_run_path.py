"""``cubebench run PATH`` on a user's own data file: the quick experiment's matrix on it, overrides, bad inputs.

The end-to-end cases run the real CLI on small files of every source kind; they swap the shipped quick template
for a copy whose cluster is one thread worker (``processes: false``), so that each run starts in a second. One
case (marked slow) uses the shipped template as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h5py
import numpy as np
import pytest
import yaml
import zarr
from tests.test_sources import write_mib

import cubebench
from cubebench import experiment as experiment_module
from cubebench.backends import BACKENDS
from cubebench.cli import main, quick_note
from cubebench.errors import ConfigError
from cubebench.experiment import default_experiment_path, load_experiment, override_experiment
from cubebench.results import load_results
from cubebench.runner.inputs import experiment_for_source, experiment_from_path
from cubebench.sources import source_kind

if TYPE_CHECKING:
    from pathlib import Path

SHAPE = (4, 4, 32, 32)
TINY = ["--codecs", "blosc-lz4", "--backends", "hdf5", "zarr", "--chunks", "single_frame", "--runs", "1"]


def counts(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """Sparse diffraction-like uint16 counts."""
    rng = np.random.default_rng(seed)
    return rng.poisson(0.5, size=shape).astype(np.uint16)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small cube as .npy, as HDF5 with two 4-D datasets, as a Zarr store, and as a .mib frame stack."""
    folder = tmp_path_factory.mktemp("sources")
    cube = counts()
    np.save(folder / "scan.npy", cube)
    with h5py.File(folder / "scan.emd", "w") as f:
        f["data/signal"] = cube
        f["data/dark"] = np.zeros_like(cube)
    z = zarr.create_array(str(folder / "scan.zarr"), shape=cube.shape, chunks=(2, 2, 32, 32), dtype=cube.dtype)
    z[...] = cube
    write_mib(folder / "scan.mib", cube.reshape(-1, *SHAPE[2:]))
    (folder / "noise.bin").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return folder


@pytest.fixture
def fast_quick(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped quick template with a one-thread-worker cluster and no warm-up (its matrix is overridden)."""
    raw = yaml.safe_load(default_experiment_path().read_text())
    raw.update(cluster={"workers": 1, "threads_per_worker": 1, "processes": False}, warmup=False)
    path = tmp_path_factory.mktemp("template") / "quick.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(experiment_module, "default_experiment_path", lambda: path)
    return path


def check_one_line(code: int, err: str, *culprits: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("cubebench: error: "), err
    assert "Traceback" not in err and "UnicodeDecodeError" not in err
    for culprit in culprits:
        assert culprit in err, (culprit, err)


def assert_all_verified(
    out: Path, dataset: str, codecs: tuple[str, ...] = ("blosc-lz4",), shape: str = "4x4x32x32"
) -> None:
    ds = load_results(out)
    assert list(ds["dataset"].values) == [dataset]
    assert sorted(ds["backend"].values) == ["hdf5", "zarr"]
    assert tuple(ds["codec"].values) == codecs
    assert (ds["status"] == "ok").all() and ds["verified"].all()
    assert tuple(ds["dataset_shape"].values.ravel()) == (shape,)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("scan.npy", []),
        ("scan.emd", ["--dataset", "/data/signal"]),
        ("scan.zarr", ["--chunks", "single_frame", "2,2,32,32"]),
        ("scan.mib", ["--scan-shape", "4", "4"]),
    ],
)
def test_run_a_data_file_end_to_end(
    name: str,
    extra: list[str],
    sources: Path,
    fast_quick: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    code = main(["run", str(sources / name), *TINY, *extra, "--out", str(out), "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert_all_verified(out, "scan")
    assert "blosc-lz4" in stdout and "fixed per-cell costs" not in stdout  # the quick note is for the quick run
    if "2,2,32,32" in extra:
        assert list(load_results(out)["chunk"].values) == ["single_frame", "c2x2x32x32"]


def test_default_out_is_results_of_the_file_stem(
    sources: Path, fast_quick: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(sources / "scan.npy"), *TINY, "--no-progress"]) == 0
    assert "results/scan/results.nc" in capsys.readouterr().out
    assert_all_verified(tmp_path / "results" / "scan", "scan")


def test_python_api_runs_a_data_file(sources: Path, fast_quick: Path, tmp_path: Path) -> None:
    ds = cubebench.run(
        sources / "scan.emd",
        out=tmp_path / "api",
        progress=False,
        codecs=["blosc-lz4", "none"],
        backends=["hdf5", "zarr"],
        chunks="single_frame",
        runs=1,
        dataset="/data/signal",
    )
    assert (ds["status"] == "ok").all() and ds["verified"].all()
    assert_all_verified(tmp_path / "api", "scan", codecs=("blosc-lz4", "none"))


def test_overrides_apply_to_an_experiment_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "datasets": [{"preset": "4d_diff", "scale": 0.015625, "name": "scan"}],  # 4 x 4 x 256 x 256
                "backends": ["zarr_direct"],
                "codecs": ["none"],
                "chunks": ["balanced"],
                "runs": 2,
                "warmup": False,
                "cluster": {"workers": 1, "processes": False},
            }
        )
    )
    out = tmp_path / "out"
    assert main(["run", str(path), *TINY, "--out", str(out), "--no-progress"]) == 0
    assert_all_verified(out, "scan", shape="4x4x256x256")
    assert load_results(out).sizes["run"] == 1


@pytest.mark.slow
def test_run_a_data_file_with_the_shipped_quick_cluster(
    sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(sources / "scan.npy"), *TINY, "--out", str(out), "--no-progress"]) == 0
    assert_all_verified(out, "scan")


def test_experiment_for_source_uses_the_quick_matrix(sources: Path) -> None:
    quick = load_experiment(default_experiment_path())
    exp = experiment_for_source(sources / "scan.mib", scan_shape=(4, 4))
    assert exp.name == "scan"
    assert exp.datasets == ({"path": str(sources / "scan.mib"), "scan_shape": [4, 4]},)
    assert (exp.backends, exp.codecs, exp.chunks, exp.runs) == (quick.backends, quick.codecs, quick.chunks, quick.runs)
    assert exp.cluster == quick.cluster
    exp = experiment_for_source(sources / "scan.npy", codecs="blosc-lz4", chunks=["1,1,32,32"], runs=1)
    assert (exp.codecs, exp.chunks, exp.runs) == (("blosc-lz4",), ((1, 1, 32, 32),), 1)
    assert override_experiment(exp, codecs=["study"]).codecs == quick.codecs
    assert override_experiment(exp, backends=["all"]).backends == tuple(BACKENDS)


def test_source_kind(sources: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "scan.dat"
    disguised.write_bytes((sources / "scan.emd").read_bytes())
    kinds = {
        "scan.npy": "npy",
        "scan.emd": "hdf5",
        "scan.zarr": "zarr",
        "scan.mib": "mib",
        "noise.bin": None,
        "missing.h5": "hdf5",
        "missing.yaml": None,
    }
    for name, kind in kinds.items():
        assert source_kind(sources / name) == kind, name
    assert source_kind(disguised) == "hdf5"
    assert source_kind(tmp_path) is None  # a folder that is no Zarr store


BAD = {
    "binary_file": (["{src}/noise.bin"], ("noise.bin", "expected a data file")),
    "unknown_codec": (["{src}/scan.npy", "--codecs", "gzip-10"], ("'gzip-10'",)),
    "unknown_backend": (["{src}/scan.npy", "--backends", "hdf5", "tiff"], ("'tiff'",)),
    "bad_chunk_string": (["{src}/scan.npy", "--chunks", "4,4,x,32"], ("'4,4,x,32'",)),
    "zero_runs": (["{src}/scan.npy", "--runs", "0"], ("'runs'", "0")),
    "mib_without_scan_shape": (["{src}/scan.mib"], ("scan.mib", "scan_shape")),
    "hdf5_with_two_datasets": (["{src}/scan.emd"], ("scan.emd", "/data/signal", "/data/dark")),
    "wrong_dataset": (["{src}/scan.emd", "--dataset", "/nope"], ("scan.emd", "'/nope'")),
    "missing_file": (["{src}/gone.emd"], ("gone.emd", "not found")),
    "missing_unknown_kind": (["{src}/gone"], ("gone", "not found", "expected an experiment")),
    "folder_not_zarr": (["{tmp}"], ("a directory that is not a Zarr store",)),
    "yaml_list": (["{tmp}/list.yaml"], ("list.yaml", "mapping")),
    "binary_yaml": (["{tmp}/binary.yaml"], ("binary.yaml", "not an experiment")),
    "dataset_for_an_experiment": (["{tmp}/exp.yaml", "--dataset", "/x"], ("exp.yaml", "dataset applies")),
    "scan_shape_for_the_quick_run": (["--scan-shape", "4", "4"], ("quick experiment", "scan_shape")),
    "unknown_codec_for_an_experiment": (["{tmp}/exp.yaml", "--codecs", "zstd", "nope"], ("'nope'",)),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_run_inputs_are_one_line(
    case: str, sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "list.yaml").write_text("- 4d_diff\n- zarr\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe\x00" * 50)
    (tmp_path / "exp.yaml").write_text("datasets: [{preset: 4d_diff, scale: 0.03125}]\n")
    args, culprits = BAD[case]
    argv = [a.replace("{src}", str(sources)).replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "never"
    code = main(["run", *argv, "--out", str(out), "--no-progress"])
    check_one_line(code, capsys.readouterr().err, *culprits)
    assert not out.exists()


def test_experiment_from_path_reads_a_text_experiment_of_any_suffix(tmp_path: Path) -> None:
    path = tmp_path / "exp.txt"
    path.write_text("datasets: [{preset: 4d_diff}]\ncodecs: [none]\n")
    exp = experiment_from_path(path, runs=2)
    assert (exp.name, exp.codecs, exp.runs) == ("exp", ("none",), 2)
    with pytest.raises(ConfigError, match="scan_shape applies"):
        experiment_from_path(path, scan_shape=[2, 2])


def test_inspect_takes_scan_shape_and_dataset(sources: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(sources / "scan.mib"), "--scan-shape", "2", "8"]) == 0
    assert "2 x 8 x 32 x 32" in capsys.readouterr().out
    assert main(["inspect", str(sources / "scan.emd"), "--dataset", "data/signal"]) == 0
    assert "4 x 4 x 32 x 32" in capsys.readouterr().out
    check_one_line(main(["inspect", str(sources / "scan.mib")]), capsys.readouterr().err, "scan.mib", "scan_shape")


def test_quick_run_closes_with_what_its_figures_mean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the built-in quick run (no PATH) says its cube is small and how to benchmark one's own file."""
    from tests import _results_factory as factory

    import cubebench.runner

    ds = factory.make_minimal_results()
    monkeypatch.setattr(cubebench.runner, "run", lambda *args, **kwargs: ds)
    note = quick_note(ds)
    assert len(note.splitlines()) == 3
    assert "fixed per-cell costs dominate" in note and "GiB/s" in note
    assert "cubebench run scan.emd" in note and "--scan-shape" in note
    assert main(["run", "--no-progress"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(note)
    assert main(["run", "scan.emd", "--no-progress"]) == 0
    assert "fixed per-cell costs" not in capsys.readouterr().out
