"""Inference sufficiency without a cluster: representations, targets, metrics, the smallest sufficient answer.

Known answers: the event list and lossless codecs are exact; sum binning keeps the virtual bright-field image
exactly when the detector disk is made of whole bins; a lossy codec keeps its error bound; the answer on a
constructed Dataset is the expected representation; bad names give one-line errors naming them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tests.helpers import sparse_counts

from cubebench.cli import main
from cubebench.errors import ConfigError, ResultsError
from cubebench.experiment import parse_experiment
from cubebench.sufficiency.representations import (
    REPRESENTATIONS,
    form_checksum,
    get_representation,
    resolve_representations,
)
from cubebench.sufficiency.results import (
    RepresentationResult,
    load_sufficiency,
    records_to_sufficiency,
    save_sufficiency,
)
from cubebench.sufficiency.stats import format_answer, principles, smallest_sufficient, sufficiency_front
from cubebench.sufficiency.targets import (
    DetectorGeometry,
    block_quantities,
    error_metrics,
    finish_quantities,
    resolve_targets,
)

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------
# the registry


def test_every_catalog_entry_is_reachable_and_describes_itself() -> None:
    for rep_id, spec in REPRESENTATIONS.items():
        assert get_representation(rep_id) is spec
        assert spec.id == rep_id and spec.discards and spec.description
        assert "\n" not in spec.discards
    expected = {"events", "bin2-sum", "bin2-mean", "bin4-sum", "bin4-mean", "uint8-sat", "crop-0.5"}
    assert expected <= set(REPRESENTATIONS)
    assert get_representation("blosc-zstd").lossless and get_representation("events").lossless
    assert not get_representation("zfp-acc-4").lossless


def test_parametric_ids_parse() -> None:
    assert get_representation("bin8-mean").kw == {"factor": 8, "how": "mean"}
    assert get_representation("crop-r40").kw == {"pixels": 40}
    assert get_representation("crop-0.75").kw == {"fraction": 0.75}
    assert get_representation("zfp-acc-1e-3").kw == {"tolerance": 0.001}
    assert get_representation("bitround-9-zstd").kw == {"keepbits": 9}
    assert resolve_representations("all")[0] == "blosc-zstd"


@pytest.mark.parametrize(
    "bad", ["bin3-avg", "bin1-sum", "crop-1.5", "crop-r0", "zfp-acc-0", "sz3-abs-x", "bitround-99-zstd", "gzip-10"]
)
def test_bad_representation_names_are_one_line_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_representation(bad)
    assert bad in str(info.value) and "\n" not in str(info.value)


def test_representation_list_errors() -> None:
    with pytest.raises(ConfigError, match=r"listed more than once"):
        resolve_representations(["events", "events"])
    with pytest.raises(ConfigError, match=r"non-empty"):
        resolve_representations([])


def test_unavailable_layouts_say_why() -> None:
    from cubebench.errors import CodecUnavailableError

    with pytest.raises(CodecUnavailableError, match=r"bin3-sum: the detector 16 x 16 is not divisible by the bin"):
        get_representation("bin3-sum").layout((2, 2, 16, 16), "uint16")
    with pytest.raises(CodecUnavailableError, match=r"pcodec"):
        get_representation("pcodec").layout((2, 2, 16, 16), "uint16")


# ---------------------------------------------------------------------------------------------------------------
# transforms: known answers


#: Every representation the registry calls lossless: each must restore the source exactly.
LOSSLESS = [rep_id for rep_id, spec in REPRESENTATIONS.items() if spec.lossless]


@pytest.mark.parametrize("rep_id", LOSSLESS)
def test_lossless_forms_restore_the_source_exactly(rep_id: str) -> None:
    from cubebench.errors import CodecUnavailableError

    block = sparse_counts((3, 2, 16, 12), zero_fraction=0.7, p=0.02)
    try:
        layout = get_representation(rep_id).layout(block.shape, block.dtype, 4095, (3, 2, 16, 12))
    except CodecUnavailableError as exc:  # a codec the HDF5 storage of representations cannot take (pcodec)
        assert rep_id in str(exc) and "\n" not in str(exc)
        return
    form = layout.transform(block)
    assert form_checksum(layout.reference(form)) == form_checksum(form)
    np.testing.assert_array_equal(layout.decode(form), block)
    np.testing.assert_array_equal(layout.restore(form), block.astype(float))


def test_event_list_holds_coordinates_and_counts_of_nonzero_pixels() -> None:
    block = np.zeros((1, 2, 4, 4), dtype=np.uint16)
    block[0, 0, 1, 2] = 5
    block[0, 1, 3, 0] = 7
    block[0, 1, 0, 3] = 1
    form = get_representation("events").layout(block.shape, block.dtype).transform(block)
    assert form["frame_counts"].tolist() == [[1, 2]]
    assert list(zip(form["y"].tolist(), form["x"].tolist(), form["count"].tolist(), strict=True)) == [
        (1, 2, 5),
        (0, 3, 1),
        (3, 0, 7),
    ]


def test_sum_binning_keeps_bf_exactly_when_the_disk_is_whole_bins() -> None:
    # 8 x 8 detector, centre 3.5: radius 2.2 selects exactly the central 4 x 4 pixels = the central 2 x 2 bins
    block = sparse_counts((3, 3, 8, 8), seed=1, zero_fraction=0.7, p=0.02)
    targets = resolve_targets({"bf": {"outer": 2.2}}, (8, 8))
    source = block_quantities(block, DetectorGeometry.identity((8, 8)), targets)["bf"]
    np.testing.assert_array_equal(source, block[:, :, 2:6, 2:6].sum(axis=(2, 3)))
    for rep_id in ("bin2-sum", "bin2-mean"):
        layout = get_representation(rep_id).layout(block.shape, block.dtype, 4095)
        binned = block_quantities(layout.decode(layout.transform(block)), layout.geometry, targets)["bf"]
        assert error_metrics(binned, source) == {"rel_l2": 0.0, "max_abs": 0.0, "psnr": math.inf}
    # a disk that cuts through bins is not exact
    cut = resolve_targets({"bf": {"outer": 2.6}}, (8, 8))
    layout = get_representation("bin2-sum").layout(block.shape, block.dtype, 4095)
    ref = block_quantities(block, DetectorGeometry.identity((8, 8)), cut)["bf"]
    binned = block_quantities(layout.transform(block)["data"], layout.geometry, cut)["bf"]
    assert error_metrics(binned, ref)["rel_l2"] > 0


def test_sum_binning_picks_a_wide_enough_integer() -> None:
    assert get_representation("bin4-sum").layout((1, 1, 8, 8), "uint16", 4095).stored_dtype == "<u2"
    assert get_representation("bin4-sum").layout((1, 1, 8, 8), "uint16", 65535).stored_dtype == "<u4"
    block = np.full((1, 1, 8, 8), 65535, dtype=np.uint16)
    layout = get_representation("bin4-sum").layout(block.shape, block.dtype)
    assert int(layout.transform(block)["data"].max()) == 16 * 65535


def test_binned_mean_pattern_keeps_counts_on_the_source_detector() -> None:
    block = sparse_counts((2, 2, 8, 8), seed=2, zero_fraction=0.7, p=0.02)
    for rep_id in ("bin2-sum", "bin4-mean"):
        layout = get_representation(rep_id).layout(block.shape, block.dtype, 4095)
        assert math.isclose(float(layout.restore(layout.transform(block)).sum()), float(block.sum()))


def test_crop_keeps_the_disk_and_zeroes_the_rest() -> None:
    block = sparse_counts((2, 2, 16, 16), seed=3, zero_fraction=0.7, p=0.02)
    layout = get_representation("crop-r4").layout(block.shape, block.dtype)
    restored = layout.restore(layout.transform(block))
    ys, xs = np.mgrid[0:16, 0:16]
    inside = np.hypot(ys - 7.5, xs - 7.5) <= 4
    np.testing.assert_array_equal(restored[..., inside], block[..., inside])
    assert not restored[..., ~inside].any()
    targets = resolve_targets({"bf": {"outer": 4}}, (16, 16))
    source = block_quantities(block, DetectorGeometry.identity((16, 16)), targets)["bf"]
    cropped = block_quantities(layout.transform(block)["data"], layout.geometry, targets)["bf"]
    np.testing.assert_array_equal(cropped, source)


def test_uint8_saturates() -> None:
    block = np.array([0, 3, 255, 256, 4095], dtype=np.uint16).reshape(1, 1, 1, 5)
    layout = get_representation("uint8-sat").layout(block.shape, block.dtype)
    assert layout.transform(block)["data"].ravel().tolist() == [0, 3, 255, 255, 255]


@pytest.mark.parametrize("rep_id", ["zfp-acc-0.5", "zfp-acc-8", "sz3-abs-0.5", "sz3-abs-8"])
def test_lossy_codecs_keep_their_bound(rep_id: str) -> None:
    block = sparse_counts((3, 3, 16, 16), seed=4, zero_fraction=0.7, p=0.02)
    layout = get_representation(rep_id).layout(block.shape, block.dtype, 4095, (2, 2, 16, 16))
    decoded = layout.reference(layout.transform(block[:2, :2]))["data"]
    error = float(np.abs(decoded.astype(float) - block[:2, :2]).max())
    assert 0 <= error <= layout.bound
    edge = layout.reference(layout.transform(block[2:, 2:]))["data"]  # an edge piece, padded like HDF5 pads it
    assert edge.shape == (1, 1, 16, 16) and float(np.abs(edge.astype(float) - block[2:, 2:]).max()) <= layout.bound


def test_bitround_keeps_its_relative_precision() -> None:
    block = sparse_counts((2, 2, 8, 8), seed=5, zero_fraction=0.7, p=0.02)
    layout = get_representation("bitround-5-zstd").layout(block.shape, block.dtype)
    values = layout.decode(layout.transform(block)).astype(float)
    nonzero = block > 0
    assert (np.abs(values - block)[nonzero] / block[nonzero]).max() <= 2.0**-6
    assert not values[~nonzero].any()


# ---------------------------------------------------------------------------------------------------------------
# targets and metrics


def test_metrics_known_values() -> None:
    ref = np.array([0.0, 1.0, 2.0, 3.0])
    out = error_metrics(ref + np.array([0, 0, 0, 0.5]), ref)
    assert math.isclose(out["rel_l2"], 0.5 / math.sqrt(14))
    assert out["max_abs"] == 0.5
    assert math.isclose(out["psnr"], 20 * math.log10(3 / 0.25))
    assert error_metrics(np.ones(3), np.zeros(3))["rel_l2"] == math.inf


def test_com_and_mean_pattern() -> None:
    frame = np.zeros((1, 1, 9, 9))
    frame[0, 0, 4, 6] = 10  # two pixels right of the centre (4, 4)
    targets = resolve_targets({"com": {"outer": 3}, "mean_pattern": {}}, (9, 9))
    geometry = DetectorGeometry.identity((9, 9))
    done = finish_quantities(block_quantities(frame, geometry, targets), geometry, 1)
    assert done["com"][0, 0].tolist() == [0.0, 2.0]
    np.testing.assert_array_equal(done["mean_pattern"], frame[0, 0])


def test_target_defaults_and_mrad() -> None:
    bf, adf = resolve_targets(["bf", "adf"], (256, 256))
    assert bf.inner == 0 and 16 < bf.outer < 24 and bf.center == (127.5, 127.5)
    assert 30 < adf.inner < adf.outer < 0.412 * 256
    (mrad,) = resolve_targets({"adf": {"inner": 20, "outer": 50, "units": "mrad"}}, (256, 256), mrad_per_pixel=0.5)
    assert (mrad.inner, mrad.outer) == (40, 100)
    with pytest.raises(ConfigError, match=r"mrad_per_pixel"):
        resolve_targets({"adf": {"inner": 20, "units": "mrad"}}, (256, 256))


# ---------------------------------------------------------------------------------------------------------------
# configuration


def base(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {"name": "t", "datasets": [{"preset": "4d_diff", "scale": 0.03125}]}
    raw.update(overrides)
    return raw


def test_experiment_keys_round_trip() -> None:
    exp = parse_experiment(
        base(
            representations=["events", "zfp-acc-2"],
            targets={"bf": {"outer": 16}},
            sufficiency={"chunk": [4, 4], "tolerance": 0.05},
        )
    )
    assert exp.representations == ("events", "zfp-acc-2") and exp.sufficiency.chunk == (4, 4)
    assert parse_experiment(exp.to_dict()) == exp
    defaults = parse_experiment(base(representations=["events"]))
    assert set(defaults.targets) == {"bf", "adf", "com", "mean_pattern"}


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        ({"representations": ["bin3-avg"]}, "'bin3-avg'"),
        ({"representations": ["events"], "targets": {"haadf": {}}}, "'haadf'"),
        ({"representations": ["events"], "targets": {"bf": {"radius": 3}}}, "'radius'"),
        ({"representations": ["events"], "targets": {"bf": {"outer": -1}}}, "targets.bf.outer"),
        ({"representations": ["events"], "targets": {"adf": {"units": "mrad"}}}, "mrad_per_pixel"),
        ({"targets": {"bf": {}}}, "'targets' needs 'representations'"),
        ({"representations": ["events"], "sufficiency": {"tol": 1}}, "'tol'"),
        ({"representations": ["events"], "sufficiency": {"metric": "ssim"}}, "'ssim'"),
        ({"representations": ["events"], "sufficiency": {"codec": "gzip-11"}}, "'gzip-11'"),
        ({"representations": ["events"], "targets": {"bf": {}}, "sufficiency": {"target": "adf"}}, "'adf'"),
    ],
)
def test_bad_sufficiency_config_names_the_culprit(overrides: dict[str, object], culprit: str) -> None:
    from cubebench.errors import CubebenchError

    with pytest.raises(CubebenchError) as info:
        parse_experiment(base(**overrides))
    assert culprit in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# the answer on a constructed Dataset


def record(
    rep: str, stored: int, bf: float, *, lossless: bool = False, status: str = "ok", dataset: str = "d"
) -> RepresentationResult:
    errors = (
        {}
        if status != "ok"
        else {"bf": {"rel_l2": bf, "max_abs": bf * 10, "psnr": math.inf if bf == 0 else -20 * math.log10(bf)}}
    )
    return RepresentationResult(
        dataset=dataset,
        representation=rep,
        run=0,
        family="codec" if lossless else "bin",
        lossless=lossless,
        discards="nothing (lossless)" if lossless else f"what {rep} discards",
        description=f"{rep} described",
        storage="HDF5, blosc-zstd filter",
        status=status,
        verified=status == "ok",
        source_bytes=10_000,
        stored_bytes=stored,
        reason="" if status == "ok" else "2 of 4 stored chunks differ",
        errors=errors,
    )


@pytest.fixture
def constructed() -> object:
    records = [
        record("exact", 1000, 0.0, lossless=True),
        record("medium", 500, 0.005),
        record("small", 200, 0.02),
        record("tiny-but-broken", 50, 0.0, status="unverified"),
    ]
    targets = {"d": {"bf": {"inner_px": 0, "outer_px": 20, "center_px": [127.5, 127.5], "given": {"outer": 20}}}}
    return records_to_sufficiency(records, targets, {"question_target": "bf", "question_tolerance": 0.01})


def test_smallest_sufficient_is_the_expected_representation(constructed: object) -> None:
    ds = constructed
    assert smallest_sufficient(ds, "bf", 0.01).best.representation == "medium"  # type: ignore[arg-type]
    assert smallest_sufficient(ds, "bf", 0.05).best.representation == "small"  # type: ignore[arg-type]
    assert smallest_sufficient(ds, "bf", 0.001).best.representation == "exact"  # type: ignore[arg-type]
    psnr = smallest_sufficient(ds, "bf", 40, metric="psnr")  # type: ignore[arg-type]
    assert psnr.best.representation == "medium" and psnr.condition == "psnr >= 40"
    answer = smallest_sufficient(ds, "bf", 0.01)  # type: ignore[arg-type]
    assert [c.representation for c in answer.sufficient] == ["medium", "exact"]
    assert answer.excluded[0][0] == "tiny-but-broken" and answer.smallest_lossless is not None
    text = format_answer(answer)
    assert "medium" in text and "what medium discards" in text and "2x the bytes" in text
    walk = principles(ds, answer)  # type: ignore[arg-type]
    assert walk[0][0] == "Inference target" and len(walk) == 5
    assert "outer 20" in walk[0][1] and "medium" in walk[3][1]
    assert [c.representation for c in sufficiency_front(ds, "bf")] == ["small", "medium", "exact"]  # type: ignore[arg-type]


def test_no_sufficient_representation_names_the_closest() -> None:
    ds = records_to_sufficiency([record("medium", 500, 0.005), record("small", 200, 0.02)])
    with pytest.raises(ResultsError, match=r"no representation keeps bf within rel_l2 <= 0.001 .*closest: medium"):
        smallest_sufficient(ds, "bf", 0.001)
    with pytest.raises(ResultsError, match=r"psnr >= 60 .*closest: medium \(psnr 46"):
        smallest_sufficient(ds, "bf", 60, metric="psnr")


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [({"target": "haadf"}, "'haadf'"), ({"metric": "ssim"}, "'ssim'"), ({"dataset": "other"}, "'other'")],
)
def test_bad_question_names(constructed: object, kwargs: dict[str, str], culprit: str) -> None:
    args = {"target": "bf", "tolerance": 0.01, **kwargs}
    with pytest.raises(ResultsError) as info:
        smallest_sufficient(constructed, **args)  # type: ignore[arg-type]
    assert culprit in str(info.value) and "\n" not in str(info.value)


def test_save_load_and_cli(constructed: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_sufficiency(constructed, tmp_path)  # type: ignore[arg-type]
    loaded = load_sufficiency(tmp_path)
    assert loaded["inference_error"].shape == (1, 4, 1, 3) and bool(loaded["lossless"].sel(representation="exact"))
    assert (tmp_path / "sufficiency.csv").exists()
    assert main(["sufficient", str(tmp_path), "--target", "bf", "--tolerance", "0.01", "--principles"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bf with rel_l2 <= 0.01 on d: medium") and "5. Provenance" in out
    assert main(["sufficient", str(tmp_path), "--target", "adf", "--tolerance", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'adf'" in err
    with pytest.raises(ResultsError, match=r"no inference-sufficiency results"):
        load_sufficiency(tmp_path / "elsewhere")


def test_report_section(constructed: object, tmp_path: Path) -> None:
    from cubebench.report.sufficiency import sufficiency_blocks

    blocks = sufficiency_blocks(constructed, tmp_path)  # type: ignore[arg-type]
    texts = [b.text for b in blocks] + [item for b in blocks for item in b.items]
    assert "Inference sufficiency" in texts
    assert any(t.startswith("(4) Least-burdensome representation: medium") for t in texts)
    assert (tmp_path / "figures" / "sufficiency.png").exists() and (tmp_path / "tables" / "sufficiency.csv").exists()
