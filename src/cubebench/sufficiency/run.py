"""Score representations on the Dask cluster: store each one chunk by chunk, read it back, verify it, and measure
how far it moves every inference target from the source.

Per dataset, one pass over the staged source computes the targets (and the source's maximum, which sizes the
integer width of sum binning). Then, per representation and run, as for a codec cell:

1. *expected* (untimed, once): every chunk's stored form (:meth:`Layout.reference`: the transform, and for a lossy
   codec its in-memory round trip through the same HDF5 filter), as a hash (XXH3-64) per chunk;
2. *write* (timed): workers transform batches of chunks, one writer stores them in an HDF5 file through the
   filter pipeline (HDF5 has one writer), flush and fsync;
3. *read* (timed): workers read and decode their chunks in parallel and return a hash each; every chunk must
   equal the expected one, so a storage bug is caught for lossy representations too;
4. *analysis* (untimed, first verified run): workers read the stored chunks again, decode them into the
   representation's own detector geometry and compute the targets; errors against the source follow, and where
   the geometry is the source's, the largest value error, checked against a lossy codec's promised bound.

File layout: dense forms are one chunked dataset ``/data`` ``(scan_y, scan_x, h, w)``; the event list is
``/events/{y,x,count}`` (1-D, appended chunk by chunk), ``/events/frame_counts`` ``(scan_y, scan_x)`` and
``/events/chunk_table`` (chunk iy, ix, first event, events). The root attribute ``cubebench_representation``
holds the spec and layout as JSON, so the file says what it is and what it discards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import Block, StagedCube
from cubebench.errors import CodecUnavailableError, one_line
from cubebench.fileio import drop_page_cache, fsync_tree, hdf5_for_writing, remove, stored_bytes
from cubebench.jsonlog import read_json, write_json
from cubebench.parallel import batches, run_batches
from cubebench.staging import stage_cube
from cubebench.sufficiency.representations import DEFAULT_STORAGE_CODEC, Form, Layout, form_checksum, get_representation
from cubebench.sufficiency.results import (
    LOG_FILE,
    TARGETS_FILE,
    RepresentationResult,
    SufficiencyLog,
    records_to_sufficiency,
    save_sufficiency,
)
from cubebench.sufficiency.targets import (
    METRICS,
    DetectorGeometry,
    Target,
    block_quantities,
    error_metrics,
    finish_quantities,
    resolve_targets,
)
from cubebench.verify import first_mismatch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    import xarray as xr
    from distributed import Client

    from cubebench.cube import Cube
    from cubebench.experiment import Experiment

__all__ = [
    "SourceQuantities",
    "finish_sufficiency",
    "read_representation",
    "run_sufficiency",
    "score_representation",
    "source_quantities",
    "sufficiency_chunks",
    "write_representation",
]

ChunkIndex = tuple[int, ...]

#: Raw source bytes of one stored chunk (whole frames), when the experiment does not give ``sufficiency.chunk``.
CHUNK_BYTES = 8 * 2**20
#: Entries per HDF5 chunk of the 1-D event lists.
EVENT_CHUNK = 2**16
DATA_PATH = "data"
#: Relative slack when checking a lossy codec's absolute error bound (float rounding of the bound itself).
BOUND_SLACK = 1e-6


def sufficiency_chunks(shape: tuple[int, ...], itemsize: int, chunk: tuple[int, int] | None = None) -> tuple[int, ...]:
    """The source block one stored chunk holds: ``(cy, cx, det_y, det_x)``, whole frames.

    Default: the largest square of probe positions (a power of two) with at most :data:`CHUNK_BYTES` of frames.
    """
    sy, sx, dy, dx = (int(s) for s in shape)
    if chunk is None:
        frame = max(1, dy * dx * itemsize)
        side = 1
        while (2 * side) ** 2 * frame <= CHUNK_BYTES:
            side *= 2
        chunk = (side, side)
    return (min(chunk[0], sy), min(chunk[1], sx), dy, dx)


# ---------------------------------------------------------------------------------------------------------------
# Reading stored forms (on the workers)


class _StoredReader:
    """Read one chunk's stored form from a representation file (opened read-only in this worker)."""

    def __init__(self, path: str, layout: Layout) -> None:
        import h5py
        import hdf5plugin  # noqa: F401  (registers the filters in this worker, which may not be the writer)

        self.layout = layout
        self.file = h5py.File(path, "r")
        self.table: dict[tuple[int, int], tuple[int, int]] = {}
        if layout.kind == "events":
            for iy, ix, start, n in np.asarray(self.file["events/chunk_table"][...]).reshape(-1, 4).tolist():
                self.table[(iy, ix)] = (start, n)

    def form(self, index: ChunkIndex, block: Block) -> Form:
        """The stored form of the chunk at ``index`` covering the source ``block``."""
        if self.layout.kind == "dense":
            return {"data": np.ascontiguousarray(self.file[DATA_PATH][block[0], block[1]])}
        events = self.file["events"]
        start, n = self.table[(index[0], index[1])]
        form: Form = {name: np.asarray(events[name][start : start + n]) for name in ("y", "x", "count")}
        form["frame_counts"] = np.asarray(events["frame_counts"][block[0], block[1]])
        return form

    def close(self) -> None:
        """Close the file."""
        self.file.close()


@contextlib.contextmanager
def _reader(path: str, layout: Layout) -> Iterator[_StoredReader]:
    reader = _StoredReader(path, layout)
    try:
        yield reader
    finally:
        reader.close()


# ---------------------------------------------------------------------------------------------------------------
# Worker tasks


Group = list[tuple[ChunkIndex, Block]]


def _transform_batch(group: Group, staged: StagedCube, layout: Layout) -> list[tuple[ChunkIndex, Block, Form]]:
    return [(index, block, layout.transform(staged.read_block(block))) for index, block in group]


def _expected_batch(group: Group, staged: StagedCube, layout: Layout) -> dict[ChunkIndex, int]:
    return {
        index: form_checksum(layout.reference(layout.transform(staged.read_block(block)))) for index, block in group
    }


def _read_batch(group: Group, path: str, layout: Layout) -> dict[ChunkIndex, int]:
    with _reader(path, layout) as reader:
        return {index: form_checksum(reader.form(index, block)) for index, block in group}


#: One chunk's partial targets: scan offset, per-target partials, the chunk's max value and max value error.
Partial = tuple[int, int, dict[str, np.ndarray], float, float]


def _source_batch(group: Group, staged: StagedCube, targets: tuple[Target, ...]) -> list[Partial]:
    geometry = DetectorGeometry.identity((staged.shape[2], staged.shape[3]))
    out = []
    for _, block in group:
        data = staged.read_block(block)
        top = float(data.max()) if data.size else -math.inf
        out.append((block[0].start, block[1].start, block_quantities(data, geometry, targets), top, math.nan))
    return out


def _stored_batch(
    group: Group, staged: StagedCube, path: str, layout: Layout, targets: tuple[Target, ...]
) -> list[Partial]:
    same = layout.geometry == DetectorGeometry.identity(layout.geometry.source_shape)
    out = []
    with _reader(path, layout) as reader:
        for index, block in group:
            dense = layout.decode(reader.form(index, block))
            error = math.nan
            if same:
                diff = dense.astype(np.float64) - staged.read_block(block)
                error = float(np.abs(diff).max()) if diff.size else 0.0
            out.append(
                (block[0].start, block[1].start, block_quantities(dense, layout.geometry, targets), math.nan, error)
            )
    return out


def _assemble(
    parts: list[Partial], shape: tuple[int, ...], geometry: DetectorGeometry, targets: tuple[Target, ...]
) -> tuple[dict[str, np.ndarray], float, float]:
    """Targets from every chunk's partials, the overall maximum, and the overall max value error."""
    sy, sx = shape[0], shape[1]
    partials: dict[str, np.ndarray] = {}
    for target in targets:
        if target.name == "mean_pattern":
            partials[target.name] = np.zeros(geometry.shape)
        elif target.name == "com":
            partials[target.name] = np.zeros((sy, sx, 3))
        else:
            partials[target.name] = np.zeros((sy, sx))
    top, error = -math.inf, math.nan
    for y0, x0, values, part_max, part_error in parts:
        top = max(top, part_max) if not math.isnan(part_max) else top
        if not math.isnan(part_error):
            error = part_error if math.isnan(error) else max(error, part_error)
        for name, value in values.items():
            if name == "mean_pattern":
                partials[name] += value
            else:
                partials[name][y0 : y0 + value.shape[0], x0 : x0 + value.shape[1]] = value
    return finish_quantities(partials, geometry, sy * sx), top, error


# ---------------------------------------------------------------------------------------------------------------
# The four passes (client side)


@dataclass(frozen=True)
class SourceQuantities:
    """The targets computed on the source, its maximum value, and the resolved targets."""

    values: dict[str, np.ndarray]
    max_value: float
    targets: tuple[Target, ...]
    chunks: tuple[int, ...]


def _work(staged: StagedCube, layout_chunks: tuple[int, ...]) -> list[Group]:
    return batches(staged.shape, layout_chunks, np.dtype(staged.dtype).itemsize)


def source_quantities(
    client: Client, staged: StagedCube, targets: tuple[Target, ...], chunks: tuple[int, ...]
) -> SourceQuantities:
    """Every target on the staged source (out-of-core, on the cluster), and the source's maximum value."""
    parts: list[Partial] = []
    for result in run_batches(client, _source_batch, _work(staged, chunks), staged, targets):
        parts.extend(result)
    geometry = DetectorGeometry.identity((staged.shape[2], staged.shape[3]))
    values, top, _ = _assemble(parts, staged.shape, geometry, targets)
    return SourceQuantities(values, top, targets, chunks)


def expected_checksums(client: Client, staged: StagedCube, layout: Layout) -> dict[ChunkIndex, int]:
    """The hash per chunk of what a correct store-and-load of ``layout`` returns."""
    sums: dict[ChunkIndex, int] = {}
    for result in run_batches(client, _expected_batch, _work(staged, layout.chunks), staged, layout):
        sums.update(result)
    return sums


def write_representation(client: Client, staged: StagedCube, layout: Layout, target: Path) -> None:
    """Transform the staged cube on the workers and store it in ``target`` (one HDF5 writer), made durable."""
    import hdf5plugin  # noqa: F401  (registers the filters in this process)

    work = _work(staged, layout.chunks)
    with hdf5_for_writing(target) as f:  # a full scratch disk fails the representation, never the process
        f.attrs["cubebench_representation"] = json.dumps({**layout.spec.to_dict(), "layout": layout.to_dict()})
        if layout.kind == "dense":
            ds = f.create_dataset(
                DATA_PATH,
                shape=layout.stored_shape,
                dtype=layout.stored_dtype,
                chunks=layout.stored_chunks,
                **layout.hdf5_kwargs,
            )
            for forms in run_batches(client, _transform_batch, work, staged, layout):
                for _, block, form in forms:
                    ds[block[0], block[1]] = form["data"]
        else:
            _write_events(f, client, work, staged, layout)
    fsync_tree(target)


def _write_events(f: Any, client: Client, work: list[Group], staged: StagedCube, layout: Layout) -> None:
    kwargs = layout.hdf5_kwargs
    group = f.create_group("events")
    dtypes = {"y": np.uint16, "x": np.uint16, "count": np.dtype(layout.stored_dtype)}
    lists = {
        name: group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(EVENT_CHUNK,), **kwargs)
        for name, dtype in dtypes.items()
    }
    counts = group.create_dataset(
        "frame_counts", shape=layout.source_shape[:2], dtype=np.uint32, chunks=layout.chunks[:2], **kwargs
    )
    table: list[tuple[int, int, int, int]] = []
    total = 0
    for forms in run_batches(client, _transform_batch, work, staged, layout):
        for index, block, form in forms:
            n = int(form["y"].size)
            for name, dset in lists.items():
                dset.resize((total + n,))
                dset[total : total + n] = form[name]
            counts[block[0], block[1]] = form["frame_counts"]
            table.append((index[0], index[1], total, n))
            total += n
    group.create_dataset("chunk_table", data=np.asarray(table, dtype=np.int64).reshape(-1, 4))


def read_representation(client: Client, target: Path, layout: Layout, shape: tuple[int, ...]) -> dict[ChunkIndex, int]:
    """Read every stored chunk back on the workers, decoded; return its hash by chunk index."""
    sums: dict[ChunkIndex, int] = {}
    work = batches(shape, layout.chunks, np.dtype(layout.source_dtype).itemsize)
    for result in run_batches(client, _read_batch, work, str(target), layout):
        sums.update(result)
    return sums


def stored_quantities(
    client: Client, staged: StagedCube, target: Path, layout: Layout, targets: tuple[Target, ...]
) -> tuple[dict[str, np.ndarray], float]:
    """Every target computed from the stored representation (own geometry), and the max value error (or NaN)."""
    parts: list[Partial] = []
    work = _work(staged, layout.chunks)
    for result in run_batches(client, _stored_batch, work, staged, str(target), layout, targets):
        parts.extend(result)
    values, _, error = _assemble(parts, staged.shape, layout.geometry, targets)
    return values, error


def score(values: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Every metric of every target against the source's."""
    return {name: error_metrics(values[name], reference[name]) for name in reference}


# ---------------------------------------------------------------------------------------------------------------
# One representation, one run


@dataclass
class _Context:
    """What every run of one dataset shares."""

    client: Client
    staged: StagedCube
    source: SourceQuantities
    scratch: Path
    codec: str = DEFAULT_STORAGE_CODEC
    cache: str = "warm"


def measure(
    ctx: _Context, rep_id: str, run: int, expected: dict[str, dict[ChunkIndex, int]], analyse: bool
) -> RepresentationResult:
    """Write, size, read, verify (and if ``analyse``, score) one representation; never raises for its failures."""
    spec = get_representation(rep_id)
    staged = ctx.staged
    result = RepresentationResult(
        dataset=staged.name,
        representation=rep_id,
        run=run,
        family=spec.family,
        lossless=spec.lossless,
        discards=spec.discards,
        description=spec.description,
        source_bytes=staged.nbytes,
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    try:
        layout = spec.layout(staged.shape, staged.dtype, ctx.source.max_value, ctx.source.chunks, ctx.codec)
    except CodecUnavailableError as exc:
        return replace(result, status="unavailable", reason=str(exc))
    result = replace(
        result,
        storage=layout.storage,
        stored_shape="x".join(str(s) for s in layout.stored_shape),
        stored_dtype=np.dtype(layout.stored_dtype).name,
        error_bound=layout.bound,
    )
    target = ctx.scratch / f"{staged.name}_{rep_id}_{run}.h5".replace("/", "_")
    try:
        if rep_id not in expected:
            expected[rep_id] = expected_checksums(ctx.client, staged, layout)
        start = time.perf_counter()
        write_representation(ctx.client, staged, layout, target)
        write_seconds = time.perf_counter() - start
        size = stored_bytes(target)
        if ctx.cache == "cold":
            drop_page_cache(target)
        start = time.perf_counter()
        back = read_representation(ctx.client, target, layout, staged.shape)
        read_seconds = time.perf_counter() - start
        result = replace(result, stored_bytes=size, n_chunks=len(expected[rep_id]))
        mismatch = first_mismatch(expected[rep_id], back, "the representation's transform")
        if mismatch:
            return replace(result, status="unverified", reason=mismatch)
        result = replace(result, status="ok", verified=True, write_seconds=write_seconds, read_seconds=read_seconds)
        if analyse:
            values, value_error = stored_quantities(ctx.client, staged, target, layout, ctx.source.targets)
            result = replace(result, errors=score(values, ctx.source.values), data_max_abs_error=value_error)
            if math.isfinite(layout.bound) and value_error > layout.bound * (1 + BOUND_SLACK):
                why = f"max abs value error {value_error:.6g} exceeds the promised bound {layout.bound:g}"
                result = replace(result, status="unverified", verified=False, reason=why)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing representation is a result, not a crash
        return replace(result, status="failed", reason=one_line(exc), verified=False)
    finally:
        remove(target)
    return result


def score_representation(
    client: Client,
    staged: StagedCube,
    rep_id: str,
    targets: Mapping[str, Mapping[str, Any]] | tuple[Target, ...],
    scratch: Path,
    *,
    codec: str = DEFAULT_STORAGE_CODEC,
    chunk: tuple[int, int] | None = None,
    mrad_per_pixel: float | None = None,
    source: SourceQuantities | None = None,
) -> RepresentationResult:
    """Store, verify and score one representation of a staged cube (a convenience for notebooks and tests)."""
    if source is None:
        resolved = (
            targets
            if isinstance(targets, tuple)
            else resolve_targets(targets, (staged.shape[2], staged.shape[3]), mrad_per_pixel)
        )
        chunks = sufficiency_chunks(staged.shape, np.dtype(staged.dtype).itemsize, chunk)
        source = source_quantities(client, staged, resolved, chunks)
    return measure(_Context(client, staged, source, scratch, codec), rep_id, 0, {}, analyse=True)


# ---------------------------------------------------------------------------------------------------------------
# The experiment


def run_sufficiency(
    client: Client,
    exp: Experiment,
    cubes: Mapping[str, Cube],
    staged: Mapping[str, StagedCube],
    scratch: Path,
    folder: Path,
    progress: bool = True,
    stage: Callable[[Cube], StagedCube] | None = None,
) -> list[RepresentationResult]:
    """Score every representation of ``exp`` on every dataset, ``exp.runs`` times, appending to the log.

    Records already in ``folder``'s log are skipped (resume); datasets not in ``staged`` are staged with
    ``stage`` (default: into ``scratch/staged``). The resolved target geometry per dataset is written to
    ``sufficiency_targets.json``.
    """
    from tqdm import tqdm

    log = SufficiencyLog(folder / LOG_FILE)
    previous = log.read()
    done = {r.key for r in previous}
    analysed = {(r.dataset, r.representation) for r in previous if r.errors}
    todo = {
        name: [(rep, run) for run in range(exp.runs) for rep in exp.representations if (name, rep, run) not in done]
        for name in cubes
    }
    geometry = read_json(folder / TARGETS_FILE)
    bar = tqdm(total=sum(len(v) for v in todo.values()), unit="repr", disable=not progress, file=sys.stderr)
    options = exp.sufficiency
    try:
        for name, cube in cubes.items():
            if not todo[name]:
                continue
            data = staged.get(name)
            if data is None and stage is not None:
                data = stage(cube)
            elif data is None:
                (scratch / "staged").mkdir(exist_ok=True)
                data = stage_cube(client, cube, scratch / "staged")
            targets = resolve_targets(exp.targets, (data.shape[2], data.shape[3]), options.mrad_per_pixel)
            chunks = sufficiency_chunks(data.shape, np.dtype(data.dtype).itemsize, options.chunk)
            bar.set_postfix_str(f"{name}: targets on the source")
            source = source_quantities(client, data, targets, chunks)
            geometry[name] = {t.name: t.to_dict() for t in targets}
            write_json(folder / TARGETS_FILE, geometry)
            ctx = _Context(client, data, source, scratch, options.codec, exp.cache)
            expected: dict[str, dict[ChunkIndex, int]] = {}
            for rep, run in todo[name]:
                bar.set_postfix_str(f"{name} {rep} run {run}")
                record = measure(ctx, rep, run, expected, analyse=(name, rep) not in analysed)
                if record.errors:
                    analysed.add((name, rep))
                log.append(record)
                bar.update(1)
    finally:
        bar.close()
    return log.read()


def finish_sufficiency(folder: Path, exp: Experiment, attrs: Mapping[str, Any]) -> xr.Dataset | None:
    """Build and save ``sufficiency.nc`` from the log (None when the experiment scored no representation)."""
    records = SufficiencyLog(folder / LOG_FILE).read()
    if not records:
        return None
    options = exp.sufficiency
    question = options.target or next(iter(exp.targets), "")
    extra = {
        "storage_codec": options.codec,
        "mrad_per_pixel": options.mrad_per_pixel if options.mrad_per_pixel is not None else "",
        "question_target": question,
        "question_tolerance": options.tolerance,
        "question_metric": options.metric,
        "question_higher_is_better": int(METRICS[options.metric][1]),
    }
    ds = records_to_sufficiency(records, read_json(folder / TARGETS_FILE), {**attrs, **extra})
    save_sufficiency(ds, folder)
    return ds
