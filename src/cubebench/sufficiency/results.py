"""Results of the inference-sufficiency study: one record per (dataset, representation, run), and their Dataset.

The study's numbers live beside the main results, in the same results folder, as a second Dataset with its own
dimensions (the main one keeps ``(dataset, backend, codec, chunk, run)``):

- ``sufficiency.jsonl``: the append-only log, one :class:`RepresentationResult` per line, fsynced per line;
- ``sufficiency.nc`` (netCDF4, schema version :data:`SCHEMA_VERSION`) and ``sufficiency.csv`` (one row per
  dataset, representation, target and metric).

Layout of the Dataset (dims ``dataset``, ``representation``, ``run``, ``target``, ``metric``):

==========================================  ======================================================================
variable                                    meaning
==========================================  ======================================================================
``inference_error`` (dataset, repr.,        the target's error against the source (``rel_l2``, ``max_abs``,
target, metric)                             ``psnr``); NaN where the representation did not verify
``stored_bytes``, ``ratio``                 bytes on disk (metadata included) and source bytes / stored bytes
(dataset, representation)
``write_seconds``, ``read_seconds``,        timings per run, as for codec cells (write: transform, encode, write,
``status``, ``reason``, ``verified``        fsync; read: full read, decode, per-chunk hash)
(dataset, representation, run)
``data_max_abs_error`` (dataset, repr.)     max |stored value - source value| where the geometry is the source's
``error_bound``, ``lossless``, ``family``,  per representation: its promise and what it gives up
``discards``, ``description``, ``storage``
``target_params`` (dataset, target)         the resolved target geometry (JSON: radii and centre in px)
==========================================  ======================================================================

Attributes: the run's provenance (as the main Dataset) plus ``storage_codec``, ``mrad_per_pixel`` and the
report's question (``question_target``, ``question_tolerance``, ``question_metric``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.errors import ResultsError
from cubebench.jsonlog import JsonLinesLog, load_dataset, save_dataset
from cubebench.sufficiency.targets import METRICS, TARGETS

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    import xarray as xr

__all__ = [
    "CSV_FILE",
    "DATASET_FILE",
    "LOG_FILE",
    "METRIC_NAMES",
    "RepresentationResult",
    "SufficiencyLog",
    "find_sufficiency",
    "load_sufficiency",
    "records_to_sufficiency",
    "save_sufficiency",
]

SCHEMA_VERSION = 1
LOG_FILE = "sufficiency.jsonl"
DATASET_FILE = "sufficiency.nc"
CSV_FILE = "sufficiency.csv"
#: Resolved target geometry per dataset, written by the runner next to the log.
TARGETS_FILE = "sufficiency_targets.json"

DIMS = ("dataset", "representation", "run")
#: The metrics, in the Dataset's order (see :data:`cubebench.sufficiency.targets.METRICS`).
METRIC_NAMES = ("rel_l2", "max_abs", "psnr")

GIB = float(2**30)


@dataclass
class RepresentationResult:
    """Everything measured for one representation of one dataset in one run; one line of the log.

    ``errors`` maps target -> metric -> value; it is filled in the first verified run only (the errors are a
    property of the stored data, not of the run).
    """

    dataset: str
    representation: str
    run: int
    family: str = ""
    lossless: bool = False
    discards: str = ""
    description: str = ""
    storage: str = ""
    status: str = "missing"
    reason: str = ""
    verified: bool = False
    source_bytes: int = 0
    stored_bytes: int = 0
    stored_shape: str = ""
    stored_dtype: str = ""
    n_chunks: int = 0
    write_seconds: float = math.nan
    read_seconds: float = math.nan
    error_bound: float = math.nan
    data_max_abs_error: float = math.nan
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    started: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        """The record's coordinates, used to skip finished work on resume."""
        return (self.dataset, self.representation, self.run)

    def to_json(self) -> str:
        """One JSON line (NaN and inf written as JSON's non-standard NaN / Infinity, which Python reads back)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> RepresentationResult:
        """Inverse of :meth:`to_json`; unknown keys from newer versions are ignored."""
        raw = json.loads(line)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


class SufficiencyLog(JsonLinesLog[RepresentationResult]):
    """Append-only JSON-lines log of finished representation runs, flushed and fsynced after every line."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, RepresentationResult)


def _ordered(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def records_to_sufficiency(
    records: Sequence[RepresentationResult],
    targets: Mapping[str, Mapping[str, Any]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build the sufficiency Dataset (layout in the module docstring) from records.

    Parameters
    ----------
    records
        Finished records, any order.
    targets
        Per dataset, per target: the resolved parameters (stored as JSON in ``target_params``). Also fixes the
        order of the ``target`` dimension; targets met only in records are appended.
    attrs
        Provenance attributes; values that are not plain scalars are stored as JSON strings.
    """
    import xarray as xr

    if not records:
        raise ResultsError("no finished representation runs to build a sufficiency Dataset from")
    targets = targets or {}
    datasets = _ordered([r.dataset for r in records])
    reps = _ordered([r.representation for r in records])
    runs = sorted({r.run for r in records})
    names = _ordered([t for per in targets.values() for t in per] + [t for r in records for t in r.errors])
    di = {v: i for i, v in enumerate(datasets)}
    ri = {v: i for i, v in enumerate(reps)}
    ui = {v: i for i, v in enumerate(runs)}
    ti = {v: i for i, v in enumerate(names)}
    mi = {v: i for i, v in enumerate(METRIC_NAMES)}
    nd, nr, nu, nt, nm = len(datasets), len(reps), len(runs), len(names), len(METRIC_NAMES)

    error = np.full((nd, nr, nt, nm), np.nan)
    stored = np.zeros((nd, nr), dtype=np.int64)
    source = np.zeros(nd, dtype=np.int64)
    max_err = np.full((nd, nr), np.nan)
    shape_s = np.full((nd, nr), "", dtype=object)
    dtype_s = np.full((nd, nr), "", dtype=object)
    write = np.full((nd, nr, nu), np.nan)
    read = np.full((nd, nr, nu), np.nan)
    status = np.full((nd, nr, nu), "missing", dtype=object)
    reason = np.full((nd, nr, nu), "", dtype=object)
    verified = np.zeros((nd, nr, nu), dtype=bool)
    per_rep: dict[str, RepresentationResult] = {}
    for r in records:
        d, p, u = di[r.dataset], ri[r.representation], ui[r.run]
        write[d, p, u], read[d, p, u] = r.write_seconds, r.read_seconds
        status[d, p, u], reason[d, p, u], verified[d, p, u] = r.status, r.reason, r.verified
        source[d] = max(source[d], r.source_bytes)
        if r.representation not in per_rep or (r.family and not per_rep[r.representation].family):
            per_rep[r.representation] = r
        if r.status == "ok" and r.verified and stored[d, p] == 0:
            stored[d, p] = r.stored_bytes
            shape_s[d, p], dtype_s[d, p] = r.stored_shape, r.stored_dtype
        if r.errors:
            max_err[d, p] = r.data_max_abs_error
            for t, metrics in r.errors.items():
                for m, value in metrics.items():
                    if m in mi:
                        error[d, p, ti[t], mi[m]] = value
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(stored > 0, source[:, None] / stored, np.nan)
        write_gibps = np.where(status == "ok", source[:, None, None] / GIB / write, np.nan)
        read_gibps = np.where(status == "ok", source[:, None, None] / GIB / read, np.nan)
    params = np.full((nd, nt), "", dtype=object)
    for name, per in targets.items():
        if name in di:
            for t, value in per.items():
                params[di[name], ti[t]] = json.dumps(value, default=str)

    def rep_attr(key: str) -> np.ndarray:
        return np.asarray([str(getattr(per_rep[p], key)) for p in reps], dtype=str)

    ds = xr.Dataset(
        {
            "inference_error": (("dataset", "representation", "target", "metric"), error),
            "stored_bytes": (("dataset", "representation"), stored),
            "ratio": (("dataset", "representation"), ratio),
            "stored_shape": (("dataset", "representation"), shape_s.astype(str)),
            "stored_dtype": (("dataset", "representation"), dtype_s.astype(str)),
            "data_max_abs_error": (("dataset", "representation"), max_err),
            "source_bytes": (("dataset",), source),
            "write_seconds": (DIMS, write),
            "read_seconds": (DIMS, read),
            "write_GiBps": (DIMS, write_gibps),
            "read_GiBps": (DIMS, read_gibps),
            "status": (DIMS, status.astype(str)),
            "reason": (DIMS, reason.astype(str)),
            "verified": (DIMS, verified),
            "lossless": (("representation",), np.asarray([per_rep[p].lossless for p in reps], dtype=bool)),
            "error_bound": (("representation",), np.asarray([per_rep[p].error_bound for p in reps], dtype=float)),
            "family": (("representation",), rep_attr("family")),
            "discards": (("representation",), rep_attr("discards")),
            "description": (("representation",), rep_attr("description")),
            "storage": (("representation",), rep_attr("storage")),
            "target_params": (("dataset", "target"), params.astype(str)),
            "target_description": (("target",), np.asarray([TARGETS.get(t, "") for t in names], dtype=str)),
            "metric_description": (("metric",), np.asarray([METRICS[m][0] for m in METRIC_NAMES], dtype=str)),
            "metric_higher_is_better": (("metric",), np.asarray([METRICS[m][1] for m in METRIC_NAMES])),
        },
        coords={
            "dataset": datasets,
            "representation": reps,
            "run": runs,
            "target": names,
            "metric": list(METRIC_NAMES),
        },
    )
    ds["inference_error"].attrs["description"] = "error of each inference target against the source, per metric"
    ds["stored_bytes"].attrs.update(units="bytes", description="bytes on disk of the stored representation")
    for name in ("write_seconds", "read_seconds"):
        ds[name].attrs["units"] = "s"
    ds.attrs.update({k: _attr(v) for k, v in (attrs or {}).items()})
    ds.attrs["schema_version"] = SCHEMA_VERSION
    ds.attrs["kind"] = "cubebench inference sufficiency"
    return ds


def _attr(value: Any) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    return json.dumps(value, default=str)


def to_frame(ds: xr.Dataset) -> Any:
    """Flat table (pandas DataFrame): one row per dataset, representation, target and metric."""
    frame = ds["inference_error"].to_dataframe().reset_index()
    for name in ("stored_bytes", "ratio", "data_max_abs_error"):
        frame = frame.merge(ds[name].to_dataframe().reset_index(), on=["dataset", "representation"])
    for name in ("lossless", "family", "discards"):
        frame = frame.merge(ds[name].to_dataframe().reset_index(), on=["representation"])
    return frame


def save_sufficiency(ds: xr.Dataset, folder: Path) -> Path:
    """Write ``sufficiency.nc`` (atomically) and ``sufficiency.csv`` into ``folder``."""
    return save_dataset(ds, folder, DATASET_FILE, CSV_FILE, to_frame(ds), "sufficiency results")


def _target_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.name == DATASET_FILE:
        return path
    if path.is_file():  # the main results file: the sufficiency file beside it
        return path.parent / DATASET_FILE
    return path / DATASET_FILE


def find_sufficiency(path: str | os.PathLike[str]) -> xr.Dataset | None:
    """The sufficiency Dataset of a results folder (or beside a results file), or None when it has none."""
    target = _target_file(path)
    return load_sufficiency(target) if target.exists() else None


def load_sufficiency(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open the sufficiency Dataset from a results folder, its ``sufficiency.nc``, or the ``results.nc`` beside it."""
    target = _target_file(path)
    if not target.exists():
        raise ResultsError(
            f"no inference-sufficiency results at {path}: run an experiment with 'representations:' "
            f"(e.g. configs/sufficiency.yaml)"
        )
    loaded: xr.Dataset = load_dataset(target, "sufficiency results", SCHEMA_VERSION)
    return loaded
