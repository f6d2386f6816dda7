"""The study's own methods as backends (csr, uint8_overflow, npy_gzip): their formats' specifics, and patterns.

The contract of tests/contracts.py (round trips, pattern reads against NumPy, plain reads) runs for every backend
in tests/test_backends.py; here, each custom format's details are checked with plain tools (h5py + scipy, numpy +
gzip), and the runner's handling of unchunked backends and access patterns.
"""

from __future__ import annotations

import gzip
import zlib
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from tests.contracts import PATTERN_SHAPE, reference
from tests.helpers import experiment, sparse_counts, stage_array

from cubebench.backends import BACKENDS, WriteSettings, get_backend, npy_gzip
from cubebench.backends.uint8_overflow import split
from cubebench.codecs import CODECS
from cubebench.errors import CodecUnavailableError, ConfigError
from cubebench.parallel import run_ordered
from cubebench.patterns import PATTERNS, selection
from cubebench.staging import source_checksums, source_pattern

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

SHAPE = (5, 4, 24, 20)
CHUNKS = (2, 3, 16, 16)


def write_and_read(
    client: Client, tmp_path: Path, name: str, codec: str, array: np.ndarray, chunks: tuple[int, ...] = CHUNKS
) -> Path:
    """Write ``array`` with backend ``name``, read it back, and assert every block's hash equals the source's."""
    staged = stage_array(array, tmp_path)
    backend = get_backend(name)
    target = tmp_path / f"out{backend.suffix}"
    backend.write(client, staged, CODECS[codec], chunks, target, WriteSettings())
    back = backend.read(client, target, chunks, WriteSettings())
    expected, _ = source_checksums(client, staged, backend.storage_block(chunks, WriteSettings()))
    assert back.checksums == expected
    return target


def test_csr_frames_equal_scipy(client: Client, tmp_path: Path) -> None:
    array = sparse_counts(SHAPE, zero_fraction=0.9)
    array[1, 2] = 0  # an empty frame
    target = write_and_read(client, tmp_path, "csr", "none", array)
    with h5py.File(target, "r") as f:
        assert f.attrs["cubebench_format"] == "csr"
        data, indices, indptr, offsets = f["data"][()], f["indices"][()], f["indptr"][()], f["offsets"][()]
    assert data.size == np.count_nonzero(array)
    for iy, ix in np.ndindex(*SHAPE[:2]):
        expected = csr_matrix(array[iy, ix])
        o, n = offsets[iy, ix], indptr[iy, ix, -1]
        np.testing.assert_array_equal(indptr[iy, ix], expected.indptr)
        np.testing.assert_array_equal(indices[o : o + n], expected.indices)
        np.testing.assert_array_equal(data[o : o + n], expected.data)
        assert data.dtype == expected.data.dtype


def test_csr_partial_reads_span_or_frame_by_frame(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cubebench.backends import csr

    array = sparse_counts(SHAPE, zero_fraction=0.5)
    target = write_and_read(client, tmp_path, "csr", "none", array)
    windows = [(slice(1, 4), slice(1, 3), slice(5, 17), slice(3, 11)), np.s_[0:5, 0:4, 0:24, 0:20]]
    with h5py.File(target, "r") as f:
        for slack in (csr.SPAN_SLACK, 0):  # 0: skipped entries cost more than per-frame reads
            monkeypatch.setattr(csr, "SPAN_SLACK", slack)
            for window in windows:
                np.testing.assert_array_equal(csr.dense_frames(f, *window), array[window])


def test_uint8_overflow_is_lossless_on_fractional_floats(client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    array = (sparse_counts(SHAPE, dtype="float32") / 4).astype("float32")  # binned-like: quarters
    array[0, 0, :3, 0] = [np.nan, -0.0, np.inf]
    array[0, 1, 0, :3] = [-1.0, 254.0, 255.0]
    array[4, 3] += rng.random(SHAPE[2:], dtype="float32")
    target = write_and_read(client, tmp_path, "uint8_overflow", "none", array)
    with h5py.File(target, "r") as f:
        small = f["data"][()]
        n_overflow = f["overflow_index"].shape[0]
        assert int(f["overflow_count"][()].sum()) == n_overflow
    fits = (array >= 0) & (array < 255) & (np.trunc(array) == array) & ~np.signbit(array)
    assert n_overflow == int((~fits).sum()) > 0
    np.testing.assert_array_equal(small[fits], array[fits].astype(np.uint8))
    assert (small[~fits] == 255).all()


def test_uint8_split_rules() -> None:
    block = np.array([0, 7, 254, 255, 4095], dtype="uint16")
    small, idx, val = split(block)
    assert small.tolist() == [0, 7, 254, 255, 255]
    assert idx.tolist() == [3, 4] and val.tolist() == [255, 4095] and val.dtype == block.dtype
    small, idx, val = split(np.array([1.0, 1.5, -0.0, np.nan, 3.0], dtype="float32"))
    assert idx.tolist() == [1, 2, 3] and small.tolist() == [1, 255, 255, 255, 3]


@pytest.mark.parametrize("slab_bytes", [4 * 24 * 20 * 2 * 2, 24 * 20 * 2 * 3])  # 2 scan rows; 3 frames of a row
def test_npy_gzip_loads_with_plain_numpy(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slab_bytes: int
) -> None:
    monkeypatch.setattr(npy_gzip, "SLAB_BYTES", slab_bytes)
    array = sparse_counts(SHAPE)
    target = write_and_read(client, tmp_path, "npy_gzip", "gzip-6", array)
    with gzip.open(target) as f:
        np.testing.assert_array_equal(np.load(f), array)
    # a multi-member stream: the .npy header, then one member per slab, in order
    raw, members = target.read_bytes(), 0
    while raw:
        d = zlib.decompressobj(wbits=31)
        d.decompress(raw)
        raw, members = d.unused_data, members + 1
    assert members == 1 + len(npy_gzip.slabs(SHAPE, 2))
    assert members > 2


def test_codec_dimension_of_custom_backends() -> None:
    for name in ("csr", "uint8_overflow"):
        with pytest.raises(CodecUnavailableError, match=r"only codec 'none' applies"):
            get_backend(name).check(CODECS["blosc-zstd"], np.dtype("uint16"))
        get_backend(name).check(CODECS["none"], np.dtype("float32"))
    with pytest.raises(CodecUnavailableError, match=r"csr stores raw CSR arrays"):
        get_backend("csr").check(CODECS["gzip-9"], np.dtype("uint16"))
    for cid in ("gzip-1", "gzip-6", "gzip-9"):
        get_backend("npy_gzip").check(CODECS[cid], np.dtype("uint16"))
    with pytest.raises(CodecUnavailableError, match=r"none: npy_gzip"):
        get_backend("npy_gzip").check(CODECS["none"], np.dtype("uint16"))
    assert [n for n, cls in BACKENDS.items() if not cls.chunked] == ["csr", "uint8_overflow", "npy_gzip"]


def test_run_ordered_keeps_order(client: Client) -> None:
    import time

    def slow_first(i: int) -> int:
        time.sleep(0.2 if i == 0 else 0.0)
        return i

    assert list(run_ordered(client, slow_first, range(9), window=3)) == list(range(9))


# --- access patterns -------------------------------------------------------------------------------------------


def test_pattern_selections() -> None:
    frame = selection("frame", PATTERN_SHAPE)
    assert frame.block == (slice(20, 21), slice(18, 19), slice(0, 16), slice(0, 12))
    region = selection("region", PATTERN_SHAPE)
    assert region.scan == (slice(4, 36), slice(2, 34))
    assert selection("region", (8, 40, 4, 4)).scan == (slice(0, 8), slice(4, 36))  # clipped to the scan
    vd = selection("virtual_detector", (3, 3, 64, 64))
    assert vd.scan == (slice(0, 3), slice(0, 3)) and vd.det == (slice(24, 40), slice(24, 40))
    assert vd.mask is not None and vd.mask.shape == (16, 16) and vd.mask[8, 8] and not vd.mask[0, 0]
    with pytest.raises(ConfigError, match=r"'diagonal'"):
        selection("diagonal", PATTERN_SHAPE)


@pytest.mark.parametrize("name", ["zarr", "zarr_direct"])
def test_sharded_pattern_reads_match_numpy(client: Client, tmp_path: Path, name: str) -> None:
    array = sparse_counts(PATTERN_SHAPE, seed=5)
    staged = stage_array(array, tmp_path)
    backend = get_backend(name)
    settings = WriteSettings(shards=True)
    target = tmp_path / "p.zarr"
    backend.write(client, staged, CODECS["blosc-lz4"], (8, 8, 16, 12), target, settings)
    for pattern in PATTERNS:
        got = backend.read_pattern(client, target, pattern, (8, 8, 16, 12), settings)
        assert got.checksum == reference(array, pattern)[0], pattern


def test_pattern_checksum_catches_a_wrong_value(client: Client, tmp_path: Path) -> None:
    array = sparse_counts(PATTERN_SHAPE, seed=4)
    staged = stage_array(array, tmp_path)
    backend = get_backend("hdf5_direct")
    target = tmp_path / "x.h5"
    backend.write(client, staged, CODECS["none"], (1, 1, 16, 12), target, WriteSettings())
    with h5py.File(target, "r+") as f:
        f["version_1/data/datacubes/datacube_000/data"][20, 18, 8, 6] += 1
    for pattern in PATTERNS:
        got = backend.read_pattern(client, target, pattern, (1, 1, 16, 12), WriteSettings())
        assert got.checksum != source_pattern(client, staged, pattern).checksum, pattern


# --- the runner: unchunked backends and access patterns -----------------------------------------------------------


CUSTOM = {
    "name": "custom",
    "datasets": [{"preset": "4d_diff", "shape": [8, 8, 32, 32], "name": "tiny"}],
    "backends": ["hdf5_direct", "csr", "npy_gzip"],
    "codecs": ["none", "gzip-1"],
    "chunks": ["single_frame", "balanced"],
    "access_patterns": ["frame", "region", "virtual_detector"],
}


def test_runner_unchunked_backends_and_pattern_reads(tmp_path: Path) -> None:
    import cubebench

    ds = cubebench.run(
        experiment(
            CUSTOM,
        ),
        out=tmp_path / "res",
        progress=False,
    )
    status, reason = ds["status"].sel(dataset="tiny"), ds["reason"].sel(dataset="tiny", run=0)
    ok = {("hdf5_direct", c, k) for c in ("none", "gzip-1") for k in ("single_frame", "balanced")}
    ok |= {("csr", "none", "single_frame"), ("npy_gzip", "gzip-1", "single_frame")}
    for backend in ("hdf5_direct", "csr", "npy_gzip"):
        for codec in ("none", "gzip-1"):
            for chunk in ("single_frame", "balanced"):
                where = {"backend": backend, "codec": codec, "chunk": chunk}
                got = str(status.sel(run=0, **where).item())
                assert got == ("ok" if (backend, codec, chunk) in ok else "unavailable"), (where, got)
                for pattern in ("frame", "region", "virtual_detector"):
                    seconds = float(ds[f"read_{pattern}_seconds"].sel(dataset="tiny", run=0, **where).item())
                    assert np.isfinite(seconds) == ((backend, codec, chunk) in ok)
    why = str(reason.sel(backend="npy_gzip", codec="gzip-1", chunk="balanced").item())
    assert why == "npy_gzip stores the whole array; chunking does not apply (measured under 'single_frame')"
    assert "only codec 'none' applies" in str(reason.sel(backend="csr", codec="gzip-1", chunk="single_frame").item())


def test_runner_marks_a_wrong_pattern_read_unverified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cubebench
    from cubebench.backends.csr import CSRBackend
    from cubebench.patterns import PatternResult

    def wrong(self: object, *args: object) -> PatternResult:
        return PatternResult("region", 12345)

    monkeypatch.setattr(CSRBackend, "pattern_result", wrong)
    exp = experiment(CUSTOM, backends=["csr"], codecs=["none"], chunks=["real_space"], access_patterns=["region"])
    ds = cubebench.run(exp, out=tmp_path / "res", progress=False)
    assert str(ds["status"].item()) == "unverified"
    assert str(ds["reason"].item()) == "the region access-pattern read differs from the source"


def test_access_patterns_in_experiments() -> None:
    from cubebench.experiment import parse_experiment

    base = {"datasets": ["4d_diff"], "codecs": ["none"]}
    assert parse_experiment(base).access_patterns == ()
    exp = parse_experiment({**base, "access_patterns": ["virtual_detector", "frame"]})
    assert exp.access_patterns == ("virtual_detector", "frame")
    assert parse_experiment(exp.to_dict()) == exp
    with pytest.raises(ConfigError, match=r"unknown access pattern 'diagonal'"):
        parse_experiment({**base, "access_patterns": ["frame", "diagonal"]})
    with pytest.raises(ConfigError, match=r"'access_patterns'"):
        parse_experiment({**base, "access_patterns": {"frame": 1}})
