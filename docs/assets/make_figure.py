"""Make docs/assets/ratio-vs-speed.png from the shipped reference results (run once; the PNG is committed).

Reads the codec table of results/reference/paper_scaled/codecs.md (hdf5, balanced chunks, means over the five
synthetic presets) and plots each codec's mean ratio against its mean write and read throughput.

    python docs/assets/make_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, NullFormatter

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "results" / "reference" / "paper_scaled" / "codecs.md"
OUT = Path(__file__).resolve().parent / "ratio-vs-speed.png"


def read_table(path: Path) -> list[dict[str, str]]:
    """The first Markdown table in ``path`` as a list of {column: cell} rows."""
    rows = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=True)) for row in rows[2:]]


def main() -> None:
    rows = read_table(TABLE)
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4), sharey=True, constrained_layout=True)
    for ax, column, label in [
        (axes[0], "mean write (GiB/s)", "mean write throughput (GiB/s)"),
        (axes[1], "mean read (GiB/s)", "mean read throughput (GiB/s)"),
    ]:
        for row in rows:
            x, y = float(row[column]), float(row["mean ratio"])
            ax.scatter(x, y, s=18, color="tab:blue" if row["codec"] != "none" else "tab:gray")
            ax.annotate(row["codec"], (x, y), xytext=(3, 2), textcoords="offset points", fontsize=6.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        # The read axis spans less than a decade: label its minor ticks (0.2, 0.3, ...) instead.
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g") if ax is axes[1] else NullFormatter())
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("mean compression ratio")
    fig.suptitle("hdf5, balanced chunks, five synthetic presets (results/reference/paper_scaled)", fontsize=9)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
