"""Tests for cubebench.stats: summaries over runs, reproducibility flags, fits, bounds, Pareto fronts, recommend."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from cubebench import recommend as recommend_module
from cubebench import stats
from cubebench.errors import ResultsError
from cubebench.results import GIB, merge_machines, records_to_dataset

if TYPE_CHECKING:
    from types import ModuleType

    import xarray as xr


def _factory() -> ModuleType:
    """Load tests/_results_factory.py whatever pytest's import mode."""
    name = "_results_factory"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


F = _factory()


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return F.make_results()


@pytest.fixture(scope="module")
def summary(ds: xr.Dataset) -> xr.Dataset:
    return stats.summarize_runs(ds)


def cell(**sel: str) -> dict[str, str]:
    return sel


# ---------------------------------------------------------------------------------------------- summarize_runs


def test_summary_has_every_stat_of_every_measurement(summary: xr.Dataset) -> None:
    for metric in (
        "ratio",
        "stored_bytes",
        "write_seconds",
        "read_seconds",
        "write_GiBps",
        "read_GiBps",
        "source_read_seconds",
        "peak_memory_bytes",
    ):
        for stat in stats.SUMMARY_STATS:
            assert f"{metric}_{stat}" in summary
    assert "n_ok" in summary and "n_runs" in summary
    assert "run" not in summary.dims
    for bookkeeping in ("workers", "estimate_seconds", "n_chunks", "source_bytes"):
        assert f"{bookkeeping}_mean" not in summary
    assert summary["write_seconds_cv"].attrs["units"] == "%"
    assert summary["write_seconds_mean"].attrs["units"] == "s"


def test_summary_values_match_hand_computation(summary: xr.Dataset) -> None:
    key = dict(dataset="4d_diff", backend="hdf5", codec="blosc-zstd", chunk="balanced")
    source = F.nbytes("4d_diff")
    base = source / GIB / (0.4 * 1.0 * 0.9)  # write seconds of run 0
    runs = np.array(F.WRITE_JITTER) * base
    s = summary.sel(key)
    assert float(s["write_seconds_mean"]) == pytest.approx(runs.mean(), rel=1e-12)
    assert float(s["write_seconds_std"]) == pytest.approx(np.std(runs, ddof=1), rel=1e-12)
    assert float(s["write_seconds_min"]) == pytest.approx(runs.min())
    assert float(s["write_seconds_max"]) == pytest.approx(runs.max())
    assert float(s["write_seconds_median"]) == pytest.approx(np.median(runs))
    # jitter (1, 1.02, 0.98): mean 1, sample std 0.02 -> CV exactly 2 %; read jitter gives 1 %
    assert float(s["write_seconds_cv"]) == pytest.approx(2.0, rel=1e-9)
    assert float(s["read_seconds_cv"]) == pytest.approx(1.0, rel=1e-9)
    assert float(s["ratio_mean"]) == pytest.approx(F.expected_ratio(*key.values()), rel=1e-5)
    assert float(s["ratio_cv"]) == 0.0
    assert int(s["n_ok"]) == 3


def test_summary_masks_cells_that_are_not_ok(summary: xr.Dataset) -> None:
    failed = summary.sel(dataset="4d_diff", backend="zarr", codec="szip", chunk="balanced")
    skipped = summary.sel(dict(zip(("dataset", "backend", "codec", "chunk"), F.SKIPPED_CELL, strict=True)))
    unverified = summary.sel(dict(zip(("dataset", "backend", "codec", "chunk"), F.UNVERIFIED_CELL, strict=True)))
    for s in (failed, skipped, unverified):
        assert int(s["n_ok"]) == 0
        assert np.isnan(float(s["ratio_mean"])) and np.isnan(float(s["write_seconds_median"]))
    assert int(failed["n_runs"]) == 3


def test_summary_require_verified(ds: xr.Dataset) -> None:
    key = dict(zip(("dataset", "backend", "codec", "chunk"), F.OK_NOT_VERIFIED_CELL, strict=True))
    assert int(stats.summarize_runs(ds)["n_ok"].sel(key)) == 3
    strict = stats.summarize_runs(ds, require_verified=True)
    assert int(strict["n_ok"].sel(key)) == 0
    assert np.isnan(float(strict["ratio_mean"].sel(key)))


def test_summary_carries_coords_and_dataset_variables(ds: xr.Dataset, summary: xr.Dataset) -> None:
    assert "chunk_shape" in summary.coords
    assert summary["dataset_zero_fraction"].sel(dataset="4d_eels") == pytest.approx(0.928)
    assert summary.attrs["title"] == ds.attrs["title"]


def test_summary_single_run_has_no_spread() -> None:
    one = stats.summarize_runs(F.make_results(runs=1))
    s = one.sel(dataset="4d_diff", backend="hdf5", codec="gzip-1", chunk="balanced")
    assert int(s["n_ok"]) == 1
    assert np.isfinite(float(s["write_seconds_mean"]))
    assert np.isnan(float(s["write_seconds_std"])) and np.isnan(float(s["write_seconds_cv"]))


def test_summary_keeps_extra_dims_and_needs_run() -> None:
    merged = merge_machines([F.make_minimal_results(), F.make_minimal_results()], ["a", "b"])
    out = stats.summarize_runs(merged)
    assert "machine" in out["ratio_mean"].dims
    with pytest.raises(ResultsError, match=r"run"):
        stats.summarize_runs(merged.isel(run=0, drop=True))


# -------------------------------------------------------------------------------------- consistency and noise


def test_ratio_consistency_flags_only_the_changing_cell(ds: xr.Dataset) -> None:
    flags = stats.ratio_consistency(ds)
    assert flags.dtype == bool and set(flags.dims) == {"dataset", "backend", "codec", "chunk"}
    assert int(flags.sum()) == 1
    assert bool(flags.sel(dict(zip(("dataset", "backend", "codec", "chunk"), F.INCONSISTENT_CELL, strict=True))))
    assert int(stats.ratio_consistency(ds, rtol=0.01).sum()) == 0


def test_flag_noisy(ds: xr.Dataset, summary: xr.Dataset) -> None:
    noisy = stats.flag_noisy(ds)
    assert int(noisy.sum()) == 1
    assert bool(noisy.sel(dict(zip(("dataset", "backend", "codec", "chunk"), F.NOISY_CELL, strict=True))))
    # CV of (1, 1.5, 0.5) is 50 %: flagged at 10 and 49.9, not at 50.1; summaries are accepted too
    assert int(stats.flag_noisy(summary, cv_threshold=49.9).sum()) == 1
    assert int(stats.flag_noisy(summary, cv_threshold=50.1).sum()) == 0
    # every other cell has CV 2 % (write), 1 % (read)
    assert int(stats.flag_noisy(ds, cv_threshold=1.5).sum()) > 100
    assert int(stats.flag_noisy(ds, cv_threshold=1.5, metrics=("read_seconds",)).sum()) == 0
    with pytest.raises(ResultsError, match=r"no CV"):
        stats.flag_noisy(ds, metrics=("nothing",))


# ------------------------------------------------------------------------------------------- power law, bounds


def test_power_law_recovers_known_parameters() -> None:
    s = np.array([0.5, 0.6, 0.7, 0.75, 0.9, 0.93])
    fit = stats.fit_power_law(s, 40 * s**6 + 3)
    assert fit.model == "a*s^b+c" and fit.ok and fit.n == 6
    assert (fit.a, fit.b, fit.c) == pytest.approx((40, 6, 3), rel=1e-6)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.predict(0.8) == pytest.approx(40 * 0.8**6 + 3, rel=1e-6)
    assert "R² = 1.000" in fit.label()


def test_power_law_on_the_studys_five_points() -> None:
    # the study's Table 3 (best ratio) and Table 1 (sparsity): it reports an exponent of 6.90
    s = [0.928, 0.747, 0.709, 0.609, 0.495]
    c = [34.9, 10.2, 11.3, 6.9, 4.8]
    fit = stats.fit_power_law(s, c)
    assert fit.model == "a*s^b+c"
    assert fit.b == pytest.approx(6.9, abs=0.1)
    assert fit.r2 > 0.98


def test_power_law_with_few_points() -> None:
    three = stats.fit_power_law([0.5, 0.7, 0.9], [5.0, 9.0, 30.0])
    assert three.model == "a*s^b" and three.c == 0 and "3 points" in three.reason
    assert 0 < three.r2 <= 1
    two = stats.fit_power_law([0.5, 0.9], [4.0, 30.0])
    assert two.model == "a*s^b" and math.isnan(two.r2) and "exactly" in two.reason
    assert two.predict([0.5, 0.9]) == pytest.approx([4.0, 30.0])
    one = stats.fit_power_law([0.5, 0.5, np.nan, 1.5, 0.7], [4.0, 4.1, 3.0, 9.0, -1.0])
    assert one.model == "none" and not one.ok and "2 distinct" in one.reason
    assert "no power-law fit" in one.label()
    with pytest.raises(ResultsError):
        stats.fit_power_law([0.5, 0.6], [1.0])


def test_shannon_and_entropy_bounds() -> None:
    assert stats.shannon_bound(0.5, 16) == pytest.approx(16.0)
    assert stats.shannon_bound(0.93, 16) == pytest.approx(43.7, abs=0.1)  # the study: "upper bound of 43"
    out = stats.shannon_bound(np.array([0.0, 0.5, 1.0, 1.5]), 32)
    assert out.shape == (4,) and np.isinf(out[0]) and out[1] == pytest.approx(32) and np.isinf(out[2])
    assert np.isnan(out[3])
    assert stats.binary_entropy(0.5) == pytest.approx(1.0)
    assert stats.binary_entropy(0.0) == 0.0
    assert stats.entropy_bound(16, 2.0) == pytest.approx(8.0)


# ------------------------------------------------------------------------------------------------- pareto


def test_pareto_front_known_set() -> None:
    x = [1.0, 2.0, 3.0, 2.0, 0.5, 3.0, np.nan]
    y = [3.0, 2.0, 1.0, 1.0, 0.5, 1.0, 9.0]
    front = stats.pareto_front(x, y)
    # (2, 1) is dominated by (2, 2); (0.5, 0.5) by all; the duplicate (3, 1) is kept; NaN ignored
    assert front.tolist() == [0, 1, 2, 5]
    assert stats.pareto_front([], []).tolist() == []
    assert stats.pareto_front([1, 2], [2, 1]).tolist() == [0, 1]
    with pytest.raises(ResultsError):
        stats.pareto_front([1, 2], [1])


# ------------------------------------------------------------------------------------------------ recommend


def test_recommend_storage_write_read(ds: xr.Dataset) -> None:
    storage = recommend_module.recommend(ds, "storage")
    assert (storage.codec, storage.backend, storage.chunk) == ("blosc-zlib", "zarr", "real_space")
    expected = math.exp(
        np.mean([math.log(F.expected_ratio(d, "zarr", "blosc-zlib", "real_space")) for d in F.DATASETS])
    )
    assert storage.ratio == pytest.approx(expected, rel=1e-5)
    assert storage.score == storage.ratio
    assert [d.dataset for d in storage.per_dataset] == list(F.DATASETS)
    assert storage.per_dataset[0].ratio == pytest.approx(
        F.expected_ratio("4d_eels", "zarr", "blosc-zlib", "real_space"), rel=1e-5
    )
    write = recommend_module.recommend(ds, "write")
    assert (write.codec, write.backend, write.chunk) == ("blosc-lz4", "hdf5_direct", "real_space")
    read = recommend_module.recommend(ds, "read")
    assert (read.codec, read.backend, read.chunk) == ("blosc-lz4", "hdf5_direct", "real_space")
    assert read.read_GiBps > read.alternatives[0].read_GiBps


def test_recommend_balanced_score_by_hand(ds: xr.Dataset) -> None:
    rec = recommend_module.recommend(ds, "balanced")
    assert (rec.codec, rec.backend, rec.chunk) == ("blosc-lz4", "hdf5_direct", "real_space")
    # it is the fastest writer and reader everywhere (normalized 1, 1); its ratio relative to the best
    # eligible ratio (blosc-zlib on zarr, real_space) is the same on every dataset:
    ratio_fraction = (0.50 * 0.998) / (0.92 * 1.0)
    assert rec.score == pytest.approx(ratio_fraction ** (1 / 3), rel=1e-5)
    assert "score" in rec.text


def test_recommend_ignores_unverified_and_failed(ds: xr.Dataset) -> None:
    rec = recommend_module.recommend(ds, "write")
    assert rec.n_excluded == 36 + 3 + 3  # failed szip on zarr, unverified, ok-but-not-verified
    assert rec.n_cells == int(stats.ok_mask(ds.drop_sel(codec="none"), require_verified=True).sum())
    for trap in (F.UNVERIFIED_CELL, F.OK_NOT_VERIFIED_CELL):
        assert (rec.codec, rec.backend, rec.chunk) != trap[1:]
    # the same absurd numbers, marked verified and ok, would win: so exclusion is what keeps them out
    trusted = ds.copy(deep=True)
    key = dict(zip(("dataset", "backend", "codec", "chunk"), F.OK_NOT_VERIFIED_CELL, strict=True))
    trusted["verified"].loc[key] = True
    assert (recommend_module.recommend(trusted, "write").codec, recommend_module.recommend(trusted, "write").chunk) == (
        "bitshuffle-lz4",
        "single_frame",
    )
    cells = F.make_cells()
    for c in cells:
        if c.key[:4] == F.UNVERIFIED_CELL:
            c.status, c.verified = "ok", True
    fixed = records_to_dataset(cells, F.dataset_info())
    assert recommend_module.recommend(fixed, "write").backend == "zarr"


def test_recommend_needs_coverage_of_every_dataset(ds: xr.Dataset) -> None:
    ranked = recommend_module.rank(ds, "storage", codecs=["gzip-9"])
    combos = {(c.backend, c.chunk) for c in ranked}
    assert ("hdf5", "single_frame") not in combos  # skipped on 4d_diff
    assert len(combos) == 8 and all(c.n_datasets == 4 for c in ranked)


def test_recommend_filters_and_options(ds: xr.Dataset) -> None:
    assert recommend_module.recommend(ds, "storage", backends=["hdf5"]).backend == "hdf5"
    assert recommend_module.recommend(ds, "write", codecs=["gzip-1", "gzip-9"]).codec == "gzip-1"
    one = recommend_module.recommend(ds, "storage", datasets=["3d_eels"])
    assert len(one.per_dataset) == 1 and "on 1 dataset" in one.text
    assert recommend_module.recommend(ds, "write", include_uncompressed=True).codec == "none"
    with pytest.raises(ResultsError, match=r"unknown use"):
        recommend_module.recommend(ds, "fastest")
    with pytest.raises(ResultsError, match=r"no backend nope"):
        recommend_module.recommend(ds, "storage", backends=["nope"])


def test_recommend_with_nothing_valid(ds: xr.Dataset) -> None:
    broken = ds.copy(deep=True)
    broken["status"][:] = "failed"
    with pytest.raises(ResultsError, match=r"no verified ok cells"):
        recommend_module.recommend(broken, "storage")


def test_recommend_refuses_several_machines_and_squeezes_one() -> None:
    small = F.make_minimal_results()
    merged = merge_machines([small, small], ["a", "b"])
    with pytest.raises(ResultsError, match=r"machine"):
        recommend_module.recommend(merged, "storage")
    single = merge_machines([small], ["a"])
    assert recommend_module.recommend(single, "storage").codec == recommend_module.recommend(small, "storage").codec


def test_recommendation_text_carries_numbers_and_the_studys_point(ds: xr.Dataset) -> None:
    rec = recommend_module.recommend(ds, "storage")
    assert f"ratio {rec.ratio:.2f}" in rec.text and f"ratio {rec.ratio:.2f}" in rec.headline
    assert "dominant workflow constraint" in rec.text
    assert "storage footprint" in rec.text and "time-to-first-analysis" in rec.text
    assert "sustained acquisition throughput" in rec.text
    assert "Uncompressed" in rec.text and "Chunking is secondary" in rec.text
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.codec = "gzip-9"  # type: ignore[misc]
    text = recommend_module.format_recommendation(rec)
    assert text.startswith("Recommended for storage: blosc-zlib on zarr, real_space chunks")
    for name in F.DATASETS:
        assert name in text
    assert "geometric mean" in text and "alternatives" in text and "dominant workflow" in text


def test_core_results_and_human_bytes() -> None:
    small = F.make_minimal_results()
    with pytest.raises(ResultsError, match=r"lack"):
        stats.core_results(small.isel(run=0, drop=True))
    assert stats.human_bytes(1536) == "1.5 KiB"
    assert stats.human_bytes(float("nan")) == "-"
    assert stats.human_bytes(12) == "12 B"
