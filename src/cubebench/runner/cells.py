"""The cells of an experiment and the rules every cell follows before it runs.

Cells are ``dataset x backend x codec x chunk x storage x run``, interleaved so that run ``k`` of every cell finishes
before run ``k+1`` of any (slow drifts of a shared machine then spread over the whole grid). The run and
``cubebench plan`` share these rules: whether a cell runs (:func:`not_run`), its estimate (:func:`cell_seconds`)
and whether a chunking gets a chunk-major copy (:func:`layout_pays`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from cubebench.backends import WriteSettings
from cubebench.chunking import Chunking, chunk_name
from cubebench.cube import grid_counts
from cubebench.errors import (
    BackendError,
    CodecUnavailableError,
    ConfigError,
)
from cubebench.runner.estimate import CodecSpeed, estimate_cell_seconds
from cubebench.staging import (
    needs_layout,
)

if TYPE_CHECKING:
    from cubebench.backends import Backend
    from cubebench.codecs import CodecSpec
    from cubebench.experiment import Experiment
    from cubebench.storage import StorageSpec

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
    #: The storage's label (``local``, ``s3``, ...: :attr:`cubebench.storage.S3Storage.label`).
    storage: str = "local"

    @property
    def key(self) -> tuple[str, str, str, str, int, str]:
        """Coordinates as stored in results."""
        return (self.dataset, self.backend, self.codec, chunk_name(self.chunk), self.run, self.storage)

    @property
    def label(self) -> str:
        """File-name-safe identifier (local cells keep the label they had before storage was a dimension)."""
        key = self.key if self.storage != "local" else self.key[:5]
        return "_".join(str(k) for k in key).replace("/", "_")


def plan_cells(experiment: Experiment, dataset_names: list[str]) -> list[Cell]:
    """All cells, runs outermost (interleaved), then dataset, storage, backend, codec, chunk."""
    return [
        Cell(name, backend, codec, chunk, run, storage.label)
        for run in range(experiment.runs)
        for name in dataset_names
        for storage in experiment.storage
        for backend in experiment.backends
        for codec in experiment.codecs
        for chunk in experiment.chunks
    ]


def not_run(
    exp: Experiment,
    backend: Backend,
    codec: CodecSpec,
    dtype: str,
    chunk: str,
    estimate: float,
    storage: StorageSpec | None = None,
) -> tuple[str, str] | None:
    """Why a cell would not run, as ``(status, reason)``: ``unavailable`` (the backend cannot store the codec or
    dtype, or on ``storage``, or stores the whole array and the chunking is not the first), ``skipped`` (estimated
    over ``max_cell_seconds``); None when it runs."""
    try:
        backend.check_settings(codec, np.dtype(dtype), write_settings(exp))
        if storage is not None:
            backend.check_storage(storage, write_settings(exp))
    except (CodecUnavailableError, BackendError) as exc:
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


def write_settings(exp: Experiment) -> WriteSettings:
    """The backend settings every cell of ``exp`` runs with (its ``zarr:`` and ``hdf5:`` sections, codec threads)."""
    return WriteSettings(
        write_empty_chunks=exp.zarr.write_empty_chunks,
        shards=exp.zarr.shards,
        codec_pipeline=exp.zarr.codec_pipeline,
        codec_threads=exp.cluster.codec_threads,
        io_concurrency=exp.zarr.concurrency,
        hdf5_page_size=exp.hdf5.page_size,
    )


def chunking_for(
    backend: Backend, chunk: str | tuple[int, ...], shape: tuple[int, ...], settings: WriteSettings
) -> Chunking:
    """``chunk`` resolved for a cube of ``shape`` as ``backend`` stores it (with ``settings``: shards or not)."""
    resolved = Chunking.resolve(chunk, shape)
    return resolved.stored_as(backend.storage_block(resolved.shape, settings))


def cell_seconds(
    backend: Backend,
    chunking: Chunking,
    shape: tuple[int, ...],
    nbytes: int,
    speed: CodecSpeed | None,
    threads: int,
) -> float:
    """The estimate of one run of a cell: its bytes at ``speed`` on the threads ``backend`` uses (one for the HDF5
    filter path), plus what its stored chunks cost (:func:`cubebench.runner.estimate.estimate_cell_seconds`)."""
    parallel = threads if backend.parallel else 1
    chunks = math.prod(grid_counts(shape, chunking.block))
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
