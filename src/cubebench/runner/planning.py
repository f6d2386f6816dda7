"""What an experiment will take before it runs: its cells, their estimated time, and the disk they need.

No cluster starts and nothing is staged. Each source is opened lazily and a few frames spread over its scan are
read (:func:`cubebench.runner.estimate.sample_blocks`); each codec encodes and decodes them once in-process; every cell
gets the estimate the runner makes before it runs it (:func:`cubebench.runner.estimate.estimate_cell_seconds`: the
cluster's worker threads for the parallel backends, one core for the HDF5 filter path). For a full-size matrix
this says up front whether it takes minutes or a weekend, which cells ``max_cell_seconds`` would skip, and how
much room ``staging`` and ``scratch`` need. An estimate, not a measurement: the codec speeds come from one pass
over a few MiB.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends import get_backend
from cubebench.chunking import chunk_name
from cubebench.codecs import get_codec
from cubebench.runner.cells import cell_seconds, chunking_for, layout_pays, not_run, rescale, write_settings
from cubebench.runner.estimate import measure_speed, sample_blocks, stack_frames
from cubebench.runner.execute import open_sources
from cubebench.runner.inputs import coerce_experiment

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from cubebench.cube import Cube
    from cubebench.experiment import Experiment


@dataclass(frozen=True)
class PlannedCell:
    """One dataset x backend x codec x chunking, as the run would treat each of its runs."""

    dataset: str
    backend: str
    codec: str
    chunk: str
    #: Estimated seconds of one run (write and read); NaN when the codec has no in-process encoder to time.
    seconds: float
    #: ``run``, ``skipped`` (over ``max_cell_seconds``) or ``unavailable``.
    status: str
    reason: str = ""
    #: The storage's label (``local``, ``s3``, ...).
    storage: str = "local"


@dataclass(frozen=True)
class Plan:
    """The cells of an experiment with their estimates, and the disk the run needs."""

    name: str
    runs: int
    threads: int
    cells: tuple[PlannedCell, ...]
    #: Uncompressed bytes of each dataset.
    datasets: dict[str, int]
    #: Staged copies at once: each dataset uncompressed, plus the chunk-major copies ``layout`` makes.
    staging_bytes: int
    #: The largest stored cell (cells are removed once verified, so scratch holds one at a time).
    scratch_bytes: int

    def __str__(self) -> str:
        """The plan as text (:func:`format_plan`)."""
        return format_plan(self)

    @property
    def total_seconds(self) -> float:
        """Estimated seconds of every run of every cell that would run (those with an estimate)."""
        return self.runs * sum(c.seconds for c in self.cells if c.status == "run" and math.isfinite(c.seconds))

    @property
    def unestimated(self) -> int:
        """Cells that would run but have no estimate (their codec has no in-process encoder here)."""
        return sum(c.status == "run" and not math.isfinite(c.seconds) for c in self.cells)


def plan(
    experiment: Experiment | Mapping[str, Any] | str | os.PathLike[str] | None = None, *, scale: float | None = None
) -> Plan:
    """Estimate every cell of ``experiment`` without running any.

    Parameters
    ----------
    experiment
        An :class:`~cubebench.experiment.Experiment`, a mapping shaped like the YAML, a YAML path, or None for the
        quick experiment (as :func:`cubebench.run` takes it).
    scale
        Multiply every preset's ``scale`` by this factor, as ``cubebench run --scale`` does.

    Raises
    ------
    CubebenchError
        For the bad inputs the run itself would refuse (a missing file, an unknown codec, ...), or a source whose
        sampled frames cannot be read.
    """
    exp = coerce_experiment(experiment)
    if scale is not None:
        exp = rescale(exp, scale)
    cubes = open_sources(exp)
    backends = {name: get_backend(name) for name in exp.backends}
    codecs = {cid: get_codec(cid) for cid in exp.codecs}
    settings = write_settings(exp)
    threads = max(1, exp.cluster.workers * exp.cluster.threads_per_worker)
    cells: list[PlannedCell] = []
    ratios: dict[str, list[float]] = {}
    reads = Counter(  # as the run counts them: cells whose writes read blocks, per dataset and chunking
        (name, chunk_name(chunk))
        for name in cubes
        for _storage in exp.storage
        for b in backends.values()
        if b.reads_blocks
        for _ in codecs
        for chunk in exp.chunks
    )
    copies: set[tuple[str, tuple[int, ...]]] = set()
    for name, cube in cubes.items():
        sample = _sample(cube)
        speeds = {cid: measure_speed(codec, sample) for cid, codec in codecs.items()}
        ratios[name] = [s.ratio if s is not None else 1.0 for s in speeds.values()]  # unknown: as stored raw
        for spec in exp.storage:
            for backend_name, backend in backends.items():
                for cid, codec in codecs.items():
                    for chunk in exp.chunks:
                        chunking = chunking_for(backend, chunk, cube.info.shape, settings)
                        label, shape, nbytes = chunking.label, cube.info.shape, cube.info.nbytes
                        seconds = cell_seconds(backend, chunking, shape, nbytes, speeds[cid], threads)
                        verdict = not_run(exp, backend, codec, cube.info.dtype, label, seconds, spec)
                        status, reason = verdict or ("run", "")
                        planned = PlannedCell(name, backend_name, cid, label, seconds, status, reason, spec.label)
                        cells.append(planned)
                        block = chunking.block
                        cells_reading = exp.runs * reads[(name, label)]
                        if (
                            status == "run"
                            and backend.reads_blocks
                            and layout_pays(exp, cube.info.shape, block, cells_reading)
                        ):
                            copies.add((name, block))
    sizes = {name: cube.info.nbytes for name, cube in cubes.items()}
    return Plan(
        name=exp.name,
        runs=exp.runs,
        threads=threads,
        cells=tuple(cells),
        datasets=sizes,
        staging_bytes=sum(sizes.values()) + sum(sizes[name] for name, _ in copies),
        scratch_bytes=max(int(sizes[name] / min(ratios[name])) for name in cubes),
    )


def _sample(cube: Cube) -> np.ndarray:
    """A few frames spread over ``cube``'s scan, read with Dask's local scheduler (one small compute)."""
    from dask.base import compute

    blocks = sample_blocks(cube.info.shape, cube.info.dtype)
    try:
        frames = compute(*(cube.data[block] for block in blocks), scheduler="threads")
    except Exception as exc:  # a corrupt chunk among the sampled frames: the run would fail on it too
        raise cube.info.unreadable("reading sample frames", exc) from exc
    return stack_frames([np.asarray(frame) for frame in frames], cube.info.shape)


def format_plan(plan: Plan) -> str:
    """The plan as text: the disk it needs, one line per dataset x backend x codec, and the total."""
    counts = Counter(cell.status for cell in plan.cells)
    kinds = ", ".join(f"{counts[status]} {status}" for status in ("run", "skipped", "unavailable") if counts[status])
    lines = [
        f"experiment {plan.name}: {len(plan.cells)} cells ({kinds}) x {plan.runs} runs, estimated for "
        f"{plan.threads} worker threads (one core for the hdf5 filter path)",
    ]
    for name, nbytes in plan.datasets.items():
        lines.append(f"  dataset {name}: {_size(nbytes)} uncompressed")
    lines.append(
        f"  staging needs {_size(plan.staging_bytes)} (the staged copies, chunk-major ones included); "
        f"scratch up to {_size(plan.scratch_bytes)} at a time"
    )
    rows = [["dataset", "backend", "codec", "chunkings", "s per run", "all runs", "note"]]
    several = len({cell.storage for cell in plan.cells}) > 1
    groups: dict[tuple[str, str, str], list[PlannedCell]] = {}
    for cell in plan.cells:
        backend = f"{cell.backend} on {cell.storage}" if several else cell.backend
        groups.setdefault((cell.dataset, backend, cell.codec), []).append(cell)
    for (dataset, backend, codec), cells in groups.items():
        running = [c for c in cells if c.status == "run"]
        per_run = sum(c.seconds for c in running)
        notes = sorted({f"{c.status}: {c.reason}" for c in cells if c.status != "run"})
        shown = _duration(per_run) if running else "-"
        total = _duration(per_run * plan.runs) if running else "-"
        rows.append([dataset, backend, codec, str(len(running)), shown, total, "; ".join(notes)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells_text = [
            c.ljust(w) if i in (0, 1, 2, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells_text).rstrip())
    skipped = sum(c.status == "skipped" for c in plan.cells)
    unknown = f", {plan.unestimated} cells without an estimate" if plan.unestimated else ""
    lines.append(
        f"total: about {_duration(plan.total_seconds)} of writing and reading{unknown}"
        f"{f', {skipped} cells over max_cell_seconds skipped' if skipped else ''} (plus staging, checksums and "
        f"statistics, a few seconds per GiB)"
    )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    """Seconds as a person reads them: s, min or h."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(nbytes: float) -> str:
    """Bytes in binary units."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= factor:
            return f"{nbytes / factor:.1f} {unit}"
    return f"{nbytes:.0f} B"
