"""The report's index page: ``index.md`` (and ``index.html``) showing every table and figure with a caption.

The page is assembled from a list of blocks (heading, paragraph, table, figure, list) rendered twice, as
Markdown and as a self-contained HTML page with relative links, so both always show the same content.
"""

from __future__ import annotations

import contextlib
import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cubebench.report.format import Table, to_html, to_markdown

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

#: Tables longer than this are linked, not shown inline.
INLINE_ROWS = 60


@dataclass(frozen=True, eq=False)
class Block:
    """One piece of the page: ``kind`` is heading, text, items, links, table or figure."""

    kind: str
    text: str = ""
    level: int = 2
    items: Sequence[str] = ()
    table: Table | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    image: str = ""


def heading(text: str, level: int = 2) -> Block:
    """A section heading."""
    return Block("heading", text, level)


def paragraph(text: str) -> Block:
    """A paragraph of plain text."""
    return Block("text", text)


def items(entries: Sequence[str]) -> Block:
    """A bullet list of plain-text entries."""
    return Block("items", items=tuple(entries))


def link_items(entries: Sequence[tuple[str, str]]) -> Block:
    """A bullet list of ``(text, relative path)`` links."""
    return Block("links", links=dict(entries))


def table_block(number: int, table: Table, links: Mapping[str, str]) -> Block:
    """A numbered table with its caption and links to its files (relative paths by format)."""
    return Block("table", f"Table {number}. {table.title}", table=table, links=dict(links))


def figure_block(number: int, caption: str, image: str, links: Mapping[str, str]) -> Block:
    """A numbered figure: the PNG shown, links to every file."""
    return Block("figure", f"Figure {number}. {caption}", image=image, links=dict(links))


def provenance_items(attrs: Mapping[str, Any], limit: int = 400) -> list[str]:
    """``key: value`` lines from a results Dataset's attributes (JSON strings compacted, long values cut)."""
    out = []
    for key, value in attrs.items():
        text = str(value)
        if isinstance(value, str) and text[:1] in "{[":
            with contextlib.suppress(json.JSONDecodeError):
                text = json.dumps(json.loads(text), separators=(", ", ": "))
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        out.append(f"{key}: {text}")
    return out


def _links_md(links: Mapping[str, str]) -> str:
    return " · ".join(f"[{name}]({path})" for name, path in links.items())


def to_markdown_page(title: str, blocks: Sequence[Block]) -> str:
    """The page as Markdown."""
    lines = [f"# {title}", ""]
    for block in blocks:
        if block.kind == "heading":
            lines += [f"{'#' * block.level} {block.text}", ""]
        elif block.kind == "text":
            lines += [block.text, ""]
        elif block.kind == "items":
            lines += [f"- {entry}" for entry in block.items] + [""]
        elif block.kind == "links":
            lines += [f"- [{text}]({path})" for text, path in block.links.items()] + [""]
        elif block.kind == "table" and block.table is not None:
            lines += [f"### {block.text}", ""]
            if len(block.table.frame) <= INLINE_ROWS:
                lines += [to_markdown(block.table)]
            else:
                lines += [f"{len(block.table.frame)} rows: see the files below.", ""]
            lines += [f"Files: {_links_md(block.links)}", ""]
        elif block.kind == "figure":
            lines += [
                f"### {block.text}",
                "",
                f"![{block.text}]({block.image})",
                "",
                f"Files: {_links_md(block.links)}",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table.cubebench { border-collapse: collapse; margin: 0.5em 0 0.2em; font-size: 0.9em; }
table.cubebench th, table.cubebench td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; }
table.cubebench caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, p.files, p.note { font-size: 0.9em; color: #444; }
"""


def _links_html(links: Mapping[str, str]) -> str:
    return " · ".join(f'<a href="{html.escape(path)}">{html.escape(name)}</a>' for name, path in links.items())


def _html_target(path: str) -> str:
    """Sub-report links point at the HTML page from the HTML page."""
    return path[: -len("index.md")] + "index.html" if path.endswith("index.md") else path


def to_html_page(title: str, blocks: Sequence[Block]) -> str:
    """The page as one self-contained HTML document (images and files linked relatively)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in blocks:
        if block.kind == "heading":
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif block.kind == "text":
            out.append(f"<p>{html.escape(block.text)}</p>")
        elif block.kind == "items":
            out.append("<ul>" + "".join(f"<li>{html.escape(e)}</li>" for e in block.items) + "</ul>")
        elif block.kind == "links":
            out.append(
                "<ul>"
                + "".join(
                    f'<li><a href="{html.escape(_html_target(path))}">{html.escape(text)}</a></li>'
                    for text, path in block.links.items()
                )
                + "</ul>"
            )
        elif block.kind == "table" and block.table is not None:
            out.append(f"<h3>{html.escape(block.text)}</h3>")
            if len(block.table.frame) <= INLINE_ROWS:
                out.append(to_html(block.table))
            else:
                out.append(f"<p>{len(block.table.frame)} rows: see the files below.</p>")
            out.append(f'<p class="files">Files: {_links_html(block.links)}</p>')
        elif block.kind == "figure":
            out.append(
                f'<figure><img src="{html.escape(block.image)}" alt="{html.escape(block.text)}">'
                f"<figcaption>{html.escape(block.text)}<br>Files: {_links_html(block.links)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_index(folder: Path, title: str, blocks: Sequence[Block], html_page: bool = True) -> Path:
    """Write ``index.md`` (and ``index.html``) into ``folder``; return the Markdown path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.md"
    path.write_text(to_markdown_page(title, blocks), encoding="utf-8")
    if html_page:
        (folder / "index.html").write_text(to_html_page(title, blocks), encoding="utf-8")
    return path
