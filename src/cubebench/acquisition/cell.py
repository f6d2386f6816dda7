"""One paced acquisition cell: release the frames, assemble and store chunks, record the flow, verify the result.

The source is staged once (an uncompressed page-cached copy), so producing a frame costs nothing on the clock:
the pacer releases frames of that copy, the assembler turns completed chunks into cluster tasks that read their
frames from it (the detector computer's buffer, in shared memory), and the writer stores them. After the last
chunk is durable, the stored file or store is read back by its backend and compared, chunk by chunk, with the
source's hashes (:func:`cubebench.verify.first_mismatch`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.acquisition.assembler import Assembler, implied_buffer_frames
from cubebench.acquisition.forms import expected_sums, pipeline_layout, read_events
from cubebench.acquisition.metrics import allowed_backlog, flow_stats, frame_durable_times
from cubebench.acquisition.pacer import pace
from cubebench.acquisition.results import AcquisitionRecord
from cubebench.acquisition.stream import StreamHub
from cubebench.acquisition.writers import HDF5Sink, Sink, ZarrSink
from cubebench.acquisition.zarr_events import read_zarr_events
from cubebench.backends import WriteSettings, get_backend
from cubebench.backends.base import encoder_for
from cubebench.cluster import reset_worker_peaks, worker_peaks_outside
from cubebench.errors import CodecUnavailableError, one_line
from cubebench.fileio import remove, stored_bytes
from cubebench.memory import PeakMemory
from cubebench.staging import source_checksums
from cubebench.verify import first_mismatch

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from distributed import Client

    from cubebench.acquisition.config import AcquisitionOptions
    from cubebench.chunking import Chunking
    from cubebench.codecs import CodecSpec
    from cubebench.cube import StagedCube

ChunkIndex = tuple[int, ...]

CRITERION = (
    "kept up: backlog at the last frame <= implied buffer + 2 batches per worker + one durability batch, "
    "and all durable within drain_seconds after it"
)


@dataclass(frozen=True)
class CellSpec:
    """What one paced cell stores: a staged dataset, through a backend, with a codec and a chunking."""

    staged: StagedCube
    backend: str
    codec: CodecSpec
    chunking: Chunking
    workers: int
    #: A reduced representation stored instead of the frames (``bin2-sum``, ``events``), or None.
    representation: str | None = None

    @property
    def label(self) -> str:
        """The results' codec coordinate: the codec id, or ``<representation>+<codec>``."""
        return f"{self.representation}+{self.codec.id}" if self.representation else self.codec.id

    @property
    def frame_bytes(self) -> int:
        """Raw bytes of one frame."""
        return int(np.prod(self.staged.shape[2:])) * np.dtype(self.staged.dtype).itemsize

    def record(self, rate: str, **values: Any) -> AcquisitionRecord:
        """A result record for this cell at ``rate``."""
        return AcquisitionRecord(
            self.staged.name, self.backend, self.label, self.chunking.label, rate, workers=self.workers, **values
        )


def acquired_rows(shape: tuple[int, ...], chunks: tuple[int, ...], frames: int | None) -> int:
    """Scan rows an acquisition of ``frames`` covers: whole bands of chunk rows, at most the scan.

    Examples
    --------
    >>> acquired_rows((64, 64, 8, 8), (32, 32, 8, 8), 100), acquired_rows((64, 64, 8, 8), (1, 1, 8, 8), 100)
    (32, 2)
    """
    sy, sx = shape[0], shape[1]
    if frames is None:
        return sy
    rows = math.ceil(frames / sx)
    return min(sy, math.ceil(rows / chunks[0]) * chunks[0])


def check_runs(spec: CellSpec) -> str:
    """``""`` when the backend can store the codec here, else the reason."""
    try:
        get_backend(spec.backend).check(spec.codec, np.dtype(spec.staged.dtype))
        if spec.representation:
            layout = pipeline_layout(spec.representation, spec.backend, spec.staged, spec.chunking.shape, spec.codec.id)
            get_backend(spec.backend).check(spec.codec, np.dtype(layout.stored_dtype))
    except CodecUnavailableError as exc:
        return str(exc)
    return ""


def warm_up(client: Client, spec: CellSpec) -> None:
    """Build the codec's encoders on every worker before the clock starts."""
    client.run(_warm, spec.codec.id, spec.staged.dtype)


def _warm(codec_id: str, dtype: str) -> None:
    encoder_for(codec_id, dtype)
    encoder_for(codec_id, dtype, zarr=True)


def warm_pipeline(client: Client, spec: CellSpec, rate: float, opts: AcquisitionOptions, scratch: Path) -> None:
    """One short unrecorded paced run (single-frame chunks, one scan row) through the backend before its first cell.

    The first paced cell of a run pays for the workers' first tasks of this kind (imports, pickled functions,
    file-system caches); seen here: a first max-rate trial at 100 Hz failing that passed at 800 Hz later.
    """
    chunking = replace(spec.chunking, shape=(1, 1, *spec.staged.shape[2:]), block=(1, 1, *spec.staged.shape[2:]))
    warm_up(client, spec)
    paced_cell(client, replace(spec, chunking=chunking), rate, opts, spec.staged.shape[1], scratch, {})


def paced_cell(
    client: Client,
    spec: CellSpec,
    rate: float,
    opts: AcquisitionOptions,
    frames: int | None,
    scratch: Path,
    sums: dict[Any, dict[ChunkIndex, int]],
) -> AcquisitionRecord:
    """Acquire ``frames`` (rounded to whole chunk bands; None: the whole scan) at ``rate`` Hz through ``spec``.

    ``sums`` caches the source hashes across cells: per chunk shape for the whole cube (a trial of fewer rows
    checks the chunks of its rows against them), per (rows, chunk shape, representation) for reduced forms.
    """
    label = f"{rate:g}Hz"
    chunks = spec.chunking.shape
    rows = acquired_rows(spec.staged.shape, chunks, frames)
    shape = (rows, *spec.staged.shape[1:])
    staged = replace(spec.staged, shape=shape)  # the first rows of a C-ordered copy are a cube of their own
    n = rows * shape[1]
    implied = implied_buffer_frames((rows, shape[1]), chunks)
    fb = spec.frame_bytes
    limit = opts.buffer_frames(fb)
    target = scratch / f"acquire{get_backend(spec.backend).suffix}"
    base = {
        "requested_rate": rate,
        "frames": n,
        "frame_bytes": fb,
        "implied_buffer_frames": implied,
        "implied_buffer_bytes": implied * fb,
        "buffer_limit_frames": float("nan") if limit is None else limit,
        "chunk_shape": list(chunks),
        "criterion": CRITERION,
    }
    try:
        layout = None
        if spec.representation:
            layout = pipeline_layout(spec.representation, spec.backend, staged, chunks, spec.codec.id)
        sink: Sink
        if spec.backend == "hdf5_direct":
            sink = HDF5Sink(client, staged, spec.codec, chunks, target, opts.sync_interval, shape, layout)
        else:
            sink = ZarrSink(client, staged, spec.codec, chunks, target, shape, layout)
        itemsize = np.dtype(staged.dtype).itemsize
        streamed = opts.dispatch == "stream"
        assembler = Assembler(shape, chunks, itemsize, _ignore if streamed else sink.submit, opts.task_seconds, rate)
        reset_worker_peaks(client)
        with PeakMemory() as memory, contextlib.ExitStack() as stack:
            release: Callable[[int, int, float], None] = assembler.release
            if streamed:
                hub = stack.enter_context(
                    StreamHub(client, sink, assembler.schedule(), int(np.prod(chunks)) * itemsize)
                )
                release = _relay(assembler, hub)
            start = time.perf_counter()
            pacing = pace(n, rate, release, opts.tick)
            if streamed:
                hub.close()
            sink.close()
            seconds = time.perf_counter() - start
        peak_memory = memory.peak + worker_peaks_outside(client, memory.pids)
        if not assembler.done or len(sink.durable) != assembler.n_chunks:
            raise RuntimeError(f"{len(sink.durable)} of {assembler.n_chunks} chunks became durable")
        durable = frame_durable_times((rows, shape[1]), chunks, sink.durable, n)
        flow = flow_stats(pacing.due, pacing.released, durable, limit)
        batch = opts.tick + (0.0 if streamed else opts.task_seconds)  # streamed batches wait for no timer
        allowed = allowed_backlog(implied, int(chunks[0] * chunks[1]), spec.workers, rate, batch, opts.sync_interval)
        kept = flow.end_backlog <= allowed and flow.drain_seconds <= opts.drain_seconds
        if layout is None:
            expected = _source_sums(client, spec.staged, chunks, rows, sums)
            got = get_backend(spec.backend).read(client, target, chunks, WriteSettings()).checksums
        else:
            key = (rows, chunks, spec.representation)
            if key not in sums:
                sums[key] = expected_sums(client, staged, chunks, layout)
            expected = sums[key]
            if layout.kind == "events" and spec.backend == "zarr_direct":
                got = read_zarr_events(target, chunks)
            elif layout.kind == "events":
                got = read_events(target, chunks, spec.codec.id)
            else:
                got = get_backend(spec.backend).read(client, target, layout.stored_chunks, WriteSettings()).checksums
        mismatch = first_mismatch(expected, got)
        size = stored_bytes(target)
    except Exception as exc:
        return spec.record(label, status="failed", error=one_line(exc), **base)
    finally:
        remove(target)
    return spec.record(
        label,
        status="unverified" if mismatch else "ok",
        error=mismatch,
        released_rate=pacing.released_rate,
        pacing_held=pacing.held,
        max_pacing_lag=pacing.max_lag,
        achieved_rate=flow.achieved_rate,
        achieved_GBps=flow.achieved_rate * fb / 1e9,
        kept_up=bool(kept and not mismatch),
        seconds=seconds,
        peak_backlog_frames=flow.peak_backlog,
        peak_backlog_bytes=flow.peak_backlog * fb,
        end_backlog_frames=flow.end_backlog,
        allowed_backlog_frames=allowed,
        drain_seconds=flow.drain_seconds,
        latency_p50=flow.latency_p50,
        latency_p99=flow.latency_p99,
        latency_max=flow.latency_max,
        dropped_frames=flow.dropped,
        peak_memory_bytes=peak_memory,
        stored_bytes=size,
        sync_commits=sink.commits,
        sync_seconds=sink.sync_seconds,
        dispatch=opts.dispatch,
        verified=not mismatch,
        **base,
    )


def _ignore(items: list[tuple[ChunkIndex, Any]]) -> None:
    """Streamed cells: the workers find completed chunks themselves."""


def _relay(assembler: Assembler, hub: StreamHub) -> Callable[[int, int, float], None]:
    """The pacer's release for a streamed cell: note completions, and tell the workers."""

    def release(start: int, stop: int, now: float) -> None:
        assembler.release(start, stop, now)
        hub.release(stop)

    return release


def _source_sums(
    client: Client, staged: StagedCube, chunks: tuple[int, ...], rows: int, sums: dict[Any, dict[ChunkIndex, int]]
) -> dict[ChunkIndex, int]:
    """The source hashes of the chunks in the first ``rows`` scan rows, hashed once per chunk shape for the cube.

    ``rows`` is a whole number of chunk bands (or the scan), so each of these chunks is the same block in the
    trimmed cube as in the whole one.
    """
    key = ("cube", chunks)
    if key not in sums:
        sums[key] = source_checksums(client, staged, chunks)[0]
    bands = -(-rows // chunks[0])
    return {index: value for index, value in sums[key].items() if index[0] < bands}
