"""A report table and its renderings: Markdown, LaTeX (booktabs), HTML and CSV.

Small formatters of our own, so the report needs neither ``tabulate`` (pandas ``to_markdown``) nor ``jinja2``
(pandas ``to_latex``), and so numbers are formatted the same way in every rendering. CSV keeps full precision.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

#: What an empty (NaN, missing) cell shows.
EMPTY = "–"


@dataclass(frozen=True, eq=False)
class Table:
    """A report table: file stem, one-line caption, the data, per-column number formats and an optional note."""

    name: str
    title: str
    frame: pd.DataFrame
    formats: Mapping[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def empty(self) -> bool:
        """True when the table has no rows."""
        return len(self.frame) == 0


def format_value(value: Any, spec: str = "") -> str:
    """One cell as text: ``spec`` (e.g. ``".2f"``) for numbers, :data:`EMPTY` for NaN or None."""
    if value is None:
        return EMPTY
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return EMPTY if math.isnan(float(value)) else ("∞" if value > 0 else "-∞")
        return format(float(value), spec or ".4g")
    text = str(value)
    return text if text else EMPTY


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _cells(table: Table) -> tuple[list[str], list[list[str]], list[bool]]:
    columns = [str(c) for c in table.frame.columns]
    numeric = [_is_numeric(table.frame[c]) for c in table.frame.columns]
    rows = [
        [format_value(v, table.formats.get(str(c), "")) for c, v in zip(table.frame.columns, row, strict=True)]
        for row in table.frame.itertuples(index=False, name=None)
    ]
    return columns, rows, numeric


def to_markdown(table: Table, heading: bool = False) -> str:
    """GitHub-flavoured Markdown table (numbers right-aligned); ``heading`` adds the caption as a bold line."""
    columns, rows, numeric = _cells(table)

    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"**{table.title}**", ""] if heading else []
    lines.append("| " + " | ".join(esc(c) for c in columns) + " |")
    lines.append("|" + "|".join("---:" if n else ":---" for n in numeric) + "|")
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    if not rows:
        lines.append("| " + " | ".join(EMPTY for _ in columns) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
    "²": r"$^2$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "∞": r"$\infty$",
    "Δ": r"$\Delta$",
    "·": r"$\cdot$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (and a few Unicode symbols) in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    columns, rows, numeric = _cells(table)
    align = "".join("r" if n else "l" for n in numeric)
    lines = [
        "% cubebench report table; needs \\usepackage{booktabs}",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{{latex_escape(table.title)}}}",
        f"\\label{{tab:{table.name}}}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(c) for c in columns) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join(latex_escape(v) for v in row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    if table.note:
        lines.append(f"\\par\\smallskip{{\\footnotesize {latex_escape(table.note)}}}")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    """An HTML ``<table>`` with the caption."""
    columns, rows, numeric = _cells(table)
    style = ['style="text-align:right"' if n else 'style="text-align:left"' for n in numeric]
    out = [
        f'<table class="cubebench" id="{html.escape(table.name)}">',
        f"<caption>{html.escape(table.title)}</caption>",
    ]
    out.append("<thead><tr>" + "".join(f"<th {s}>{html.escape(c)}</th>" for c, s in zip(columns, style, strict=True)))
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append(
            "<tr>" + "".join(f"<td {s}>{html.escape(v)}</td>" for v, s in zip(row, style, strict=True)) + "</tr>"
        )
    out.append("</tbody></table>")
    if table.note:
        out.append(f'<p class="note">{html.escape(table.note)}</p>')
    return "\n".join(out) + "\n"


def write_table(table: Table, folder: Path) -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.tex`` into ``folder``; return the paths by format."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "md": folder / f"{table.name}.md",
        "csv": folder / f"{table.name}.csv",
        "tex": folder / f"{table.name}.tex",
    }
    paths["md"].write_text(to_markdown(table, heading=True), encoding="utf-8")
    table.frame.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(to_latex(table), encoding="utf-8")
    return paths
