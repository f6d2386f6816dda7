"""MkDocs hook: replace ``<!-- codec-table -->`` in a page with the codec catalog, built from ``cubebench.codecs``.

Registered under ``hooks:`` in mkdocs.yml. cubebench is imported when a page with the marker is built, not when
the hook loads, and only through names ``cubebench.codecs`` exports (``CODECS``, ``CodecSpec``). Availability per
backend is the check ``cubebench codecs`` makes: ``BACKENDS[name]().check(spec, uint16)``.
"""

from __future__ import annotations

import warnings
from typing import Any

MARKER = "<!-- codec-table -->"

#: h5py's built-in filters are named, not numbered, in ``create_dataset``'s ``compression=``.
_H5PY_NAMED_FILTERS = {"gzip": 1, "szip": 4, "lzf": 32000}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _filter_id(spec: Any) -> str:
    from cubebench.errors import CodecUnavailableError

    try:
        compression = spec.hdf5_filter("uint16").get("compression")
    except CodecUnavailableError:
        return "-"
    if compression is None:
        return "- (no filter)"
    return str(_H5PY_NAMED_FILTERS.get(compression, compression))


def _level_and_shuffle(spec: Any) -> tuple[str, str]:
    kw = spec.kw
    level = kw.get("level", kw.get("clevel", "-"))
    shuffle = kw.get("shuffle", "bit" if spec.family == "bitshuffle" else "-")
    return str(level), str(shuffle)


def _availability(spec: Any, dtype: Any) -> dict[str, str | None]:
    """``{backend: None if available else the reason}``, as ``cubebench codecs`` decides it."""
    from cubebench.backends import BACKENDS
    from cubebench.errors import CodecUnavailableError

    out: dict[str, str | None] = {}
    for name, backend in BACKENDS.items():
        try:
            backend().check(spec, dtype)
            out[name] = None
        except CodecUnavailableError as exc:
            out[name] = str(exc)
    return out


def _codec_list(ids: list[str], every: list[str]) -> str:
    """``ids`` as code spans, or "every codec but ..." when that is shorter."""
    if len(ids) > len(every) / 2:
        rest = [i for i in every if i not in ids]
        return "every codec" + (" but " + ", ".join(f"`{i}`" for i in rest) if rest else "")
    return ", ".join(f"`{i}`" for i in ids)


def codec_tables() -> str:
    """The catalog table, the availability table and the reasons, as Markdown."""
    import numpy as np

    from cubebench.codecs import CODECS

    dtype = np.dtype("uint16")
    lines = [
        "| id | family | description | level | shuffle | in the study | HDF5 filter id |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in CODECS.values():
        level, shuffle = _level_and_shuffle(spec)
        lines.append(
            f"| `{spec.id}` | {spec.family} | {_cell(spec.description)} | {level} | {shuffle} | "
            f"{'yes' if spec.study else 'no'} | {_filter_id(spec)} |"
        )

    with warnings.catch_warnings():  # zarr warns that numcodecs codecs are outside the v3 spec: not news here
        warnings.simplefilter("ignore")
        availability = {spec.id: _availability(spec, dtype) for spec in CODECS.values()}
    names = list(next(iter(availability.values()), {}))
    lines += ["", "Availability per backend (`uint16` data):", ""]
    lines.append("| id | " + " | ".join(f"`{n}`" for n in names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    # One line per (backend, reason), listing its codecs: the reason without the "<id>: " prefix it starts with.
    reasons: dict[tuple[str, str], list[str]] = {}
    for codec_id, row in availability.items():
        marks = []
        for name in names:
            reason = row[name]
            if reason is None:
                marks.append("yes")
            else:
                marks.append("no*")
                reasons.setdefault((name, reason.removeprefix(f"{codec_id}: ")), []).append(codec_id)
        lines.append(f"| `{codec_id}` | " + " | ".join(marks) + " |")
    if reasons:
        lines += ["", "\\* unavailable:", ""]
        for (name, reason), ids in reasons.items():
            lines.append(f"- `{name}` with {_codec_list(ids, list(availability))}: {_cell(reason)}")
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the marker, if the page has one."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, codec_tables())
