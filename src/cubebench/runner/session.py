"""One cell at a time on a running cluster: stage, write, size, read, verify, clean up, log.

A :class:`Session` holds what the cells of one run share (the client, staged sources, chunk-major copies, the
source's per-chunk hashes) and runs each cell, timing write and read and verifying every chunk.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import sys
import time
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cluster import reset_worker_peaks, worker_peaks_outside
from cubebench.cube import Cube, StagedCube
from cubebench.errors import (
    ClusterError,
    CubebenchError,
    one_line,
)
from cubebench.fileio import drop_page_cache, remove, stored_bytes
from cubebench.memory import PeakMemory
from cubebench.results import CellResult, ResultsLog
from cubebench.runner.cells import Cell, cell_seconds, chunking_for, layout_pays, not_run, write_settings
from cubebench.runner.estimate import CodecSpeed, measure_speed, sample_frames
from cubebench.runner.remote import S3Cell, count_fields, local_fields
from cubebench.runner.storages import StorageLost, storage_down
from cubebench.runner.workspace import stop_if_interrupted
from cubebench.staging import (
    reusable_npy,
    source_checksums,
    source_pattern,
    stage_cube,
    stage_layout,
)
from cubebench.storage import LocalStorage, S3Storage
from cubebench.verify import first_mismatch

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.backends import Backend, PatternRead
    from cubebench.chunking import Chunking
    from cubebench.codecs import CodecSpec
    from cubebench.experiment import Experiment
    from cubebench.storage import StorageSpec


class Session:
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
        storages: dict[str, StorageSpec] | None = None,
    ) -> None:
        self.client, self.exp, self.scratch = client, exp, scratch
        #: Storage label -> its spec, resolved for this run (an S3 spec rooted at the run's own prefix).
        self.storages: dict[str, StorageSpec] = storages or {"local": LocalStorage()}
        self.staging = staging or scratch / "staged"
        self.codecs, self.backends, self.cluster_info = codecs, backends, cluster_info
        self.staged: dict[str, StagedCube] = {}
        self.layouts: dict[tuple[Path, tuple[int, ...]], StagedCube] = {}
        self.chunkings: dict[tuple[str, str, str], Chunking] = {}
        #: Cells of the plan whose write reads the staged blocks, per (dataset, chunk): what a copy would serve.
        self.block_reads: Counter[tuple[str, str | tuple[int, ...]]] = Counter()
        self.source: dict[tuple[str, tuple[int, ...]], tuple[dict[tuple[int, ...], int], float]] = {}
        #: Why hashing the source failed, per (dataset, storage block): the later cells fail without another pass.
        self.source_failed: dict[tuple[str, tuple[int, ...]], str] = {}
        self.speeds: dict[tuple[str, str], CodecSpeed | None] = {}
        self.patterns: dict[tuple[str, str], int] = {}
        self.settings = write_settings(exp)
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
        for storage in self.storages:
            for backend in self.backends.values():
                for codec in self.codecs.values():
                    cell = Cell(small.info.name, backend.name, codec.id, tuple(staged.shape), 0, storage)
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
        down: dict[str, str] = {}  # storage label -> why it stopped answering
        not_run: Counter[str] = Counter()
        try:
            for done, cell in enumerate(todo, 1):
                stop_if_interrupted()
                bar.set_postfix_str(f"{done}/{len(todo)} {cell.label}")
                if cell.storage not in down:
                    result = self.run_whole(cell, self.staged[cell.dataset], estimates[cell])
                    why = storage_down(self.storages[cell.storage]) if result.status == "failed" else ""
                    if why:  # not the cell's fault: left missing, for --resume once the storage is back
                        down[cell.storage] = why
                    else:
                        log.append(result)
                if cell.storage in down:
                    not_run[cell.storage] += 1
                bar.update(weight[cell])
        finally:
            bar.close()
        if down:
            raise StorageLost(
                "; ".join(f"{why} (storage {label}: {not_run[label]} cells not run)" for label, why in down.items())
            )

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
        chunking = self.chunking(cell, staged.shape)
        return cell_seconds(backend, chunking, staged.shape, staged.nbytes, self.speeds[key], self.threads)

    def chunking(self, cell: Cell, shape: tuple[int, ...]) -> Chunking:
        """``cell``'s chunking, resolved once per dataset, backend and chunking for the whole run."""
        key = (cell.dataset, cell.backend, cell.key[3])
        if key not in self.chunkings:
            self.chunkings[key] = chunking_for(self.backends[cell.backend], cell.chunk, shape, self.settings)
        return self.chunkings[key]

    def run_cell(self, cell: Cell, staged: StagedCube, estimate: float = float("nan")) -> CellResult:
        """Write, size, read and verify one cell; never raises for a codec or I/O failure."""
        backend, codec = self.backends[cell.backend], self.codecs[cell.codec]
        chunking = self.chunking(cell, staged.shape)
        chunks = chunking.shape
        result = CellResult(
            dataset=cell.dataset,
            backend=cell.backend,
            codec=cell.codec,
            chunk=chunking.label,
            run=cell.run,
            chunk_shape="x".join(str(c) for c in chunks),
            source_bytes=staged.nbytes,
            estimate_seconds=estimate,
            workers=int(self.cluster_info.get("workers", 0)),
            threads_per_worker=self.exp.cluster.threads_per_worker,
            codec_threads=self.exp.cluster.codec_threads,
            cache=self.exp.cache,
            write_empty_chunks=backend.stores_empty_chunks(self.settings),
            sharded=self.settings.shards and backend.shardable,
            hdf5_page_size=backend.page_size(self.settings),
            codec_pipeline=backend.codec_pipeline(self.settings),
            extra=backend.recorded(self.settings),
            worker_processes=bool(self.cluster_info.get("processes", True)),
            started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            storage=cell.storage,
        )
        spec = self.storages.get(cell.storage, LocalStorage())
        verdict = not_run(self.exp, backend, codec, staged.dtype, result.chunk, estimate, spec)
        if verdict is not None:
            return replace(result, status=verdict[0], reason=verdict[1])
        block = chunking.block
        source_key = (cell.dataset, block)
        if source_key not in self.source and source_key not in self.source_failed:
            try:
                self.source[source_key] = source_checksums(self.client, staged, block)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the source's hashes, which every cell of this chunking needs
                why = f"hashing the source's chunks failed ({failure_reason(exc, self.scratch)})"
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
        remote = S3Cell(self.client, spec, cell.label, backend, target) if isinstance(spec, S3Storage) else None
        try:
            reset_worker_peaks(self.client)
            if remote is not None:
                with PeakMemory() as memory:
                    write_seconds, timings = remote.write(staged, codec, chunks, self.settings)
                    written, stored = remote.counts(), remote.usage()
                    size = stored.bytes_out
                    read_seconds, back = remote.read(chunks, self.settings)
                    fields = count_fields(written, remote.counts(), stored, spec, remote.counted)  # type: ignore[arg-type]
                peak = memory.peak + worker_peaks_outside(self.client, memory.pids)
                pattern_reads = []
                for pattern in self.exp.access_patterns:
                    pattern_reads.append(remote.read_pattern(pattern, chunks, self.settings))
                    timings[f"read_{pattern}_requests"] = remote.requests(remote.counts())
                write_requests = remote.requests(written)
                timings.update(write_requests=write_requests, read_requests=fields["requests"] - write_requests)
                result = replace(result, extra={**result.extra, **timings}, **fields)
            else:
                with PeakMemory() as memory:
                    start = time.perf_counter()
                    backend.write(self.client, staged, codec, chunks, target, self.settings)
                    write_seconds = time.perf_counter() - start
                    size = stored_bytes(target)
                    result = replace(result, **local_fields(target, size))
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
            return replace(result, status="failed", reason=failure_reason(exc, self.scratch))
        finally:
            remove(target)
            if remote is not None:
                remote.clean()
        result = replace(
            result,
            stored_bytes=size,
            peak_memory_bytes=peak,
            n_chunks=len(expected),
            source_read_seconds=source_seconds,
        )
        mismatch = first_mismatch(expected, back.checksums) or self.pattern_mismatch(staged, pattern_reads)
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


def failure_reason(exc: BaseException, scratch: Path) -> str:
    """One line saying why a cell failed; a full scratch disk is named as such (HDF5 buries errno 28 deep)."""
    text = one_line(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28" in text or "No space left" in text:
        return f"ENOSPC: no space left on device in scratch {scratch.parent} ({text})"[:500]
    return text
