"""A stated scaling model: write and read throughput on N nodes, predicted from one measured results Dataset.

The model (docs/scaling.md) takes, per cell ``(dataset, backend, codec, chunk)``, the median measured write and
read throughput ``X`` (GiB/s of source data, verified ok runs) at the measured number of worker threads ``P0``
(workers x threads per worker), the compression ratio ``C`` and how the backend spreads each pass (its
``writes``/``reads`` kind, recorded in the results' ``backend_scaling`` attribute):

- ``workers``: every worker thread encodes and stores its own chunks: ``X(P) = X * P / P0`` (linear);
- ``one_writer``: workers encode, one process stores every chunk: ``X(P) = min(X * P / P0, W * C)``, where the
  writer's rate ``W`` (stored GiB/s) is the fastest stored-byte rate the backend reached on that dataset and
  chunking (the uncompressed cell, when measured: its workers only copy, so the writer is what it times);
- ``one_process``: the whole pass runs in one process on one core: ``X(P) = X``;

and every prediction is capped by the storage's aggregate bandwidth ``B`` (stored bytes/s, shared by all nodes):
``X(P) <= B * C``. ``P = nodes x workers per node x threads per worker``. Pure functions on the Dataset: nothing
here runs or imports a backend.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cubebench.errors import ConfigError, ResultsError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import xarray as xr

__all__ = [
    "KINDS",
    "measured_rates",
    "parse_bandwidth",
    "parse_nodes",
    "predict",
    "prediction_check",
    "recorded_kinds",
    "scaling_report",
    "scaling_tables",
]

#: How a backend's write or read spreads over the cluster (``Backend.writes`` / ``Backend.reads``).
KINDS = ("workers", "one_writer", "one_process")
GIB = 2**30
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bandwidth(text: str) -> float:
    """``"10GB/s"``, ``"1.5GiB/s"``, ``"800MB/s"`` or a number of bytes/s -> bytes per second.

    Raises
    ------
    ConfigError
        The text is not a positive bandwidth.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]i?)?(?:b(?:/s|ps)?)?\s*", str(text).lower())
    if not match:
        raise ConfigError(f"storage bandwidth {text!r}: give a rate such as 10GB/s, 1.5GiB/s or 800MB/s")
    value = float(match.group(1)) * _UNITS[match.group(2) or ""]
    if not value > 0:
        raise ConfigError(f"storage bandwidth {text!r} must be positive")
    return value


def parse_nodes(text: str) -> tuple[int, ...]:
    """``"1,2,4,...,64"`` -> ``(1, 2, 4, 8, 16, 32, 64)``: a list, where ``...`` continues the last two's ratio.

    Raises
    ------
    ConfigError
        Not positive integers, not increasing, or a ``...`` without two values before it and one after.
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    out: list[int] = []
    try:
        for i, part in enumerate(parts):
            if part == "...":
                if len(out) < 2 or i != len(parts) - 2:
                    raise ValueError
                step, end = out[-1] / out[-2], int(parts[-1])
                if step <= 1:
                    raise ValueError
                while out[-1] * step < end:
                    out.append(round(out[-1] * step))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"nodes {text!r}: give increasing positive integers, e.g. 1,2,4,...,64") from None
    if not out or out[0] < 1 or any(b <= a for a, b in itertools.pairwise(out)):
        raise ConfigError(f"nodes {text!r}: give increasing positive integers, e.g. 1,2,4,...,64")
    return tuple(out)


def recorded_kinds(ds: xr.Dataset) -> dict[str, tuple[str, str]] | None:
    """``{backend: (writes, reads)}`` as the run recorded it (attribute ``backend_scaling``), or None."""
    raw = ds.attrs.get("backend_scaling")
    if raw is None:
        return None
    data = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): (str(v["writes"]), str(v["reads"])) for k, v in data.items()}


def measured_rates(ds: xr.Dataset, kinds: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """One row per measured cell: median write/read GiB/s, ratio, threads, kinds and the single writer's rate.

    Only verified ``ok`` runs count. ``writer_GiBps`` (stored GiB/s) is the fastest stored-byte rate of the
    backend on that dataset and chunking, used for ``one_writer`` writes.

    Raises
    ------
    ResultsError
        No verified cell, or a backend without a kind in ``kinds``.
    """
    ok = (ds["status"] == "ok") & ds["verified"]
    keys = ["dataset", "backend", "codec", "chunk"]
    stored = ds["stored_bytes"].astype(float) / GIB / ds["write_seconds"]
    frame = pd.DataFrame(
        {
            "write_GiBps": ds["write_GiBps"].where(ok).median("run").to_series(),
            "read_GiBps": ds["read_GiBps"].where(ok).median("run").to_series(),
            "ratio": ds["ratio"].where(ok).median("run").to_series(),
            "stored_GiBps": stored.where(ok).median("run").to_series(),
            "threads": (ds["workers"] * ds["threads_per_worker"]).where(ok).max("run").to_series(),
            "workers": ds["workers"].where(ok).max("run").to_series(),
            "threads_per_worker": ds["threads_per_worker"].where(ok).max("run").to_series(),
        }
    ).dropna(subset=["write_GiBps", "read_GiBps", "ratio"])
    if frame.empty:
        raise ResultsError("no verified ok cell to scale from")
    frame = frame.reset_index()
    missing = sorted(set(frame["backend"]) - set(kinds))
    if missing:
        raise ResultsError(f"no scaling kind for backend(s) {', '.join(missing)}; known: {', '.join(kinds)}")
    frame["writes"] = [kinds[b][0] for b in frame["backend"]]
    frame["reads"] = [kinds[b][1] for b in frame["backend"]]
    frame["writer_GiBps"] = frame.groupby(["dataset", "backend", "chunk"])["stored_GiBps"].transform("max")
    for col in ("threads", "workers", "threads_per_worker"):
        frame[col] = frame[col].astype(int)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class _Cell:
    """One row of :func:`measured_rates`, typed."""

    key: dict[str, str]
    write: float
    read: float
    ratio: float
    threads: int
    workers: int
    threads_per_worker: int
    writes: str
    reads: str
    writer: float

    @classmethod
    def rows(cls, frame: pd.DataFrame) -> list[_Cell]:
        return [
            cls(
                {k: str(r[k]) for k in ("dataset", "backend", "codec", "chunk")},
                float(r["write_GiBps"]),
                float(r["read_GiBps"]),
                float(r["ratio"]),
                int(r["threads"]),
                int(r["workers"]),
                int(r["threads_per_worker"]),
                str(r["writes"]),
                str(r["reads"]),
                float(r["writer_GiBps"]),
            )
            for r in frame.to_dict("records")
        ]


def _scale(rate: float, kind: str, p0: int, p: int, writer: float, cap: float) -> tuple[float, str]:
    """The predicted GiB/s at ``p`` threads and what limits it (``workers``, ``writer``, ``one core``, ``storage``)."""
    if kind == "one_process":
        value, limit = rate, "one core"
    elif kind == "one_writer" and writer < rate * p / p0:
        value, limit = writer, "writer"
    else:
        value, limit = rate * p / p0, "workers"
    if cap < value:
        return cap, "storage"
    return value, limit


def predict(
    rates: pd.DataFrame,
    nodes: Sequence[int],
    storage_bandwidth: float,
    workers_per_node: int | None = None,
) -> pd.DataFrame:
    """Predicted write and read GiB/s per measured cell and node count (see the module docstring).

    Parameters
    ----------
    rates
        :func:`measured_rates`.
    nodes
        Node counts to predict for.
    storage_bandwidth
        The storage's aggregate bandwidth in bytes/s (stored bytes), shared by all nodes.
    workers_per_node
        Workers on each node (default: the measured workers, as if the measurement was one node); each has the
        measured threads per worker.
    """
    if storage_bandwidth <= 0:
        raise ConfigError("storage bandwidth must be positive")
    if workers_per_node is not None and workers_per_node < 1:
        raise ConfigError(f"workers per node must be at least 1, got {workers_per_node}")
    rows: list[dict[str, Any]] = []
    for cell in _Cell.rows(rates):
        per_node = (workers_per_node or cell.workers) * cell.threads_per_worker
        cap = storage_bandwidth / GIB * cell.ratio
        writer = cell.writer * cell.ratio
        for n in nodes:
            p = n * per_node
            write, write_limit = _scale(cell.write, cell.writes, cell.threads, p, writer, cap)
            read, read_limit = _scale(cell.read, cell.reads, cell.threads, p, np.inf, cap)
            rows.append(
                {
                    **cell.key,
                    "nodes": int(n),
                    "threads": int(p),
                    "write_GiBps": write,
                    "write_limit": write_limit,
                    "read_GiBps": read,
                    "read_limit": read_limit,
                }
            )
    return pd.DataFrame(rows)


def prediction_check(rates: pd.DataFrame, measured: pd.DataFrame, storage_bandwidth: float) -> pd.DataFrame:
    """The model's prediction from ``rates`` at each cell's thread count in ``measured``, beside the measurement.

    Both are :func:`measured_rates` frames (say 1 and 2 workers on one machine). Returns one row per common
    cell: measured and predicted write/read GiB/s and the relative errors (predicted / measured - 1).
    """
    keys = ["dataset", "backend", "codec", "chunk"]
    rows = []
    both = rates.merge(measured[[*keys, "threads", "write_GiBps", "read_GiBps"]], on=keys, suffixes=("", "_measured"))
    for cell, other in zip(_Cell.rows(both), both.to_dict("records"), strict=True):
        cap = storage_bandwidth / GIB * cell.ratio
        p = int(other["threads_measured"])
        write_measured, read_measured = float(other["write_GiBps_measured"]), float(other["read_GiBps_measured"])
        write, _ = _scale(cell.write, cell.writes, cell.threads, p, cell.writer * cell.ratio, cap)
        read, _ = _scale(cell.read, cell.reads, cell.threads, p, np.inf, cap)
        rows.append(
            {
                **cell.key,
                "threads_from": cell.threads,
                "threads": p,
                "write_measured": write_measured,
                "write_predicted": write,
                "write_error": write / write_measured - 1,
                "read_measured": read_measured,
                "read_predicted": read,
                "read_error": read / read_measured - 1,
            }
        )
    return pd.DataFrame(rows)


def scaling_tables(pred: pd.DataFrame, dataset: str | None = None, chunk: str | None = None) -> str:
    """Markdown: predicted write and read GiB/s per backend and codec (rows) and node count (columns).

    One dataset and chunking (default: the first of each); a value limited by the single writer, one core or
    the storage is marked ``w``, ``1`` or ``s``.
    """
    if pred.empty:
        raise ResultsError("nothing to tabulate: no prediction")
    dataset = dataset or str(pred["dataset"].iloc[0])
    chunk = chunk or str(pred["chunk"].iloc[0])
    part = pred[(pred["dataset"] == dataset) & (pred["chunk"] == chunk)]
    if part.empty:
        raise ResultsError(f"no prediction for dataset {dataset!r} and chunk {chunk!r}")
    marks = {"workers": "", "writer": " w", "one core": " 1", "storage": " s"}
    nodes = sorted(int(n) for n in part["nodes"].unique())
    blocks = []
    for what in ("write", "read"):
        header = "| backend | codec | " + " | ".join(f"{n} node{'s' if n > 1 else ''}" for n in nodes) + " |"
        lines = [f"**Predicted {what} GiB/s** ({dataset}, {chunk} chunks)", "", header]
        lines.append("|:---|:---|" + "---:|" * len(nodes))
        for (backend, codec), rows in part.groupby(["backend", "codec"], sort=False):
            values = dict(zip(rows["nodes"].astype(int), rows[f"{what}_GiBps"].astype(float), strict=True))
            limits = dict(zip(rows["nodes"].astype(int), rows[f"{what}_limit"].astype(str), strict=True))
            cells = [f"{values[n]:.3g}{marks[limits[n]]}" for n in nodes]
            lines.append(f"| {backend} | {codec} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    legend = "Limited by: w = the single writer, 1 = one process (one core), s = the storage bandwidth."
    return "\n\n".join([*blocks, legend]) + "\n"


def scaling_report(
    ds: xr.Dataset,
    nodes: str | Sequence[int],
    storage_bandwidth: str | float,
    *,
    workers_per_node: int | None = None,
    dataset: str | None = None,
    chunk: str | None = None,
    kinds: Mapping[str, tuple[str, str]] | None = None,
    check: xr.Dataset | None = None,
) -> str:
    """What ``cubebench scaling`` prints: the model's inputs, the predicted tables, and optionally a check.

    ``kinds`` fills in backends the results did not record (the run's own record wins); ``check`` is a second
    results Dataset (more workers) to compare the prediction with.
    """
    counts = parse_nodes(nodes) if isinstance(nodes, str) else tuple(int(n) for n in nodes)
    bandwidth = parse_bandwidth(storage_bandwidth) if isinstance(storage_bandwidth, str) else float(storage_bandwidth)
    known = {**(kinds or {}), **(recorded_kinds(ds) or {})}
    rates = measured_rates(ds, known)
    pred = predict(rates, counts, bandwidth, workers_per_node)
    first = rates.iloc[0]
    per_node = (workers_per_node or int(first["workers"])) * int(first["threads_per_worker"])
    out = [
        f"Model (docs/scaling.md): measured at {int(first['threads'])} worker thread(s); {per_node} per node; "
        f"storage {bandwidth / 1e9:.3g} GB/s shared by all nodes.",
        "",
        scaling_tables(pred, dataset, chunk),
    ]
    if check is not None:
        table = prediction_check(rates, measured_rates(check, {**known, **(recorded_kinds(check) or {})}), bandwidth)
        if table.empty:
            raise ResultsError("--check: no cell measured in both results")
        cols = ["backend", "codec", "chunk", "threads_from", "threads"]
        nums = ["write_measured", "write_predicted", "write_error", "read_measured", "read_predicted", "read_error"]
        lines = ["| " + " | ".join(cols + nums) + " |", "|" + ":---|" * len(cols) + "---:|" * len(nums)]
        for row in table.itertuples(index=False):
            values = [str(getattr(row, c)) for c in cols]
            values += [f"{getattr(row, c):+.0%}" if c.endswith("error") else f"{getattr(row, c):.3g}" for c in nums]
            lines.append("| " + " | ".join(values) + " |")
        median = table[["write_error", "read_error"]].abs().median()
        out += [
            "",
            "**Prediction vs measurement** (GiB/s; error = predicted / measured - 1)",
            "",
            *lines,
            "",
            f"Median |error|: write {median['write_error']:.0%}, read {median['read_error']:.0%}.",
        ]
    return "\n".join(out)
