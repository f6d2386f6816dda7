"""Reports from a results Dataset: tables (Markdown, CSV, LaTeX), figures (PNG, PDF) and an index page.

Everything here reads only an ``xarray.Dataset`` (from :func:`cubebench.results.load_results` or
:func:`cubebench.run`); it never touches backends, Dask or the runner.

>>> from cubebench.results import load_results          # doctest: +SKIP
>>> write_report(load_results("results/quick"), "report")  # doctest: +SKIP
PosixPath('report/index.md')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cubebench.errors import ResultsError
from cubebench.recommend import CONSTRAINT_NOTE, USES, format_recommendation, recommend
from cubebench.report import index as page
from cubebench.report.figures import all_figures, save_figure
from cubebench.report.format import Table, write_table
from cubebench.report.latency import latency_figure, latency_frame
from cubebench.report.select import dataset_names
from cubebench.report.storage import storage_table
from cubebench.report.study import load_study
from cubebench.report.sufficiency import sufficiency_blocks, sufficiency_for
from cubebench.report.tables import all_tables
from cubebench.stats import RESULT_DIMS, core_results, ok_mask, summarize_runs

if TYPE_CHECKING:
    import os

    import xarray as xr

__all__ = ["format_recommendation", "load_study", "write_report"]

TABLES_DIR = "tables"
FIGURES_DIR = "figures"
SUMMARY_FILE = "run_summary.csv"
LATENCY_FIGURE = "latency_sweep"
RECOMMENDATIONS_FILE = "recommendations.txt"


def write_report(
    ds: xr.Dataset,
    out_dir: str | os.PathLike[str],
    compare: str | os.PathLike[str] | None = None,
    *,
    html: bool = True,
    sufficiency: xr.Dataset | None = None,
) -> Path:
    """Write every table, figure and recommendation of a results Dataset, with an index page; return its path.

    Parameters
    ----------
    ds
        A results Dataset. If it has an extra dimension with several values (``machine`` in merged results),
        one sub-report is written per value into ``<out_dir>/<dim>-<value>/`` and the top index links them.
    out_dir
        Folder to write into (created; existing files of the same names are replaced).
    compare
        A statistics CSV shaped like the study's ``study_statistics.csv``: adds the study's points to the
        sparsity figure and a cubebench-vs-study ratio table.
    html
        Also write ``index.html``.
    sufficiency
        The inference-sufficiency Dataset (:func:`cubebench.load_sufficiency`); default: the one saved beside
        ``ds``'s file, if any. Adds the "Inference sufficiency" section (bytes vs error figure, five principles).

    Returns
    -------
    pathlib.Path
        ``<out_dir>/index.md``. Beside it: ``tables/<name>.{md,csv,tex}``, ``tables/run_summary.csv``,
        ``figures/<name>.{png,pdf}``, ``recommendations.txt`` and ``index.html``.
    """
    out = Path(out_dir)
    study = load_study(compare) if compare is not None else None
    try:
        extra = sufficiency if sufficiency is not None else sufficiency_for(ds)
        return _write_parts(ds, out, study, html, extra)
    except OSError as exc:
        raise ResultsError(f"cannot write the report to {out}: {exc.strerror or exc}") from None


def _write_parts(
    ds: xr.Dataset, out: Path, study: xr.Dataset | None, html: bool, sufficiency: xr.Dataset | None = None
) -> Path:
    """One report, or one per value of the first extra dimension with several values (recursively)."""
    extra = [d for d in ds.dims if d not in RESULT_DIMS and ds.sizes[d] > 1]
    if not extra:
        return _write_one(core_results(ds), out, study, html, sufficiency)
    dim, entries = extra[0], []
    for value in ds[dim].values:
        label = f"{dim}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(value))}"
        index = _write_parts(ds.sel({dim: value}, drop=True), out / label, study, html)
        entries.append((f"{dim} {value}", f"{label}/{index.name}"))
    blocks = [
        page.paragraph(
            f"These results hold {len(entries)} values of '{dim}'; timings from different "
            f"values are not comparable, so each has its own report:"
        ),
        page.link_items(entries),
    ]
    if dim == "storage":  # the storages side by side: HDF5 against Zarr where they differ
        table = storage_table(ds)
        paths = write_table(table, out / TABLES_DIR)
        links = {"CSV": f"{TABLES_DIR}/{paths['csv'].name}", "Markdown": f"{TABLES_DIR}/{paths['md'].name}"}
        blocks.append(page.table_block(1, table, links))
        blocks += _latency_blocks(ds, out)
    return page.write_index(out, _title(ds), blocks, html)


def _latency_blocks(ds: xr.Dataset, out: Path) -> list[page.Block]:
    """The latency sweep (figure and its table) when the storages differ by ``latency_ms``, else nothing."""
    frame = latency_frame(ds)
    fig = latency_figure(frame)
    if fig is None:
        return []
    png, pdf = save_figure(fig, out / FIGURES_DIR, LATENCY_FIGURE)
    csv = out / TABLES_DIR / f"{LATENCY_FIGURE}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    picks = sorted({f"{b}: {c}, {k}" for b, c, k in zip(frame["backend"], frame["codec"], frame["chunk"], strict=True)})
    caption = (
        f"Read time against the modelled latency per request, per backend, for the full read and each access pattern "
        f"({frame['dataset'].iloc[0]}; medians over verified ok runs; each backend's codec and chunking fastest at the "
        f"highest latency: {'; '.join(picks)})."
    )
    links = {"PNG": f"{FIGURES_DIR}/{png.name}", "PDF": f"{FIGURES_DIR}/{pdf.name}", "CSV": f"{TABLES_DIR}/{csv.name}"}
    return [page.figure_block(1, caption, f"{FIGURES_DIR}/{png.name}", links)]


def _title(ds: xr.Dataset) -> str:
    title = ds.attrs.get("title")
    return str(title) if title else "cubebench report"


def _write_one(
    ds: xr.Dataset, out: Path, study: xr.Dataset | None, html: bool, sufficiency: xr.Dataset | None = None
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tables_dir, figures_dir = out / TABLES_DIR, out / FIGURES_DIR
    blocks: list[page.Block] = [page.paragraph(_overview(ds))]

    recommendations = []
    blocks.append(page.heading("Recommendations"))
    rec_items = []
    counted = ""
    for use in USES:
        try:
            rec = recommend(ds, use)
        except ResultsError as exc:
            rec_items.append(f"{use}: no recommendation ({exc})")
            recommendations.append(f"{use}: no recommendation ({exc})")
            continue
        rec_items.append(f"{use}: {rec.headline}")
        recommendations.append(format_recommendation(rec))
        counted = f"Based on {rec.n_cells} verified ok cells; {rec.n_excluded} failed or unverified cells excluded."
    blocks.append(page.items(rec_items))
    where = f"Rules, runner-up and per-dataset numbers: {RECOMMENDATIONS_FILE}."
    blocks.append(page.paragraph(" ".join(part for part in (CONSTRAINT_NOTE, counted, where) if part)))
    (out / RECOMMENDATIONS_FILE).write_text("\n\n".join(recommendations) + "\n", encoding="utf-8")

    blocks.append(page.heading("Tables"))
    tables: list[Table] = all_tables(ds, study)
    for number, table in enumerate(tables, start=1):
        paths = write_table(table, tables_dir)
        links = {
            "CSV": f"{TABLES_DIR}/{paths['csv'].name}",
            "LaTeX": f"{TABLES_DIR}/{paths['tex'].name}",
            "Markdown": f"{TABLES_DIR}/{paths['md'].name}",
        }
        blocks.append(page.table_block(number, table, links))
    summary = _summary_csv(ds, tables_dir / SUMMARY_FILE)
    blocks.append(
        page.paragraph(
            f"Every statistic of every cell (mean, std, min, max, median, CV over runs): "
            f"{TABLES_DIR}/{summary.name}; recommendations as text: {RECOMMENDATIONS_FILE}."
        )
    )

    blocks.append(page.heading("Figures"))
    for number, fig in enumerate(all_figures(ds, study), start=1):
        png, pdf = save_figure(fig.figure, figures_dir, fig.name)
        links = {"PNG": f"{FIGURES_DIR}/{png.name}", "PDF": f"{FIGURES_DIR}/{pdf.name}"}
        blocks.append(page.figure_block(number, fig.caption, f"{FIGURES_DIR}/{png.name}", links))

    if sufficiency is not None:
        blocks += sufficiency_blocks(sufficiency, out)

    blocks.append(page.heading("Provenance"))
    blocks.append(page.items(page.provenance_items(ds.attrs)))
    return page.write_index(out, _title(ds), blocks, html)


def _overview(ds: xr.Dataset) -> str:
    status = ds["status"].values.ravel()
    counts = {s: int(np.sum(status == s)) for s in dict.fromkeys(status.tolist())}
    verified = int(ok_mask(ds, require_verified=True).sum())
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    names = {dim: ", ".join(str(v) for v in ds[dim].values) for dim in ("backend", "codec", "chunk")}
    n, runs = ds.sizes["dataset"], ds.sizes["run"]
    return (
        f"{n} dataset{'s' if n != 1 else ''} ({', '.join(dataset_names(ds))}); backends: {names['backend']}; "
        f"codecs: {names['codec']}; chunkings: {names['chunk']}; {runs} run{'s' if runs != 1 else ''}. "
        f"Cells: {parts}; {verified} verified ok cells count. Numbers are means over verified ok runs."
    )


def _summary_csv(ds: xr.Dataset, path: Path) -> Path:
    summary = summarize_runs(ds, require_verified=True)
    cell_vars = [n for n, v in summary.data_vars.items() if set(v.dims) == {"dataset", "backend", "codec", "chunk"}]
    keep = [c for c in summary.coords if c not in ("dataset", "backend", "codec", "chunk")]
    frame = summary[cell_vars].drop_vars(keep).to_dataframe().reset_index()
    if "n_runs" in frame:
        frame = frame[frame["n_runs"] > 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
