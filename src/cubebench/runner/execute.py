"""Run an experiment: open its sources, start the cluster, run every missing cell, save the results.

Each finished cell is appended to the results log at once; ``resume=True`` skips the cells already in it, and
Ctrl-C, SIGTERM, a lost cluster or an S3 endpoint that stops answering keep every finished cell.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cubebench.backends import get_backend
from cubebench.chunking import Chunking
from cubebench.cluster import cluster_description, open_client
from cubebench.codecs import get_codec
from cubebench.errors import (
    ClusterError,
    ConfigError,
    ResultsError,
)
from cubebench.jsonlog import read_json, write_json
from cubebench.results import records_to_dataset, save_results
from cubebench.runner.cells import plan_cells, rescale
from cubebench.runner.inputs import coerce_experiment
from cubebench.runner.provenance import node_facts, provenance
from cubebench.runner.session import Session
from cubebench.runner.storages import StorageLost, open_storages
from cubebench.runner.workspace import (
    Interrupted,
    prepare_output,
    resume_command,
    retry_statuses,
    sigterm_as_interrupt,
    work_folder,
)
from cubebench.sources import open_cube
from cubebench.staging import (
    staged_stats,
)
from cubebench.sufficiency.run import finish_sufficiency, run_sufficiency

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping, Sequence

    import xarray as xr

    from cubebench.cube import Cube
    from cubebench.experiment import Experiment

DATASETS_FILE = "datasets.json"


EXPERIMENT_FILE = "experiment.json"


def run(
    experiment: Experiment | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    retry: Iterable[str] = (),
    progress: bool = True,
    scale: float | None = None,
    codecs: str | Sequence[str] | None = None,
    backends: str | Sequence[str] | None = None,
    chunks: str | Sequence[str | Sequence[int]] | None = None,
    runs: int | None = None,
    dataset: str | None = None,
    scan_shape: Sequence[int] | None = None,
) -> xr.Dataset:
    """Run an experiment and return its results Dataset (also saved in ``out``).

    Parameters
    ----------
    experiment
        An :class:`Experiment`, a mapping shaped like the YAML, a YAML path, a data file or store (EMD/HDF5, Zarr,
        ``.npy``, ``.mib``: the quick experiment's matrix on it, results in ``results/<file stem>``), or None for
        the quick experiment.
    out
        Results folder (default ``results/<name>``); holds ``cells.jsonl`` (the log), ``results.nc``,
        ``results.csv``.
    resume
        Run only the cells missing from ``out``'s log. Without it, an existing log is an error, so that earlier
        results are never overwritten.
    retry
        With ``resume``: statuses (``failed``, ``unverified``, ``skipped``) whose cells run again, e.g. after
        freeing disk space or raising ``max_cell_seconds``; the new result replaces the old one.
    progress
        Show a progress bar with an ETA on stderr.
    scale
        Multiply every preset's ``scale`` by this factor (shrinks the scans of a full-size experiment).
    codecs, backends, chunks, runs
        Replace the experiment's values (validated as in the YAML; chunks may be ``"sy,sx,dy,dx"`` strings).
    dataset, scan_shape
        For a data file: the array's in-file path (HDF5/Zarr), the scan shape of a frame stack (``.mib``).
    """
    options: dict[str, Any] = {"codecs": codecs, "backends": backends, "chunks": chunks, "runs": runs}
    options |= {"dataset": dataset, "scan_shape": scan_shape}  # also named in the resume command
    exp = coerce_experiment(experiment, **options)
    if scale is not None:
        exp = rescale(exp, scale)
    folder = Path(out) if out is not None else Path("results") / exp.name
    cubes = open_sources(exp)
    specs = {cid: get_codec(cid) for cid in exp.codecs}
    stores = {name: get_backend(name) for name in exp.backends}
    for cube in cubes.values():  # every chunking must fit every cube before anything runs
        for chunk in exp.chunks:
            Chunking.resolve(chunk, cube.info.shape)
    again = retry_statuses(retry, resume)
    fresh = not folder.exists()
    log = prepare_output(folder, resume)
    done = {cell.key for cell in log.read() if cell.status not in again}
    todo = [cell for cell in plan_cells(exp, list(cubes)) if cell.key not in done]
    info = read_json(folder / DATASETS_FILE)
    scratch = work_folder(exp.scratch, exp.name, "scratch")
    try:
        staging = scratch / "staged" if exp.staging is None else work_folder(exp.staging, exp.name, "staging")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    cluster_info: dict[str, Any] = {}
    interrupted, started, lost = False, False, None
    try:
        with (
            sigterm_as_interrupt(),
            open_storages(exp, scratch) as storages,
            open_client(exp.cluster, exp.zarr.concurrency) as client,
        ):
            cluster_info = {**cluster_description(client, exp.cluster), "nodes": node_facts(client)}
            session = Session(client, exp, scratch, specs, stores, cluster_info, staging, storages)
            started = True
            needed = {cell.dataset for cell in todo} | {name for name in cubes if name not in info}
            for name in cubes:  # a source that fails only when read is a bad input too: nothing written before
                if name in needed:
                    staged = session.stage(cubes[name])
                    info[name] = {**cubes[name].info.to_dict(), **staged_stats(client, staged).to_dict(), "name": name}
            (folder / EXPERIMENT_FILE).write_text(json.dumps(exp.to_dict(), indent=1, default=str))
            write_json(folder / DATASETS_FILE, info)
            if todo and exp.warmup:
                session.warm_up(next(iter(cubes.values())))
            session.execute(todo, log, progress)
            if exp.representations:  # inference sufficiency: representations scored by their targets' errors
                run_sufficiency(client, exp, cubes, session.staged, scratch, folder, progress, stage=session.stage)
    except KeyboardInterrupt:
        interrupted = True
    except (ClusterError, StorageLost) as exc:  # the cluster or an S3 endpoint went away: save what finished, say so
        if not started:
            raise
        lost = exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        if fresh:  # a results folder this run created and left empty (it stopped on a bad input) goes too
            with contextlib.suppress(OSError):
                folder.rmdir()
    cells = log.read()
    if not cells:
        if interrupted:
            raise Interrupted(folder, 0, len(plan_cells(exp, list(cubes))), experiment, options)
        raise lost or ResultsError("no cells to run")
    attrs = provenance(exp, cluster_info)
    ds = records_to_dataset(cells, info, attrs)
    save_results(ds, folder)
    if exp.representations:
        finish_sufficiency(folder, exp, attrs)
    if interrupted or lost:
        missing = len(plan_cells(exp, list(cubes))) - len(cells)
        if lost:
            raise type(lost)(
                f"{lost}; {len(cells)} finished cells saved in {folder}, {missing} missing; "
                f"finish with: {resume_command(folder, experiment, options)}"
            )
        raise Interrupted(folder, len(cells), missing, experiment, options)
    return ds


def open_sources(exp: Experiment) -> dict[str, Cube]:
    """Open every dataset of ``exp`` lazily, by name; two datasets of one name are a :class:`ConfigError`."""
    cubes: dict[str, Cube] = {}
    for entry in exp.datasets:
        cube = open_cube(entry)
        name = cube.info.name
        if name in cubes:
            raise ConfigError(f"two datasets are both named {name!r}; give one a 'name:'")
        cubes[name] = cube
    return cubes
