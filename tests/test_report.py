"""Tests for cubebench.report: tables, formatters, figures, the study loader and write_report."""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import cubebench.report as report
from cubebench.errors import ResultsError
from cubebench.report import figures, tables
from cubebench.report.format import Table, format_value, latex_escape, to_html, to_latex, to_markdown
from cubebench.report.palette import CODEC_COLORS, backend_marker, codec_color
from cubebench.report.study import load_study, parse_method
from cubebench.results import merge_machines, records_to_dataset
from cubebench.stats import fit_power_law

if TYPE_CHECKING:
    from types import ModuleType

    import xarray as xr

DATA = Path(__file__).with_name("data")
STUDY_CSV = DATA / "study_statistics_sample.csv"
FIGURES = ("performance", "radar", "sparsity", "chunking", "backends", "pareto")
TABLES = (
    "inventory",
    "best_ratio",
    "codecs",
    "chunking",
    "backends",
    "reproducibility",
    "failures",
    "study_comparison",
)


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
def study() -> xr.Dataset:
    return load_study(STUDY_CSV)


@pytest.fixture(scope="module")
def written(ds: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full report, written once for all the file checks."""
    return report.write_report(ds, tmp_path_factory.mktemp("report"), compare=STUDY_CSV)


def row(table: Table, **match: str) -> pd.Series:
    frame = table.frame
    for key, value in match.items():
        frame = frame[frame[key] == value]
    assert len(frame) == 1, f"{match}: {len(frame)} rows"
    return frame.iloc[0]


# ------------------------------------------------------------------------------------------------- tables


def test_inventory_table(ds: xr.Dataset) -> None:
    table = tables.inventory_table(ds)
    assert table.frame["dataset"].tolist() == list(F.DATASETS)
    eels = row(table, dataset="4d_eels")
    assert eels["zero fraction (%)"] == pytest.approx(92.8)
    assert eels["shape"] == "16x16x64x256" and eels["dtype"] == "uint16"
    assert eels["size (MiB)"] == pytest.approx(F.nbytes("4d_eels") / 2**20)
    assert eels["entropy bound"] == pytest.approx(16 / 0.62)
    assert math.isnan(row(table, dataset="4d_diff_bin4")["effective bits"])


def test_inventory_degrades_without_dataset_info() -> None:
    table = tables.inventory_table(F.make_minimal_results())
    assert list(table.frame.columns) == ["dataset", "size (MiB)"]
    assert table.frame["size (MiB)"].iloc[0] == pytest.approx(F.nbytes("4d_diff") / 2**20)


def test_best_ratio_table_ignores_unverified(ds: xr.Dataset) -> None:
    table = tables.best_ratio_table(ds)
    assert table.frame["dataset"].tolist() == ["4d_eels", "4d_diff", "4d_diff_bin4", "3d_eels"]  # by sparsity
    best = row(table, dataset="4d_eels")  # the ok-but-unverified trap there has ratio 500
    assert (best["codec"], best["backend"], best["chunk"]) == ("blosc-zlib", "zarr", "real_space")
    assert best["best ratio"] == pytest.approx(
        F.expected_ratio("4d_eels", "zarr", "blosc-zlib", "real_space"), rel=1e-5
    )
    assert best["stored (MiB)"] == pytest.approx(F.nbytes("4d_eels") / best["best ratio"] / 2**20, rel=1e-4)


def test_codec_table_like_the_studys_table_4(ds: xr.Dataset) -> None:
    table = tables.codec_table(ds)
    assert "hdf5" in table.title and "balanced" in table.title
    ratios = table.frame["mean ratio"].to_numpy()
    assert np.all(np.diff(ratios) <= 0)
    gzip9 = row(table, codec="gzip-9")
    per = [F.expected_ratio(d, "hdf5", "gzip-9", "balanced") for d in F.DATASETS]
    assert gzip9["mean ratio"] == pytest.approx(np.mean(per), rel=1e-5)
    assert (gzip9["min ratio"], gzip9["max ratio"]) == pytest.approx((min(per), max(per)), rel=1e-5)
    assert gzip9["datasets"] == 4
    assert set(tables.codec_table(ds, backend="zarr").frame["codec"]) == set(F.CODEC_RATIO) - {"szip"}


def test_chunking_table_like_the_studys_table_5(ds: xr.Dataset) -> None:
    table = tables.chunking_table(ds)
    assert len(table.frame) == 4 * 3 * 3
    r = row(table, dataset="4d_diff", backend="hdf5_direct", chunk="balanced")
    assert r["chunk shape"] == "16x16x32x32" and r["codecs"] == 7
    codecs = [c for c in F.CODEC_RATIO if c != "none"]
    expected = np.mean([F.expected_ratio("4d_diff", "hdf5_direct", c, "balanced") for c in codecs])
    assert r["mean ratio"] == pytest.approx(expected, rel=1e-5)
    # bitshuffle-lz4 is not verified on single_frame of 4d_eels/hdf5: all chunkings average the same 6 codecs
    assert set(table.frame[(table.frame["dataset"] == "4d_eels") & (table.frame["backend"] == "hdf5")]["codecs"]) == {6}


def test_backend_table_side_by_side(ds: xr.Dataset) -> None:
    table = tables.backend_table(ds)
    for b in F.BACKENDS:
        assert {f"ratio {b}", f"write GiB/s {b}", f"read GiB/s {b}"} <= set(table.frame.columns)
    szip = row(table, codec="szip")
    assert math.isnan(szip["ratio zarr"]) and szip["ratio hdf5"] > 1
    zstd = row(table, codec="blosc-zstd")
    assert zstd["write GiB/s hdf5_direct"] > zstd["write GiB/s zarr"] > zstd["write GiB/s hdf5"]


def test_reproducibility_and_failures_tables(ds: xr.Dataset) -> None:
    repro = tables.reproducibility_table(ds)
    assert row(repro, backend="hdf5", codec="gzip-1")["noisy cells"] == 1
    assert row(repro, backend="hdf5", codec="gzip-1")["max write CV (%)"] == pytest.approx(50.0)
    assert row(repro, backend="zarr", codec="blosc-zstd")["inconsistent cells"] == 1
    assert row(repro, backend="hdf5", codec="none")["median write CV (%)"] == pytest.approx(2.0)
    fails = tables.failures_table(ds)
    assert set(fails.frame["status"]) == {"failed", "skipped", "unverified", "ok (not verified)"}
    szip = row(fails, codec="szip", chunk="balanced")
    assert szip["runs"] == 12 and "imagecodecs" in szip["reason"]
    assert tables.failures_table(F.make_minimal_results()).empty


# ------------------------------------------------------------------------------------------------- formats


def test_formatters() -> None:
    frame = pd.DataFrame({"name": ["a|b", "x_y & 5%"], "value": [1.23456, np.nan], "n": [3, 4]})
    table = Table("t_1", "Caption with 50% & R²", frame, {"value": ".2f"}, note="a note")
    md = to_markdown(table, heading=True)
    assert "a\\|b" in md and "| 1.23 |" in md and "| – |" in md and "---:" in md and ":---" in md
    assert md.splitlines()[0] == "**Caption with 50% & R²**" and "a note" in md
    tex = to_latex(table)
    assert "\\toprule" in tex and "\\label{tab:t_1}" in tex and "x\\_y \\& 5\\%" in tex and "--" in tex
    assert "50\\% \\& R$^2$" in tex
    page = to_html(table)
    assert "a|b" in page and "x_y &amp; 5%" in page and "<caption>" in page
    assert latex_escape("a_b{c}") == "a\\_b\\{c\\}"
    assert format_value(None) == "–" and format_value(np.int64(7), ".2f") == "7" and format_value(True) == "yes"
    assert format_value(float("inf")) == "∞"


# ------------------------------------------------------------------------------------------------- study


def test_parse_method_and_names() -> None:
    assert parse_method("balanced_blosc_zstd") == ("study", "blosc-zstd", "balanced")
    assert parse_method("real_space_gzip_9") == ("study", "gzip-9", "real_space")
    assert parse_method("single_frame_lz4_hdf5") == ("study", "lz4", "single_frame")
    assert parse_method("sparse_csr") == ("study_csr", "none", "unchunked")
    assert parse_method("simple_gzip") == ("study_npy_gzip", "gzip-9", "unchunked")
    assert parse_method("uint8_overflow")[0] == "study_uint8_overflow"
    assert parse_method("mystery") == ("study_mystery", "none", "unchunked")


def test_load_study_maps_the_published_csv(study: xr.Dataset) -> None:
    raw = pd.read_csv(STUDY_CSV)
    assert set(study["dataset"].values) == {"4d_diff", "4d_eels", "3d_eels", "4d_diff_bin2", "4d_diff_bin4"}
    assert {"study", "study_csr", "study_uint8_overflow", "study_npy_gzip"} <= set(study["backend"].values)
    published = raw[(raw.dataset == "4D_EELS") & (raw.method == "balanced_blosc_zstd")].iloc[0]
    cell = study.sel(dataset="4d_eels", backend="study", codec="blosc-zstd", chunk="balanced", run=0)
    assert float(cell["ratio"]) == published["compression_ratio_mean"]
    assert float(cell["write_GiBps"]) == published["write_throughput_gbs_mean"]
    assert float(cell["write_seconds"]) == published["write_time_mean"]
    assert str(cell["status"].values) == "ok" and bool(cell["verified"])
    assert str(study["chunk_shape"].sel(dataset="4d_eels", chunk="balanced").values) == "16x16x128x128"
    assert float(study["dataset_zero_fraction"].sel(dataset="4d_diff")) == pytest.approx(0.747353)
    assert float(study["dataset_nbytes"].sel(dataset="4d_diff")) == 8589934592


def test_study_tables_reproduce_its_published_tables(study: xr.Dataset) -> None:
    # Table 4 of the study (balanced chunks): mean ratio, range, mean write time
    t4 = tables.codec_table(study)
    zstd, gzip9 = row(t4, codec="blosc-zstd"), row(t4, codec="gzip-9")
    assert (round(zstd["mean ratio"], 1), round(zstd["min ratio"], 1), round(zstd["max ratio"], 1)) == (13.5, 4.8, 34.9)
    assert round(zstd["mean write (s)"], 1) == 8.3
    assert (round(gzip9["mean ratio"], 1), round(gzip9["min ratio"], 1), round(gzip9["max ratio"], 1)) == (
        12.3,
        4.2,
        32.6,
    )
    assert round(gzip9["mean write (s)"], 1) == 249.9
    # Table 3 of the study: best ratio per dataset
    t3 = tables.best_ratio_table(study)
    best = dict(zip(t3.frame["dataset"], t3.frame["best ratio"].round(1), strict=True))
    assert best == {"4d_eels": 34.9, "4d_diff": 10.2, "4d_diff_bin2": 11.3, "4d_diff_bin4": 6.9, "3d_eels": 4.8}
    assert row(t3, dataset="4d_diff")["chunk"] == "real_space"
    # its power law: exponent 6.90
    from cubebench.report.study import best_per_dataset

    points = best_per_dataset(study)
    assert fit_power_law(points["zero_fraction"], points["ratio"]).b == pytest.approx(6.9, abs=0.1)


def test_load_study_without_inventory_uses_published_table_1(tmp_path: Path) -> None:
    shutil.copy(STUDY_CSV, tmp_path / "stats.csv")
    alone = load_study(tmp_path / "stats.csv")
    assert float(alone["dataset_zero_fraction"].sel(dataset="4d_eels")) == pytest.approx(0.928317)
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,ratio\nx,1\n")
    with pytest.raises(ResultsError, match=r"compression_ratio_mean"):
        load_study(bad)
    with pytest.raises(ResultsError, match=r"cannot read"):
        load_study(tmp_path / "missing.csv")


def test_study_comparison_table(ds: xr.Dataset, study: xr.Dataset) -> None:
    table = tables.study_comparison_table(ds, study)
    r = row(table, dataset="4d_eels", codec="blosc-zstd")
    ours = F.expected_ratio("4d_eels", "hdf5", "blosc-zstd", "balanced")
    assert r["ratio hdf5"] == pytest.approx(ours, rel=1e-5)
    assert r["Δ hdf5 vs study (%)"] == pytest.approx(100 * (ours - r["study ratio"]) / r["study ratio"], rel=1e-5)
    assert set(table.frame["dataset"]) == {"4d_eels", "4d_diff", "4d_diff_bin4", "3d_eels"}
    # no shared dataset names: one row per codec over all datasets
    renamed = ds.assign_coords(dataset=[f"x{i}" for i in range(ds.sizes["dataset"])])
    pooled = tables.study_comparison_table(renamed, study)
    assert set(pooled.frame["dataset"]) == {"all (mean)"} and "blosc-zstd" in set(pooled.frame["codec"])


# ------------------------------------------------------------------------------------------------- figures


def test_palette_is_stable_and_distinct() -> None:
    colors = [codec_color(c) for c in CODEC_COLORS]
    assert len(set(colors)) == len(colors)
    assert codec_color("brand-new") == codec_color("brand-new")
    assert backend_marker("hdf5") == "o" and backend_marker("study_csr") == "*"


def test_figures_have_labels_and_legends(ds: xr.Dataset, study: xr.Dataset) -> None:
    built = {f.name: f for f in figures.all_figures(ds, study)}
    assert tuple(built) == FIGURES
    for f in built.values():
        assert isinstance(f.figure, Figure) and f.caption.endswith(".")
        assert f.figure.legends, f"{f.name} has no legend"
    perf = built["performance"].figure.axes
    assert [a.get_ylabel() for a in perf][1:] == ["write throughput (GiB/s)", "read throughput (GiB/s)"]
    assert perf[1].get_yscale() == "log"
    legend = [t.get_text() for t in built["sparsity"].figure.legends[0].get_texts()]
    assert any(t.startswith("fit C = ") and "R² = " in t for t in legend)
    assert any("study fit" in t for t in legend) and any("16/H2(s)" in t for t in legend)
    assert any("32/H2(s)" in t for t in legend) and any("entropy bound" in t for t in legend)
    pareto = built["pareto"].figure.axes
    assert pareto[0].get_xlabel() == "write throughput (GiB/s)" and pareto[0].get_legend() is not None


def test_report_files(written: Path) -> None:
    out = written.parent
    assert written.name == "index.md"
    for name in FIGURES:
        png, pdf = out / "figures" / f"{name}.png", out / "figures" / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    for name in TABLES:
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 0
    for extra in ("index.html", "recommendations.txt", "tables/run_summary.csv"):
        assert (out / extra).stat().st_size > 0
    summary = pd.read_csv(out / "tables" / "run_summary.csv")
    assert {"ratio_mean", "write_seconds_cv", "n_ok"} <= set(summary.columns)
    assert len(summary) == 4 * 3 * 8 * 3
    assert pd.read_csv(out / "tables" / "codecs.csv")["codec"].iloc[0] == "blosc-zlib"


def test_index_references_everything(written: Path) -> None:
    md = written.read_text()
    page = (written.parent / "index.html").read_text()
    for name in FIGURES:
        assert f"](figures/{name}.png)" in md and f"(figures/{name}.pdf)" in md
        assert f'src="figures/{name}.png"' in page and f'href="figures/{name}.pdf"' in page
    for name in TABLES:
        for ext in ("csv", "tex", "md"):
            assert f"(tables/{name}.{ext})" in md and f'href="tables/{name}.{ext}"' in page
    assert md.count("### Figure ") == len(FIGURES) and md.count("### Table ") == len(TABLES)
    assert "storage: Smallest storage footprint: blosc-zlib on zarr" in md
    assert md.count("dominant workflow constraint") == 1
    assert "## Provenance" in md and "host: testhost" in md
    assert md.startswith("# cubebench results: factory")
    recs = (written.parent / "recommendations.txt").read_text()
    assert recs.count("Recommended for ") == 4


def test_minimal_report_degrades_gracefully(tmp_path: Path) -> None:
    index = report.write_report(F.make_minimal_results(), tmp_path / "min", html=False)
    md = index.read_text()
    assert "1 dataset (4d_diff)" in md and not (tmp_path / "min" / "index.html").exists()
    for name in FIGURES:
        assert (tmp_path / "min" / "figures" / f"{name}.png").stat().st_size > 0
    assert "study_comparison" not in md


def test_report_with_only_failures(tmp_path: Path) -> None:
    cells = F.make_cells(runs=2)
    for c in cells:
        c.status, c.reason, c.verified = "failed", "boom", False
    index = report.write_report(records_to_dataset(cells, F.dataset_info()), tmp_path / "f", compare=STUDY_CSV)
    md = index.read_text()
    assert md.count("no recommendation") == 4 and "0 verified ok cells count" in md and "  " not in md
    for name in FIGURES:
        assert (tmp_path / "f" / "figures" / f"{name}.pdf").stat().st_size > 0
    assert "boom" in (tmp_path / "f" / "tables" / "failures.md").read_text()


def test_report_splits_machines(tmp_path: Path) -> None:
    small = F.make_minimal_results()
    merged = merge_machines([small, small], ["alpha", "beta"])
    index = report.write_report(merged, tmp_path / "m")
    assert "[machine alpha](machine-alpha/index.md)" in index.read_text()
    assert (tmp_path / "m" / "machine-beta" / "figures" / "pareto.pdf").exists()
    assert 'href="machine-beta/index.html"' in (tmp_path / "m" / "index.html").read_text()


def test_report_errors(ds: xr.Dataset, tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"cannot read"):
        report.write_report(ds, tmp_path, compare=tmp_path / "nope.csv")
    assert report.format_recommendation is not None and report.load_study is load_study
