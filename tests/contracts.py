"""The contract every backend keeps, as one base class of tests (the ``StoreTests`` pattern of zarr-python).

A backend gets the whole suite by subclassing :class:`BackendContract` once in ``tests/test_backends.py``::

    class TestMyBackend(BackendContract):
        backend = "my_backend"                       # its id in cubebench.backends.BACKENDS
        codec_it_cannot_run = ("pcodec", "uint16", r"no HDF5 filter")   # codec, dtype, reason (regex)

        def read_back_plainly(self, path, shape, dtype, chunks):
            ...                                      # the stored cube read without cubebench

and may override :meth:`BackendContract.codecs_it_runs` (default: every catalog codec its ``check`` accepts) and
:data:`BackendContract.dtypes`. All tests run on the real ``client`` fixture (a LocalCluster of 2 processes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest
from tests.helpers import sparse_counts, stage_array

from cubebench.backends import WriteSettings, get_backend
from cubebench.codecs import CODECS
from cubebench.errors import CodecUnavailableError
from cubebench.fileio import drop_page_cache, stored_bytes
from cubebench.memory import PeakMemory, tree_rss
from cubebench.patterns import PATTERNS, combine, reduce_tile, scan_tiles, selection
from cubebench.staging import source_checksums, source_pattern

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.backends.base import Backend

SHAPE = (5, 4, 24, 20)  # edge chunks on every axis for (2, 3, 16, 16)
CHUNKS = (2, 3, 16, 16)
PATTERN_SHAPE = (40, 36, 16, 12)
MIB = 2**20
#: Frames of the memory test: 128 x 128 uint16, in real-space chunks of 8 x 8 frames (2 MiB).
MEMORY_FRAME, MEMORY_CHUNKS = (128, 128), (8, 8, 128, 128)
#: Scans of the two cubes of the memory test: 64 MiB and 128 MiB, both several tasks' batches
#: (cubebench.parallel.BATCH_BYTES, 32 MiB) large, so that only the cube's size differs, not the batches'.
MEMORY_SCANS = ((32, 64), (64, 64))
#: How much more the peak may be for the larger cube (64 MiB more data): well under the added data.
MEMORY_TOLERANCE = 24 * MIB


def runnable(backend: str, dtype: str) -> list[str]:
    """The catalog's codecs that ``backend``'s ``check`` accepts for ``dtype``."""
    out = []
    for cid, spec in CODECS.items():
        try:
            get_backend(backend).check(spec, np.dtype(dtype))
        except CodecUnavailableError:
            continue
        out.append(cid)
    return out


def reference(array: np.ndarray, pattern: str) -> tuple[int, np.ndarray | None]:
    """The checksum (and virtual image) of ``pattern`` on ``array``, computed in NumPy."""
    sel = selection(pattern, array.shape)
    tiles = scan_tiles(sel, (7, 5))
    parts = [reduce_tile(sel, ys.start, xs.start, array[ys, xs, sel.det[0], sel.det[1]]) for ys, xs in tiles]
    result = combine(sel, parts)
    return result.checksum, result.image


def file_sizes(target: Path) -> int:
    """Bytes of the files at ``target`` (a file, or every file under a folder)."""
    if target.is_file():
        return target.stat().st_size
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())


class BackendContract:
    """Round trip, access patterns, empty chunks, durability, refusals, plain reads and bounded memory."""

    #: The backend's id in :data:`cubebench.backends.BACKENDS`.
    backend: ClassVar[str]
    #: ``(codec id, dtype, reason regex)``: a codec the backend's ``check`` refuses, and why.
    codec_it_cannot_run: ClassVar[tuple[str, str, str]]
    #: Dtypes of the round trips.
    dtypes: ClassVar[tuple[str, ...]] = ("uint16", "float32")

    def codecs_it_runs(self, dtype: str) -> list[str]:
        """Codecs the round trip runs for ``dtype`` (default: all the catalog's that ``check`` accepts)."""
        return runnable(self.backend, dtype)

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        """The stored cube (written with ``chunks``), read with the format's plain library (no cubebench)."""
        raise NotImplementedError

    # --- machinery -------------------------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize ``codec_id`` x ``dtype`` over this backend's runnable codecs."""
        if "codec_id" in metafunc.fixturenames:
            # every runnable codec on the first dtype (the detector's); one codec per family on the others, which
            # is what a dtype changes (the family's framing), at a fraction of the round trips
            first, *others = self.dtypes
            cases = [(c, first) for c in self.codecs_it_runs(first)]
            for dtype in others:
                per_family = {CODECS[c].family: c for c in reversed(self.codecs_it_runs(dtype))}
                cases += [(c, dtype) for c in sorted(per_family.values())]
            metafunc.parametrize(("codec_id", "dtype"), cases)

    @property
    def impl(self) -> Backend:
        return get_backend(self.backend)

    def pattern_codec(self, dtype: str) -> str:
        """The codec of the pattern and empty-chunk tests: the first of blosc-zstd, gzip-1, none it runs."""
        runs = self.codecs_it_runs(dtype)
        return next(c for c in ("blosc-zstd", "gzip-1", "none") if c in runs)

    def write_and_verify(
        self,
        client: Client,
        folder: Path,
        array: np.ndarray,
        codec_id: str,
        chunks: tuple[int, ...] = CHUNKS,
        settings: WriteSettings | None = None,
    ) -> Path:
        """Write ``array``, check the files are complete on disk, and read it back verified chunk by chunk."""
        settings = settings or WriteSettings()
        staged = stage_array(array, folder)
        backend = self.impl
        target = folder / f"out{backend.suffix}"
        backend.write(client, staged, CODECS[codec_id], chunks, target, settings)
        # durable: every byte counted is in a file, and reads come from the disk (a fresh handle on each worker)
        assert stored_bytes(target) > 0
        assert stored_bytes(target) == file_sizes(target)
        drop_page_cache(target)
        back = backend.read(client, target, chunks, settings)
        expected, _ = source_checksums(client, staged, backend.storage_block(chunks, settings))
        assert back.checksums == expected
        assert backend.stored_shape(target) == array.shape
        return target

    # --- the contract ----------------------------------------------------------------------------------------

    def test_round_trip_verified(self, client: Client, tmp_path: Path, codec_id: str, dtype: str) -> None:
        array = sparse_counts(SHAPE, dtype=dtype)
        target = self.write_and_verify(client, tmp_path, array, codec_id)
        np.testing.assert_array_equal(self.read_back_plainly(target, array.shape, array.dtype, CHUNKS), array)

    @pytest.mark.parametrize("write_empty", [True, False])
    def test_empty_chunks_round_trip(self, client: Client, tmp_path: Path, write_empty: bool) -> None:
        array = sparse_counts(SHAPE)
        array[:2, :3] = 0  # a whole chunk (and its frames) of zeros
        array[4] = 0  # an edge row of chunks
        settings = WriteSettings(write_empty_chunks=write_empty)
        target = self.write_and_verify(client, tmp_path, array, self.pattern_codec("uint16"), settings=settings)
        np.testing.assert_array_equal(self.read_back_plainly(target, array.shape, array.dtype, CHUNKS), array)

    def test_codec_it_cannot_run_is_unavailable_with_a_reason(self) -> None:
        codec_id, dtype, why = self.codec_it_cannot_run
        with pytest.raises(CodecUnavailableError, match=why) as err:
            self.impl.check(CODECS[codec_id], np.dtype(dtype))
        assert str(err.value).startswith(f"{codec_id}: ") and "\n" not in str(err.value)

    @pytest.mark.parametrize(
        ("dtype", "chunks"),
        [("uint16", (8, 8, 8, 8)), ("float32", (8, 8, 8, 8)), ("uint16", (1, 1, 16, 12)), ("uint16", (32, 32, 16, 12))],
    )
    def test_pattern_reads_match_numpy(
        self, client: Client, tmp_path: Path, dtype: str, chunks: tuple[int, ...]
    ) -> None:
        array = sparse_counts(PATTERN_SHAPE, dtype=dtype, seed=3)
        if dtype == "float32":
            array /= 4
        staged = stage_array(array, tmp_path)
        backend = self.impl
        target = tmp_path / f"p{backend.suffix}"
        backend.write(client, staged, CODECS[self.pattern_codec(dtype)], chunks, target, WriteSettings())
        for pattern in PATTERNS:
            got = backend.read_pattern(client, target, pattern, chunks, WriteSettings())
            checksum, image = reference(array, pattern)
            assert got.pattern == pattern and got.seconds > 0
            assert got.checksum == checksum, pattern
            assert got.checksum == source_pattern(client, staged, pattern).checksum
            if pattern == "virtual_detector":
                sel = selection(pattern, array.shape)
                assert got.image is not None and image is not None
                np.testing.assert_array_equal(got.image, image)
                direct = array[:, :, sel.det[0], sel.det[1]][..., sel.mask].sum(axis=-1, dtype=np.float64)
                np.testing.assert_allclose(got.image, direct)
            else:
                assert got.image is None

    @pytest.mark.slow  # 64 + 128 MiB written and read per backend: about 12 s each on 2 cores
    def test_peak_memory_does_not_grow_with_the_cube(self, client: Client, tmp_path: Path) -> None:
        """Write + read of a 64 MiB and a 128 MiB cube (same 2 MiB chunks): what each adds to the resident memory of
        all processes (this one, the scheduler, the workers) at its peak differs by less than the tolerance."""
        peaks = []
        for scan in MEMORY_SCANS:
            folder = tmp_path / f"{scan[0]}x{scan[1]}"
            folder.mkdir()
            array = sparse_counts((*scan, *MEMORY_FRAME), seed=1)
            staged = stage_array(array, folder)
            del array
            target = folder / f"m{self.impl.suffix}"
            codec = CODECS[self.pattern_codec("uint16")]
            before = tree_rss()
            with PeakMemory(interval=0.005) as mem:
                self.impl.write(client, staged, codec, MEMORY_CHUNKS, target, WriteSettings())
                self.impl.read(client, target, MEMORY_CHUNKS, WriteSettings())
            peaks.append(mem.peak - before)
        assert peaks[1] - peaks[0] < MEMORY_TOLERANCE, [p / MIB for p in peaks]
