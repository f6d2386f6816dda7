"""Buffer and latency against chunk shape: a figure and its data table, next to ``acquisition.nc``.

For every paced cell: the measured buffer (``peak_backlog_bytes``) against the buffer the chunking implies
(``implied_buffer_bytes``), and the frame-to-durable latency (p50, p99), one bar per backend / codec / workers /
rate in each chunking's group. Reads only the Dataset; drawn without pyplot (Agg canvas, no global state).
``buffer_latency.csv`` holds the plotted numbers; ``buffer_latency.png`` the figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.acquisition.results import load_acquisition

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

MIB = 2**20
FIGURE = "buffer_latency.png"
TABLE = "buffer_latency.csv"
COLUMNS = [
    "dataset",
    "backend",
    "codec",
    "chunk",
    "workers",
    "rate",
    "status",
    "kept_up",
    "peak_backlog_MiB",
    "implied_buffer_MiB",
    "latency_p50_s",
    "latency_p99_s",
]


def buffer_latency_table(ds: Any) -> pd.DataFrame:
    """One row per paced cell that ran: measured and implied buffer (MiB), p50 and p99 latency (s)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    if "kept_up" in ds:
        frame = ds[["status", "kept_up", "peak_backlog_bytes", "implied_buffer_bytes", "latency_p50", "latency_p99"]]
        for r in frame.to_dataframe().reset_index().itertuples(index=False):
            if not str(r.status):
                continue
            rows.append(
                {
                    "dataset": r.dataset,
                    "backend": r.backend,
                    "codec": r.codec,
                    "chunk": r.chunk,
                    "workers": int(r.workers),
                    "rate": r.rate,
                    "status": r.status,
                    "kept_up": bool(r.kept_up == 1),
                    "peak_backlog_MiB": r.peak_backlog_bytes / MIB,
                    "implied_buffer_MiB": r.implied_buffer_bytes / MIB,
                    "latency_p50_s": r.latency_p50,
                    "latency_p99_s": r.latency_p99,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def buffer_latency_figure(table: pd.DataFrame) -> Figure:
    """Measured vs implied buffer (top) and p99 latency (bottom) per chunking, one column per dataset."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    datasets = sorted(table["dataset"].unique()) or [""]
    fig = Figure(figsize=(4.5 * len(datasets) + 1.5, 6.5), layout="constrained")
    axes = fig.subplots(2, len(datasets), squeeze=False)
    if table.empty:
        for ax in axes.flat:
            ax.text(0.5, 0.5, "no paced cells (a --find-max run records searches only)", ha="center", va="center")
            ax.set_axis_off()
        return fig
    series = sorted(
        {(str(b), str(c), int(w), str(r)) for b, c, w, r in table[["backend", "codec", "workers", "rate"]].to_numpy()}
    )
    colors = {s: f"C{i % 10}" for i, s in enumerate(series)}
    width = 0.8 / len(series)
    for col, name in enumerate(datasets):
        part = table[table["dataset"] == name]
        chunks = list(dict.fromkeys(part["chunk"]))
        top, bottom = axes[0, col], axes[1, col]
        for i, s in enumerate(series):
            sub = part[(part["backend"] == s[0]) & (part["codec"] == s[1]) & (part["workers"] == s[2])]
            sub = sub[sub["rate"] == s[3]].set_index("chunk").reindex(chunks)
            x = np.arange(len(chunks)) - 0.4 + (i + 0.5) * width
            label = f"{s[0]} {s[1]} {s[2]}w {s[3]}"
            hatch = [None if k else "//" for k in sub["kept_up"].fillna(False)]
            for ax, column in ((top, "peak_backlog_MiB"), (bottom, "latency_p99_s")):
                bars = ax.bar(x, sub[column], width, color=colors[s], label=label if ax is top else None)
                for bar, h in zip(bars, hatch, strict=True):
                    bar.set_hatch(h)
        implied = part.groupby("chunk", sort=False)["implied_buffer_MiB"].max().reindex(chunks)
        top.hlines(implied, np.arange(len(chunks)) - 0.45, np.arange(len(chunks)) + 0.45, colors="k", label="implied")
        for ax, ylabel in ((top, "buffer (MiB): peak backlog"), (bottom, "p99 frame-to-durable latency (s)")):
            ax.set_xticks(np.arange(len(chunks)), chunks)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(_plain))
            ax.yaxis.set_minor_formatter(FuncFormatter(_plain_2_5))
            ax.set_ylabel(ylabel)
            ax.grid(axis="y", alpha=0.3)
        top.set_title(str(name))
        bottom.set_xlabel("chunking (hatched: did not keep up)")
    axes[0, -1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    return fig


def _plain(value: float, _: object) -> str:
    """Log-axis labels as plain numbers (0.3, not 3 x 10^-1)."""
    return f"{value:g}"


def _plain_2_5(value: float, _: object) -> str:
    """Minor log ticks: only 2 and 5 of each decade are labelled."""
    return _plain(value, _) if f"{value:e}"[0] in "25" else ""


def write_buffer_latency(folder: str | Path) -> list[Path]:
    """Write ``buffer_latency.csv`` and ``buffer_latency.png`` next to ``folder``'s ``acquisition.nc``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    folder = Path(folder)
    if not folder.is_dir():
        folder = folder.parent
    table = buffer_latency_table(load_acquisition(folder))
    paths = [folder / TABLE, folder / FIGURE]
    table.to_csv(paths[0], index=False)
    fig = buffer_latency_figure(table)
    FigureCanvasAgg(fig)
    fig.savefig(paths[1], dpi=120)
    return paths
