"""Inference sufficiency on a real Dask cluster: representations stored chunk by chunk, verified and scored.

Known answers: lossless codecs and the event list give zero error on every target and metric; sum binning keeps
the BF image exactly when the disk is whole bins; lossy codecs keep their bound on the decoded data; a corrupted
stored chunk is caught; a whole experiment produces the sufficiency Dataset, the CLI answer and the report.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.helpers import sparse_counts, stage_array

from cubebench.sufficiency.representations import REPRESENTATIONS, get_representation
from cubebench.sufficiency.run import (
    expected_checksums,
    read_representation,
    score_representation,
    source_quantities,
    sufficiency_chunks,
    write_representation,
)
from cubebench.sufficiency.targets import resolve_targets

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.cube import StagedCube

ALL_TARGETS = {"bf": {"outer": 4}, "adf": {"inner": 5, "outer": 7}, "com": {"outer": 4}, "mean_pattern": {}}


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> StagedCube:
    """7 x 5 probe positions of 16 x 16 counting data (70 % zeros, values up to 4095): chunks of 4 x 4 leave edges."""
    values = sparse_counts((7, 5, 16, 16), zero_fraction=0.7, seed=7, p=0.02)
    return stage_array(values, tmp_path_factory.mktemp("sufficiency"))


def score(client: Client, cube: StagedCube, rep_id: str, tmp_path: Path, targets: Any = None) -> Any:
    return score_representation(client, cube, rep_id, targets or ALL_TARGETS, tmp_path, chunk=(4, 4))


#: One lossless representation of each family in the registry, plus the study's default storage codec.
LOSSLESS_BY_FAMILY = sorted(
    {spec.family: rep_id for rep_id, spec in REPRESENTATIONS.items() if spec.lossless and rep_id != "pcodec"}.values()
)
#: One lossy or reduced representation of each family in the registry.
REDUCED_BY_FAMILY = sorted(
    {spec.family: rep_id for rep_id, spec in REPRESENTATIONS.items() if not spec.lossless}.values()
)


@pytest.mark.parametrize("rep_id", [*LOSSLESS_BY_FAMILY, "blosc-zstd", "bitshuffle-lz4"])
def test_lossless_representations_have_zero_error(
    client: Client, cube: StagedCube, tmp_path: Path, rep_id: str
) -> None:
    result = score(client, cube, rep_id, tmp_path)
    assert result.status == "ok" and result.verified, result.reason  # type: ignore[attr-defined]
    assert result.n_chunks == 4 and result.stored_bytes > 0 and result.write_seconds > 0  # type: ignore[attr-defined]
    assert result.data_max_abs_error == 0  # type: ignore[attr-defined]
    for target in ALL_TARGETS:
        assert result.errors[target] == {"rel_l2": 0.0, "max_abs": 0.0, "psnr": math.inf}  # type: ignore[attr-defined]
    assert not list(tmp_path.glob("*.h5"))  # scratch files removed


def test_sum_binning_keeps_bf_on_the_cluster(client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    staged = stage_array(rng.integers(0, 50, size=(5, 6, 8, 8)).astype(np.uint16), tmp_path)
    result = score(client, staged, "bin2-sum", tmp_path, {"bf": {"outer": 2.2}, "com": {"outer": 2.2}})
    assert result.status == "ok", result.reason  # type: ignore[attr-defined]
    assert result.errors["bf"]["rel_l2"] == 0 and result.errors["bf"]["max_abs"] == 0  # type: ignore[attr-defined]
    assert result.errors["com"]["rel_l2"] > 0  # type: ignore[attr-defined]  # the intra-bin positions are lost


@pytest.mark.parametrize("rep_id", ["zfp-acc-2", "sz3-abs-2", "sz3-abs-16"])
def test_lossy_codecs_keep_their_bound_on_the_decoded_data(
    client: Client, cube: StagedCube, tmp_path: Path, rep_id: str
) -> None:
    result = score(client, cube, rep_id, tmp_path)
    assert result.status == "ok" and result.verified, result.reason  # type: ignore[attr-defined]
    bound = get_representation(rep_id).kw["tolerance"]
    assert result.error_bound == bound and 0 < result.data_max_abs_error <= bound  # type: ignore[attr-defined]
    assert 0 < result.errors["bf"]["rel_l2"] < 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("rep_id", [r for r in REDUCED_BY_FAMILY if not r.startswith(("zfp", "sz3"))] + ["crop-0.5"])
def test_reduced_forms_verify_and_lose_what_they_say(
    client: Client, cube: StagedCube, tmp_path: Path, rep_id: str
) -> None:
    result = score(client, cube, rep_id, tmp_path)
    assert result.status == "ok" and result.verified, result.reason  # type: ignore[attr-defined]
    assert result.stored_bytes > 0 and result.errors["mean_pattern"]["rel_l2"] > 0  # type: ignore[attr-defined]
    if rep_id == "crop-0.5":  # radius 4 px: the BF disk (outer 4) is kept, the ADF annulus (5 to 7) is not
        assert result.errors["bf"]["rel_l2"] == 0 and result.errors["adf"]["rel_l2"] == 1  # type: ignore[attr-defined]


def test_unavailable_representation_is_a_result(client: Client, cube: StagedCube, tmp_path: Path) -> None:
    result = score(client, cube, "bin3-sum", tmp_path)
    assert result.status == "unavailable" and "not divisible" in result.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("rep_id", ["zfp-acc-2", "events"])
def test_a_corrupted_stored_chunk_is_caught(client: Client, cube: StagedCube, tmp_path: Path, rep_id: str) -> None:
    import h5py

    targets = resolve_targets(ALL_TARGETS, (16, 16))
    chunks = sufficiency_chunks(cube.shape, 2, (4, 4))
    source = source_quantities(client, cube, targets, chunks)
    layout = get_representation(rep_id).layout(cube.shape, cube.dtype, source.max_value, chunks)
    target = tmp_path / "stored.h5"
    expected = expected_checksums(client, cube, layout)
    write_representation(client, cube, layout, target)
    assert read_representation(client, target, layout, cube.shape) == expected
    with h5py.File(target, "r+") as f:
        if rep_id == "events":  # chunks are appended as they finish: find the one holding the first event
            iy, ix, _, _ = next(row for row in f["events/chunk_table"][...].tolist() if row[2] == 0 and row[3] > 0)
            f["events/count"][0] += 1
            corrupted = (iy, ix, 0, 0)
        else:
            f["data"][6, 4, 3, 3] += 1  # inside the last (edge) chunk
            corrupted = (1, 1, 0, 0)
    back = read_representation(client, target, layout, cube.shape)
    assert [index for index in expected if expected[index] != back[index]] == [corrupted]


def test_experiment_end_to_end(client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cubebench
    from cubebench.cli import main

    out = tmp_path / "results"
    rng = np.random.default_rng(11)
    frames = rng.geometric(0.05, size=(6, 6, 32, 32)).clip(0, 4095) * (rng.random((6, 6, 32, 32)) > 0.8)
    np.save(tmp_path / "tiny.npy", frames.astype(np.uint16))
    experiment = {
        "name": "suff",
        "datasets": [{"path": str(tmp_path / "tiny.npy"), "name": "tiny"}],
        "backends": ["hdf5_direct"],
        "codecs": ["blosc-zstd"],
        "chunks": ["real_space"],
        "runs": 2,
        "warmup": False,
        "cluster": {"workers": 2, "threads_per_worker": 1},
        "representations": ["blosc-zstd", "events", "bin2-sum", "uint8-sat", "sz3-abs-4"],
        "targets": {"bf": {"outer": 3}, "adf": {"inner": 6, "outer": 12}, "com": {}, "mean_pattern": {}},
        "sufficiency": {"chunk": [4, 4], "tolerance": 0.05},
    }
    cubebench.run(experiment, out=out, progress=False)
    sds = cubebench.load_sufficiency(out)
    assert sds["inference_error"].dims == ("dataset", "representation", "target", "metric")
    assert sds.sizes == {"dataset": 1, "representation": 5, "target": 4, "metric": 3, "run": 2}
    assert (sds["status"] == "ok").all() and bool(sds["verified"].all())
    exact = sds["inference_error"].sel(representation="events")
    assert float(exact.sel(metric=["rel_l2", "max_abs"]).max()) == 0 and bool(np.isinf(exact.sel(metric="psnr")).all())
    stored = sds["stored_bytes"].sel(dataset="tiny")
    assert 0 < int(stored.sel(representation="bin2-sum")) < int(stored.sel(representation="events"))
    assert np.isfinite(sds["write_seconds"]).all()
    assert main(["sufficient", str(out), "--target", "bf", "--tolerance", "0.05"]) == 0
    assert capsys.readouterr().out.startswith("bf with rel_l2 <= 0.05 on tiny: ")
    assert main(["report", str(out)]) == 0
    index = (out / "report" / "index.md").read_text()
    assert "## Inference sufficiency" in index and "(5) Provenance" in index
    assert (out / "report" / "figures" / "sufficiency.png").exists()
    # resume: nothing left to do, the Dataset is rebuilt from the log
    cubebench.run(experiment, out=out, progress=False, resume=True)
    assert cubebench.load_sufficiency(out).sizes["representation"] == 5
