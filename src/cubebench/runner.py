"""Expand an experiment into cells and run them on a Dask cluster: write, size, read, verify, clean up.

Cells are ``dataset x backend x codec x chunk x run``, interleaved so that run ``k`` of every cell finishes
before run ``k+1`` of any (slow drifts of a shared machine then spread over the whole grid). Each finished cell
is appended to the results log at once; ``resume=True`` skips the cells already in it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends import Backend, PatternRead, WriteSettings, get_backend
from cubebench.backends.base import drop_page_cache, stored_bytes
from cubebench.chunking import chunk_name, resolve_chunks
from cubebench.cluster import cluster_description, open_client, reset_worker_peaks, worker_peaks_outside
from cubebench.codecs import CodecSpec, get_codec
from cubebench.cube import Cube, StagedCube, grid_counts
from cubebench.errors import (
    ClusterError,
    CodecUnavailableError,
    ConfigError,
    CubebenchError,
    ResultsError,
    one_line,
)
from cubebench.estimate import CodecSpeed, estimate_cell_seconds, measure_speed, sample_frames
from cubebench.experiment import (
    Experiment,
    check_no_source_options,
    default_experiment_path,
    experiment_from_path,
    load_experiment,
    override_experiment,
    parse_experiment,
)
from cubebench.jsonlog import read_json, write_json
from cubebench.memory import PeakMemory
from cubebench.provenance import node_facts, provenance
from cubebench.results import LOG_FILE, CellResult, ResultsLog, records_to_dataset, save_results
from cubebench.sources import open_cube, source_kind
from cubebench.staging import (
    needs_layout,
    reusable_npy,
    source_checksums,
    source_pattern,
    stage_cube,
    stage_layout,
    staged_stats,
)
from cubebench.sufficiency import finish_sufficiency, run_sufficiency

if TYPE_CHECKING:
    from collections.abc import Sequence

    import xarray as xr
    from distributed import Client

DATASETS_FILE = "datasets.json"
EXPERIMENT_FILE = "experiment.json"
#: ``layout: auto`` stages a chunk-major copy of a chunking once at least this many cells read its blocks.
#: Measured here per GiB: the copy costs about 0.7 s plus its fsync (about 2 s), and each write reading from it
#: saves about 0.4 s of gathering, so it repays itself after 7 writes.
LAYOUT_MIN_CELLS = 8


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: which data, which storage path, codec and chunking, which repeat."""

    dataset: str
    backend: str
    codec: str
    chunk: str | tuple[int, ...]
    run: int

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """Coordinates as stored in results."""
        return (self.dataset, self.backend, self.codec, chunk_name(self.chunk), self.run)

    @property
    def label(self) -> str:
        """File-name-safe identifier."""
        return "_".join(str(k) for k in self.key).replace("/", "_")


def plan_cells(experiment: Experiment, dataset_names: list[str]) -> list[Cell]:
    """All cells, runs outermost (interleaved), then dataset, backend, codec, chunk."""
    return [
        Cell(name, backend, codec, chunk, run)
        for run in range(experiment.runs)
        for name in dataset_names
        for backend in experiment.backends
        for codec in experiment.codecs
        for chunk in experiment.chunks
    ]


def coerce_experiment(
    experiment: Experiment | Mapping[str, Any] | str | os.PathLike[str] | None,
    *,
    dataset: str | None = None,
    scan_shape: Sequence[int] | None = None,
    **overrides: Any,
) -> Experiment:
    """Accept an Experiment, a mapping, a YAML path, a data file or store (the quick experiment's matrix on it), or
    None (the shipped quick experiment); ``overrides`` (codecs, backends, chunks, runs) replace its values and
    ``dataset``/``scan_shape`` describe a data file (see :func:`cubebench.experiment.experiment_from_path`)."""
    if isinstance(experiment, (str, os.PathLike)):
        kind = source_kind(experiment)
        return experiment_from_path(experiment, kind, dataset=dataset, scan_shape=scan_shape, **overrides)
    check_no_source_options("the quick experiment" if experiment is None else "the experiment", dataset, scan_shape)
    if experiment is None:
        exp = load_experiment(default_experiment_path())
    elif isinstance(experiment, Mapping):
        exp = parse_experiment(experiment)
    else:
        exp = experiment
    return override_experiment(exp, **overrides)


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
    exp = coerce_experiment(
        experiment, codecs=codecs, backends=backends, chunks=chunks, runs=runs, dataset=dataset, scan_shape=scan_shape
    )
    if scale is not None:
        exp = rescale(exp, scale)
    folder = Path(out) if out is not None else Path("results") / exp.name
    cubes = open_sources(exp)
    specs = {cid: get_codec(cid) for cid in exp.codecs}
    stores = {name: get_backend(name) for name in exp.backends}
    for cube in cubes.values():
        for chunk in exp.chunks:
            resolve_chunks(chunk, cube.info.shape)
    again = _retry_statuses(retry, resume)
    fresh = not folder.exists()
    log = _prepare_output(folder, resume)
    done = {cell.key for cell in log.read() if cell.status not in again}
    todo = [cell for cell in plan_cells(exp, list(cubes)) if cell.key not in done]
    info = read_json(folder / DATASETS_FILE)
    scratch = _work_folder(exp.scratch, exp.name, "scratch")
    try:
        staging = scratch / "staged" if exp.staging is None else _work_folder(exp.staging, exp.name, "staging")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    cluster_info: dict[str, Any] = {}
    interrupted, started, lost = False, False, None
    try:
        with _sigterm_as_interrupt(), open_client(exp.cluster, exp.zarr.concurrency) as client:
            cluster_info = {**cluster_description(client, exp.cluster), "nodes": node_facts(client)}
            session = _Session(client, exp, scratch, specs, stores, cluster_info, staging)
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
    except ClusterError as exc:  # the cluster went away mid-run: save what finished, then say so
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
            raise Interrupted(folder, 0, len(plan_cells(exp, list(cubes))), experiment)
        raise lost or ResultsError("no cells to run")
    attrs = provenance(exp, cluster_info)
    ds = records_to_dataset(cells, info, attrs)
    save_results(ds, folder)
    if exp.representations:
        finish_sufficiency(folder, exp, attrs)
    if interrupted or lost:
        missing = len(plan_cells(exp, list(cubes))) - len(cells)
        if lost:
            raise ClusterError(
                f"{lost}; {len(cells)} finished cells saved in {folder}, {missing} missing; "
                f"finish with: {_resume_command(folder, experiment)}"
            )
        raise Interrupted(folder, len(cells), missing, experiment)
    return ds


def not_run(
    exp: Experiment, backend: Backend, codec: CodecSpec, dtype: str, chunk: str, estimate: float
) -> tuple[str, str] | None:
    """Why a cell would not run, as ``(status, reason)``: ``unavailable`` (the backend cannot store the codec or
    dtype, or stores the whole array and the chunking is not the first), ``skipped`` (estimated over
    ``max_cell_seconds``); None when it runs."""
    try:
        backend.check(codec, np.dtype(dtype))
    except CodecUnavailableError as exc:
        return "unavailable", str(exc)
    if not backend.chunked and chunk in exp.chunk_labels[1:]:
        first = exp.chunk_labels[0]
        return (
            "unavailable",
            f"{backend.name} stores the whole array; chunking does not apply (measured under {first!r})",
        )
    budget = exp.max_cell_seconds
    if budget is not None and np.isfinite(estimate) and estimate > budget:
        return "skipped", f"estimated {estimate:.0f} s > max_cell_seconds {budget:g}"
    return None


def cell_seconds(
    backend: Backend,
    chunk: str | tuple[int, ...],
    shape: tuple[int, ...],
    nbytes: int,
    speed: CodecSpeed | None,
    threads: int,
    settings: WriteSettings,
) -> float:
    """The estimate of one run of a cell: its bytes at ``speed`` on the threads ``backend`` uses (one for the HDF5
    filter path), plus what its stored chunks cost (:func:`cubebench.estimate.estimate_cell_seconds`)."""
    block = backend.storage_block(resolve_chunks(chunk, shape), settings)
    parallel = threads if backend.parallel else 1
    chunks = math.prod(grid_counts(shape, block))
    return estimate_cell_seconds(nbytes, speed, parallel, chunks, backend.chunk_seconds)


def layout_pays(exp: Experiment, shape: tuple[int, ...], block: tuple[int, ...], reads: int) -> bool:
    """Whether cells that read blocks of ``block`` (``reads`` of them over the run) get a chunk-major copy of the
    cube: ``layout: chunked`` always, ``auto`` when the blocks are scattered and enough cells read them."""
    if exp.layout == "source" or not needs_layout(shape, block):
        return False
    return exp.layout == "chunked" or reads >= LAYOUT_MIN_CELLS


def rescale(exp: Experiment, factor: float) -> Experiment:
    """``exp`` with every synthetic preset's scan scaled by ``factor`` (files are left as they are)."""
    if not 0 < factor <= 1:
        raise ConfigError(f"--scale must be in (0, 1], got {factor}")
    datasets = tuple(
        {**entry, "scale": float(entry.get("scale", 1.0)) * factor} if "preset" in entry else entry
        for entry in exp.datasets
    )
    return replace(exp, datasets=datasets)


class Interrupted(CubebenchError):
    """Ctrl-C or SIGTERM: finished cells are saved; the message says how to resume."""

    exit_code = 130

    def __init__(self, folder: Path, finished: int, missing: int, experiment: Any = None) -> None:
        if not finished:
            super().__init__(f"interrupted before any cell finished; nothing saved in {folder}")
            return
        super().__init__(
            f"interrupted: {finished} finished cells saved in {folder}, {missing} missing; "
            f"finish with: {_resume_command(folder, experiment)}"
        )


def _resume_command(folder: Path, experiment: Any) -> str:
    """The command line that finishes a run (the experiment's path when it came from a file)."""
    source = os.fspath(experiment) if isinstance(experiment, (str, os.PathLike)) else "EXPERIMENT"
    return f"cubebench run {source} --out {folder} --resume"


class _Session:
    """The state of one run on one cluster: staged cubes, their checksums, codec speeds."""

    def __init__(
        self,
        client: Client,
        exp: Experiment,
        scratch: Path,
        codecs: dict[str, CodecSpec],
        backends: dict[str, Backend],
        cluster_info: dict[str, Any],
        staging: Path | None = None,
    ) -> None:
        self.client, self.exp, self.scratch = client, exp, scratch
        self.staging = staging or scratch / "staged"
        self.codecs, self.backends, self.cluster_info = codecs, backends, cluster_info
        self.staged: dict[str, StagedCube] = {}
        self.layouts: dict[tuple[Path, tuple[int, ...]], StagedCube] = {}
        #: Cells of the plan whose write reads the staged blocks, per (dataset, chunk): what a copy would serve.
        self.block_reads: Counter[tuple[str, str | tuple[int, ...]]] = Counter()
        self.source: dict[tuple[str, tuple[int, ...]], tuple[dict[tuple[int, ...], int], float]] = {}
        #: Why hashing the source failed, per (dataset, storage block): the later cells fail without another pass.
        self.source_failed: dict[tuple[str, tuple[int, ...]], str] = {}
        self.speeds: dict[tuple[str, str], CodecSpeed | None] = {}
        self.patterns: dict[tuple[str, str], int] = {}
        self.settings = WriteSettings(exp.zarr.write_empty_chunks, exp.zarr.shards)
        self.threads = max(1, int(cluster_info.get("total_threads", 1)))

    def stage(self, cube: Cube) -> StagedCube:
        """Stage ``cube`` once into the staging folder; a source that fails to read is a :class:`DatasetError`."""
        self.staging.mkdir(exist_ok=True)
        in_place = reusable_npy(cube.info.source, cube.info.name) if cube.info.kind == "npy" else None
        if in_place is not None:
            self.staged[cube.info.name] = in_place
            return in_place
        self.staged[cube.info.name] = stage_cube(self.client, cube, self.staging)
        return self.staged[cube.info.name]

    def use_layout(self, cell: Cell, backend: Backend, staged: StagedCube, block: tuple[int, ...]) -> bool:
        """Whether ``cell``'s write reads a chunk-major copy (experiment ``layout``; ``auto``: when it repays)."""
        reads = self.block_reads[(cell.dataset, cell.chunk)]
        return backend.reads_blocks and layout_pays(self.exp, staged.shape, block, reads)

    def chunk_major(self, staged: StagedCube, block: tuple[int, ...]) -> StagedCube:
        """``staged`` reading blocks of ``block`` from its chunk-major copy, staged on first use."""
        key = (staged.path, block)
        if key not in self.layouts:
            self.staging.mkdir(exist_ok=True)
            self.layouts[key] = stage_layout(self.client, staged, block, self.staging)
        return self.layouts[key]

    def warm_up(self, cube: Cube) -> None:
        """Run every backend x codec once on a small corner of the first cube, untimed and unrecorded."""
        corner = cube.data[: min(2, cube.data.shape[0]), : min(2, cube.data.shape[1])]
        info = replace(cube.info, name=f"warmup-{cube.info.name}", shape=tuple(corner.shape), kind="warmup")
        small = Cube(corner, info)
        staged = self.stage(small)
        for backend in self.backends.values():
            for codec in self.codecs.values():
                cell = Cell(small.info.name, backend.name, codec.id, tuple(staged.shape), 0)
                self.run_cell(cell, staged)

    def execute(self, todo: list[Cell], log: ResultsLog, progress: bool) -> None:
        """Run ``todo`` in order, appending each result to ``log`` as it finishes."""
        from tqdm import tqdm

        self.block_reads.update((c.dataset, c.chunk) for c in todo if self.backends[c.backend].reads_blocks)
        estimates = {cell: self.estimate(cell) for cell in todo}
        known = [e for e in estimates.values() if np.isfinite(e)]
        fallback = float(np.median(known)) if known else 1.0
        weight = {cell: (e if np.isfinite(e) else fallback) for cell, e in estimates.items()}
        bar = tqdm(
            total=sum(weight[cell] for cell in todo),  # summed in the order the updates add up: ends exactly full
            unit="est-s",
            disable=not progress,
            file=sys.stderr,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} est-s [{elapsed}<{remaining}] {postfix}",
        )
        try:
            for done, cell in enumerate(todo, 1):
                if _STOP.is_set():  # an interrupt that was swallowed on its way up
                    raise KeyboardInterrupt
                bar.set_postfix_str(f"{done}/{len(todo)} {cell.label}")
                result = self.run_whole(cell, self.staged[cell.dataset], estimates[cell])
                log.append(result)
                bar.update(weight[cell])
        finally:
            bar.close()

    def run_whole(self, cell: Cell, staged: StagedCube, estimate: float = float("nan")) -> CellResult:
        """Run ``cell`` on the whole cluster; when a worker is lost meanwhile, run it once more.

        Distributed reruns a lost worker's tasks, so the data still verify, but the timings would include the
        loss and the restart: the cell is run again from scratch. A loss in the second attempt too discards the
        timings (status ``failed``, the reason says why). Every cell still gives exactly one result.
        """
        for attempt in (1, 2):
            before = self.wait_for_workers()
            result = replace(self.run_cell(cell, staged, estimate), workers=len(before))
            if result.status == "failed" and self.client.status != "running":
                raise ClusterError(f"lost the Dask cluster during cell {cell.label} ({result.reason})")
            lost = before - self.worker_addresses()
            if not lost:
                note = "" if attempt == 1 else "ok on the second attempt: a worker was lost during the first"
                return replace(result, reason=result.reason or note)
        nan = float("nan")
        why = f"a worker was lost during both attempts; timings discarded (second attempt: {result.status}"
        why += f": {result.reason})" if result.reason else ")"
        return replace(result, status="failed", reason=why, write_seconds=nan, read_seconds=nan, extra={})

    def worker_addresses(self) -> set[str]:
        """Addresses of the workers the scheduler knows now (a restarted worker gets a new one)."""
        return set(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def wait_for_workers(self) -> set[str]:
        """The workers' addresses, after waiting up to ``cluster.timeout`` for lost workers to be replaced."""
        wanted = max(1, int(self.cluster_info.get("workers", 1)))
        addresses = self.worker_addresses()
        if len(addresses) < wanted:
            with contextlib.suppress(TimeoutError):
                self.client.wait_for_workers(wanted, timeout=self.exp.cluster.timeout)
            addresses = self.worker_addresses()
            if not addresses:
                raise ClusterError(f"no Dask workers left (waited {self.exp.cluster.timeout:g} s for new ones)")
        return addresses

    def estimate(self, cell: Cell) -> float:
        """Estimated seconds for ``cell`` (NaN when the codec has no in-process encoder)."""
        staged = self.staged[cell.dataset]
        key = (cell.dataset, cell.codec)
        if key not in self.speeds:
            self.speeds[key] = measure_speed(self.codecs[cell.codec], sample_frames(staged))
        backend = self.backends[cell.backend]
        return cell_seconds(
            backend, cell.chunk, staged.shape, staged.nbytes, self.speeds[key], self.threads, self.settings
        )

    def run_cell(self, cell: Cell, staged: StagedCube, estimate: float = float("nan")) -> CellResult:
        """Write, size, read and verify one cell; never raises for a codec or I/O failure."""
        backend, codec = self.backends[cell.backend], self.codecs[cell.codec]
        chunks = resolve_chunks(cell.chunk, staged.shape)
        result = CellResult(
            dataset=cell.dataset,
            backend=cell.backend,
            codec=cell.codec,
            chunk=chunk_name(cell.chunk),
            run=cell.run,
            chunk_shape="x".join(str(c) for c in chunks),
            source_bytes=staged.nbytes,
            estimate_seconds=estimate,
            workers=int(self.cluster_info.get("workers", 0)),
            threads_per_worker=self.exp.cluster.threads_per_worker,
            codec_threads=self.exp.cluster.codec_threads,
            cache=self.exp.cache,
            write_empty_chunks=self.settings.write_empty_chunks,
            sharded=self.settings.shards and backend.shardable,
            worker_processes=bool(self.cluster_info.get("processes", True)),
            started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        verdict = not_run(self.exp, backend, codec, staged.dtype, result.chunk, estimate)
        if verdict is not None:
            return replace(result, status=verdict[0], reason=verdict[1])
        block = backend.storage_block(chunks, self.settings)
        source_key = (cell.dataset, block)
        if source_key not in self.source and source_key not in self.source_failed:
            try:
                self.source[source_key] = source_checksums(self.client, staged, block)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the source's hashes, which every cell of this chunking needs
                why = f"hashing the source's chunks failed ({_failure_reason(exc, self.scratch)})"
                self.source_failed[source_key] = why
        if source_key in self.source_failed:
            return replace(result, status="failed", reason=self.source_failed[source_key])
        expected, source_seconds = self.source[source_key]
        if self.use_layout(cell, backend, staged, block):
            try:
                staged = self.chunk_major(staged, block)
            except (OSError, CubebenchError) as exc:
                why = f"staging the chunk-major copy failed ({one_line(exc)}); try 'layout: source'"
                return replace(result, status="failed", reason=why)
            result = replace(result, chunk_major=True)
        target = self.scratch / f"{cell.label}{backend.suffix}"
        try:
            reset_worker_peaks(self.client)
            with PeakMemory() as memory:
                start = time.perf_counter()
                backend.write(self.client, staged, codec, chunks, target, self.settings)
                write_seconds = time.perf_counter() - start
                size = stored_bytes(target)
                if self.exp.cache == "cold":
                    drop_page_cache(target)
                start = time.perf_counter()
                back = backend.read(self.client, target, chunks, self.settings)
                read_seconds = time.perf_counter() - start
            peak = memory.peak + worker_peaks_outside(self.client, memory.pids)
            pattern_reads = [self.read_pattern(backend, target, p, chunks) for p in self.exp.access_patterns]
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # any failure of a codec path is a result, not a crash
            return replace(result, status="failed", reason=_failure_reason(exc, self.scratch))
        finally:
            _remove(target)
        result = replace(
            result,
            stored_bytes=size,
            peak_memory_bytes=peak,
            n_chunks=len(expected),
            source_read_seconds=source_seconds,
        )
        mismatch = _first_mismatch(expected, back.checksums) or self.pattern_mismatch(staged, pattern_reads)
        if mismatch:
            return replace(result, status="unverified", reason=mismatch)
        extra = {**result.extra, **{f"read_{r.pattern}_seconds": r.seconds for r in pattern_reads}}
        return replace(
            result, status="ok", verified=True, write_seconds=write_seconds, read_seconds=read_seconds, extra=extra
        )

    def read_pattern(self, backend: Backend, target: Path, pattern: str, chunks: tuple[int, ...]) -> PatternRead:
        """One timed access-pattern read of ``target`` (after dropping its cached pages when the cache is cold)."""
        if self.exp.cache == "cold":
            drop_page_cache(target)
        return backend.read_pattern(self.client, target, pattern, chunks, self.settings)

    def pattern_mismatch(self, staged: StagedCube, reads: list[PatternRead]) -> str:
        """Why a pattern read differs from the same selection of the staged source ('' when none does)."""
        for read in reads:
            key = (str(staged.path), read.pattern)
            if key not in self.patterns:
                self.patterns[key] = source_pattern(self.client, staged, read.pattern).checksum
            if read.checksum != self.patterns[key]:
                return f"the {read.pattern} access-pattern read differs from the source"
        return ""


def _first_mismatch(expected: dict[tuple[int, ...], int], got: dict[tuple[int, ...], int]) -> str:
    if set(expected) != set(got):
        missing = sorted(set(expected) - set(got))
        return f"{len(missing)} chunks missing from the read-back, first {missing[:1]}"
    bad = [index for index in expected if expected[index] != got[index]]
    if bad:
        return f"{len(bad)} of {len(expected)} chunks differ from the source, first at chunk {bad[0]}"
    return ""


def _failure_reason(exc: BaseException, scratch: Path) -> str:
    """One line saying why a cell failed; a full scratch disk is named as such (HDF5 buries errno 28 deep)."""
    text = one_line(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28" in text or "No space left" in text:
        return f"ENOSPC: no space left on device in scratch {scratch.parent} ({text})"[:500]
    return text


def _remove(target: Path) -> None:
    """Delete ``target``, truncating its files first: a writer that failed (a full disk) may still hold them open,
    and an open file's space is freed only by truncation, not by unlinking."""
    files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    for path in files:
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()


#: Marks a scratch or staging folder with the host and pid of the run that owns it.
OWNER_FILE = ".cubebench-owner"


def _work_folder(parent: str | None, name: str, key: str) -> Path:
    """A fresh folder for this run under ``parent`` (default: the system's temporary folder).

    Folders left behind by runs on this host that were killed (SIGKILL leaves no chance to clean up) are
    removed first.
    """
    base = Path(os.path.expandvars(parent)).expanduser() if parent is not None else Path(tempfile.gettempdir())
    try:
        base.mkdir(parents=True, exist_ok=True)
        _remove_stale(base)
        folder = Path(tempfile.mkdtemp(prefix=f"cubebench-{name}-", dir=base))
        (folder / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    except OSError as exc:
        raise ConfigError(f"{key} folder {base} is not usable: {exc.strerror or exc}") from None
    return folder


def _remove_stale(base: Path) -> None:
    """Remove ``cubebench-*`` folders in ``base`` whose owning process on this host has died."""
    for folder in base.glob("cubebench-*"):
        try:
            host, pid = (folder / OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue
        if host == socket.gethostname() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Statuses a resumed run may run again (``ok`` cells are kept; ``unavailable`` ones cannot change).
RETRYABLE = ("failed", "unverified", "skipped")


def _retry_statuses(retry: Iterable[str], resume: bool) -> frozenset[str]:
    """The statuses to run again, checked: each one retryable, and only together with ``resume``."""
    statuses = frozenset(retry)
    unknown = sorted(statuses - set(RETRYABLE))
    if unknown:
        raise ConfigError(f"retry: {unknown[0]!r} is not a status to retry (choose from {', '.join(RETRYABLE)})")
    if statuses and not resume:
        raise ConfigError("retry re-runs cells of an earlier run: use it together with --resume")
    return statuses


def _prepare_output(folder: Path, resume: bool) -> ResultsLog:
    log = ResultsLog(folder / LOG_FILE)
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"results folder {folder} is a file; choose another --out")
    if log.path.exists() and not resume:
        raise ConfigError(f"results already exist in {folder}; add --resume to finish them, or choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ResultsError(f"results folder {folder} is not writable: {exc.strerror or exc}") from None
    return log


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


#: Set by Ctrl-C or SIGTERM during a run and checked before each cell: the KeyboardInterrupt the handler raises
#: can land in a finalizer or weakref callback, where Python prints and drops it instead of propagating it.
_STOP = threading.Event()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a batch system's kill still saves and cleans up; lose neither."""

    levels: dict[str, int] = {}

    def handler(signum: int, frame: Any) -> None:
        if not _STOP.is_set():
            _STOP.set()
            # the interrupt lands inside distributed's calls: their errors while the cluster closes are expected
            for name in list(logging.root.manager.loggerDict):
                if name.split(".")[0] in ("distributed", "tornado"):
                    levels[name] = logging.getLogger(name).level
                    logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise KeyboardInterrupt

    def unraisable(info: Any) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) or _STOP.is_set():  # dropped by a finalizer, or collateral
            _STOP.set()
        else:
            hook(info)

    _STOP.clear()
    hook = sys.unraisablehook
    try:
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for signum, old in previous.items():
            signal.signal(signum, old)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
