"""``cubebench acquire``: every (dataset, backend, codec, chunking) of an experiment's ``acquisition:`` section,
paced at each requested rate, or searched for its maximum sustainable rate (``find_max``), with each worker count
of ``acquisition.workers`` (one cluster each).

Finished cells go to an append-only log at once; ``resume`` skips them; Ctrl-C (or SIGTERM) keeps them and says
how to finish. At the end the log becomes ``acquisition.nc`` + ``acquisition.csv``, with the buffer and latency
figure and its table (:mod:`~cubebench.acquisition.figure`).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.acquisition.assembler import implied_buffer_frames
from cubebench.acquisition.cell import CRITERION, CellSpec, check_runs, paced_cell, warm_pipeline, warm_up
from cubebench.acquisition.config import AcquisitionOptions, parse_acquisition
from cubebench.acquisition.figure import write_buffer_latency
from cubebench.acquisition.forms import parse_pipeline
from cubebench.acquisition.results import AcquisitionRecord, acquisition_log, save_acquisition
from cubebench.acquisition.search import find_max
from cubebench.chunking import Chunking
from cubebench.cluster import open_client
from cubebench.codecs import get_codec
from cubebench.errors import ConfigError, CubebenchError, ResultsError
from cubebench.experiment import Experiment, load_experiment
from cubebench.fileio import remove
from cubebench.runner.execute import open_sources
from cubebench.runner.workspace import sigterm_as_interrupt, stop_if_interrupted, work_folder
from cubebench.staging import stage_cube

if TYPE_CHECKING:
    from distributed import Client

    from cubebench.cube import Cube, StagedCube


class AcquisitionInterrupted(CubebenchError):
    """Ctrl-C or SIGTERM during ``cubebench acquire``: finished cells are saved."""

    exit_code = 130


def acquire(
    experiment: Experiment | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    find_max_rate: bool = False,
) -> Path:
    """Run the paced acquisition cells of ``experiment`` (a YAML path or an Experiment); return the results folder.

    Raises
    ------
    ConfigError
        Bad settings (one line naming the key), results already in ``out`` without ``resume``, or a
        ``buffer_limit`` smaller than the buffer a chunking implies.
    """
    exp = load_experiment(experiment) if isinstance(experiment, (str, os.PathLike)) else experiment
    opts = parse_acquisition(exp.acquisition)
    folder = Path(out) if out is not None else Path("results") / exp.name
    log = acquisition_log(folder)
    if log.path.exists() and not resume:
        raise ConfigError(f"acquisition results already exist in {folder}; add --resume, or choose another --out")
    if opts.workers and exp.cluster.address:
        raise ConfigError(
            "acquisition.workers needs a cluster cubebench starts: an existing scheduler (cluster.address) has its own"
        )
    counts = opts.workers or (exp.cluster.workers,)
    cubes = open_sources(exp)
    plan = _plan(exp, opts, cubes, find_max_rate, counts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"results folder {folder} is not writable: {exc.strerror or exc}") from None
    done = {r.key for r in log.read() if r.status != "failed"}
    todo = [item for item in plan if item[-1] not in done]
    finished = len(plan) - len(todo)
    source = os.fspath(experiment) if isinstance(experiment, (str, os.PathLike)) else "EXPERIMENT"
    if not todo:  # everything finished before: only the Dataset and its figure are (re)written
        save_acquisition(log.read(), folder)
        write_buffer_latency(folder)
        return folder
    try:
        with sigterm_as_interrupt():
            scratch = work_folder(exp.scratch, exp.name, "scratch")
            try:
                staged: dict[str, StagedCube] = {}  # staged once, read by every cluster's workers
                sums: dict[str, dict[Any, Any]] = {}  # source hashes per dataset, reused across clusters
                for count in counts:
                    items = [item for item in todo if item[5] == count]
                    if not items:
                        continue
                    cluster = replace(exp.cluster, workers=count) if opts.workers else exp.cluster
                    with open_client(cluster, exp.zarr.concurrency) as client:
                        workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
                        warmed: set[tuple[str, str]] = set()
                        for name, backend, codec_id, chunking, rate, _, _ in items:
                            stop_if_interrupted()
                            if name not in staged:
                                staged[name] = stage_cube(client, cubes[name], scratch)
                            rep, codec = parse_pipeline(codec_id)
                            spec = CellSpec(staged[name], backend, get_codec(codec), chunking, workers, rep)
                            if (name, backend) not in warmed and not check_runs(spec):
                                warm_pipeline(client, spec, rate, opts, scratch)
                                warmed.add((name, backend))
                            cached = sums.setdefault(name, {})
                            item = _run_item(client, spec, rate, opts, scratch, cached, find_max_rate)
                            stop_if_interrupted()  # interrupted mid-cell: the cell is not a measurement
                            log.append(item)
                            finished += 1
            finally:
                remove(scratch)
    except KeyboardInterrupt:
        records = log.read()
        if records:
            save_acquisition(records, folder)
        flag = " --find-max" if find_max_rate else ""
        raise AcquisitionInterrupted(
            f"interrupted: {finished} finished cells saved in {folder}, {len(plan) - finished} missing; "
            f"finish with: cubebench acquire {source} --out {folder} --resume{flag}"
        ) from None
    save_acquisition(log.read(), folder)
    write_buffer_latency(folder)
    return folder


Item = tuple[str, str, str, Chunking, float, int, tuple[str, ...]]


def _plan(
    exp: Experiment, opts: AcquisitionOptions, cubes: dict[str, Cube], search: bool, counts: tuple[int, ...]
) -> list[Item]:
    """Every cell to run (worker count outermost: one cluster each), checked before any work: chunkings, rates and
    the buffer limit against each cube."""
    items: list[Item] = []
    for count, (name, cube) in ((c, nc) for c in counts for nc in cubes.items()):
        shape = tuple(int(s) for s in cube.data.shape)
        frame_bytes = int(np.prod(shape[2:])) * np.dtype(cube.data.dtype).itemsize
        rates = opts.rates_hz(frame_bytes)
        limit = opts.buffer_frames(frame_bytes)
        for chunk in opts.chunks:
            chunking = Chunking.resolve(chunk, shape)
            implied = implied_buffer_frames((shape[0], shape[1]), chunking.shape)
            if limit is not None and limit < implied:
                raise ConfigError(
                    f"acquisition.buffer_limit: {limit:g} frames is smaller than the buffer chunk "
                    f"{chunking.label!r} implies on {name} ({implied} frames, {implied * frame_bytes / 2**20:.1f} MiB)"
                )
            for backend in opts.backends:
                labels = [*opts.codecs, *(f"{r}+{c}" for r in opts.representations for c in opts.codecs)]
                for codec in labels:
                    for rate in rates[:1] if search else rates:
                        label = "max" if search else f"{rate:g}Hz"
                        key = (name, backend, codec, chunking.label, str(count), label)
                        items.append((name, backend, codec, chunking, rate, count, key))
    return items


def _run_item(
    client: Client,
    spec: CellSpec,
    rate: float,
    opts: AcquisitionOptions,
    scratch: Path,
    sums: dict[Any, Any],
    search: bool,
) -> AcquisitionRecord:
    """One paced cell, or one max-rate search, as one record."""
    reason = check_runs(spec)
    if reason:
        return spec.record("max" if search else f"{rate:g}Hz", status="unavailable", error=reason)
    warm_up(client, spec)
    if not search:
        frames = None if opts.frames is None and opts.duration is None else _frames(opts, rate)
        return paced_cell(client, spec, rate, opts, frames, scratch, sums)

    seconds = opts.duration or opts.min_seconds

    def trial(r: float) -> AcquisitionRecord:
        frames = math.ceil(r * seconds) if opts.frames is None else min(opts.frames, math.ceil(r * seconds))
        return paced_cell(client, spec, r, opts, frames, scratch, sums)

    available = spec.staged.shape[0] * spec.staged.shape[1]
    cap = min(available, opts.frames or available) / seconds  # above it a trial is shorter than `seconds`
    best, trials = find_max(trial, rate, opts.trials, cap=cap)
    bad = [t for t in trials if t.status != "ok"]
    # never missed (the search ran out of trials going up), or kept up at the source's steady-state limit
    bounded = all(t.kept_up for t in trials) or best >= cap
    return spec.record(
        "max",
        status=bad[0].status if bad else "ok",
        error=bad[0].error if bad else "",
        max_frame_rate=best,
        max_GBps=best * spec.frame_bytes / 1e9,
        trial_rates=[t.requested_rate for t in trials],
        trial_kept_up=[t.kept_up for t in trials],
        frame_bytes=spec.frame_bytes,
        verified=not bad,
        chunk_shape=list(spec.chunking.shape),
        max_is_lower_bound=bounded,
        criterion=f"{CRITERION}; trials of >= {opts.duration or opts.min_seconds:g} s (or the whole scan)",
    )


def _frames(opts: AcquisitionOptions, rate: float) -> int:
    limits = [opts.frames] if opts.frames is not None else []
    if opts.duration is not None:
        limits.append(math.ceil(rate * opts.duration))
    return min(limits)
