"""Acquisition results: one log line per cell (``acquisition.jsonl``) and the ``acquisition.nc`` Dataset.

A paced cell is keyed ``(dataset, backend, codec, chunk, workers, rate)`` with ``rate`` the requested frame rate
as a label (``"4000Hz"``); a max-rate search is one record with ``rate = "max"`` holding its trials. In the
Dataset, paced variables have dims ``(dataset, backend, codec, chunk, workers, rate)``; search variables
``(dataset, backend, codec, chunk, workers)`` and, per trial, ``(..., trial)``. Schema 1 (no ``workers``
dimension) is rebuilt from the log when loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from cubebench.errors import ResultsError
from cubebench.jsonlog import JsonLinesLog, load_dataset, save_dataset

if TYPE_CHECKING:
    from pathlib import Path

SCHEMA_VERSION = 2
LOG_FILE = "acquisition.jsonl"
NC_FILE = "acquisition.nc"
CSV_FILE = "acquisition.csv"
DIMS = ("dataset", "backend", "codec", "chunk", "workers")


@dataclass
class AcquisitionRecord:
    """One paced cell (``rate`` = ``"<hz>Hz"``) or one max-rate search (``rate`` = ``"max"``)."""

    dataset: str
    backend: str
    codec: str
    chunk: str
    rate: str
    status: str = "ok"
    error: str = ""
    requested_rate: float = float("nan")
    released_rate: float = float("nan")
    pacing_held: bool = False
    max_pacing_lag: float = float("nan")
    achieved_rate: float = float("nan")
    achieved_GBps: float = float("nan")
    kept_up: bool = False
    frames: int = 0
    frame_bytes: int = 0
    seconds: float = float("nan")
    peak_backlog_frames: int = 0
    peak_backlog_bytes: int = 0
    end_backlog_frames: int = 0
    allowed_backlog_frames: int = 0
    drain_seconds: float = float("nan")
    latency_p50: float = float("nan")
    latency_p99: float = float("nan")
    latency_max: float = float("nan")
    buffer_limit_frames: float = float("nan")
    dropped_frames: int = 0
    implied_buffer_frames: int = 0
    implied_buffer_bytes: int = 0
    peak_memory_bytes: int = 0
    stored_bytes: int = 0
    sync_commits: int = 0
    sync_seconds: float = float("nan")
    #: How completed chunks reached the workers (``stream`` or ``tasks``).
    dispatch: str = ""
    verified: bool = False
    workers: int = 0
    chunk_shape: list[int] = field(default_factory=list)
    #: Search only: the highest rate kept up (Hz), and each trial's rate and outcome.
    max_frame_rate: float = float("nan")
    max_GBps: float = float("nan")
    trial_rates: list[float] = field(default_factory=list)
    trial_kept_up: list[bool] = field(default_factory=list)
    #: Search only: every trial kept up, so the search ran out of trials going up (the max is a lower bound).
    max_is_lower_bound: bool = False
    criterion: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        """Records with equal keys replace each other in the log."""
        return (self.dataset, self.backend, self.codec, self.chunk, str(self.workers), self.rate)

    def to_json(self) -> str:
        """One JSON line (NaN as null)."""
        return json.dumps({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, line: str) -> Self:
        """Inverse of :meth:`to_json`; unknown keys are ignored, nulls are NaN."""
        raw = json.loads(line)
        names = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {k: (float("nan") if v is None else v) for k, v in raw.items() if k in names}
        return cls(**values)


def acquisition_log(folder: Path) -> JsonLinesLog[AcquisitionRecord]:
    """The append-only, fsynced log of finished cells in ``folder``."""
    return JsonLinesLog(folder / LOG_FILE, AcquisitionRecord)


PACED_VARS = [
    f.name
    for f in fields(AcquisitionRecord)
    if f.name not in (*DIMS, "rate", "error", "chunk_shape", "trial_rates", "trial_kept_up", "criterion")
    and not f.name.startswith("max_")
]


def records_to_dataset(records: list[AcquisitionRecord]) -> Any:
    """The ``acquisition.nc`` Dataset of ``records`` (see the module docstring)."""
    import xarray as xr

    coords = {d: sorted({getattr(r, d) for r in records}) for d in DIMS}
    paced = [r for r in records if r.rate != "max"]
    searches = [r for r in records if r.rate == "max"]
    rates = sorted({r.rate for r in paced}, key=lambda s: float(s.removesuffix("Hz")))
    shape = [len(coords[d]) for d in DIMS]
    data: dict[str, Any] = {}
    if paced:
        for name in PACED_VARS:
            kind = type(getattr(paced[0], name))
            fill: Any = "" if kind is str else np.nan
            arr = np.full([*shape, len(rates)], fill, dtype=object if kind is str else float)
            for r in paced:
                arr[(*(coords[d].index(getattr(r, d)) for d in DIMS), rates.index(r.rate))] = getattr(r, name)
            data[name] = ([*DIMS, "rate"], arr.astype(str) if kind is str else arr)
    if searches:
        n_trials = max(len(r.trial_rates) for r in searches)
        per = {n: np.full(shape, np.nan) for n in ("max_frame_rate", "max_GBps")}
        trial_rate = np.full([*shape, n_trials], np.nan)
        trial_ok = np.full([*shape, n_trials], np.nan)
        status = np.full(shape, "", dtype=object)
        lower = np.full(shape, np.nan)
        for r in searches:
            at = tuple(coords[d].index(getattr(r, d)) for d in DIMS)
            per["max_frame_rate"][at], per["max_GBps"][at] = r.max_frame_rate, r.max_GBps
            trial_rate[at][: len(r.trial_rates)] = r.trial_rates
            trial_ok[at][: len(r.trial_kept_up)] = r.trial_kept_up
            status[at] = r.status
            lower[at] = r.max_is_lower_bound
        data.update({n: (list(DIMS), v) for n, v in per.items()})
        data["trial_rate"] = ([*DIMS, "trial"], trial_rate)
        data["trial_kept_up"] = ([*DIMS, "trial"], trial_ok)
        data["search_status"] = (list(DIMS), status.astype(str))
        data["max_is_lower_bound"] = (list(DIMS), lower)
    ds = xr.Dataset(data, coords={**coords, **({"rate": rates} if paced else {})})
    criteria = sorted({r.criterion for r in records if r.criterion})
    ds.attrs.update(schema_version=SCHEMA_VERSION, kind="acquisition", criterion=" | ".join(criteria))
    return ds


def save_acquisition(records: list[AcquisitionRecord], folder: Path) -> Path:
    """Write ``acquisition.nc`` and ``acquisition.csv`` (one row per record) into ``folder``."""
    import pandas as pd

    frame = pd.DataFrame([asdict(r) for r in records])
    return save_dataset(records_to_dataset(records), folder, NC_FILE, CSV_FILE, frame, "acquisition results")


def load_acquisition(target: Path) -> Any:
    """Open ``acquisition.nc`` (or the folder holding it)."""
    path = target / NC_FILE if target.is_dir() else target
    ds = load_dataset(path, "acquisition results", SCHEMA_VERSION)
    if int(ds.attrs.get("schema_version", 1)) < SCHEMA_VERSION:  # older layout: the log holds every record
        log = acquisition_log(path.parent)
        if not log.path.exists():
            raise ResultsError(f"{path}: acquisition results of schema 1 without their log {log.path.name}")
        return records_to_dataset(log.read())
    return ds
