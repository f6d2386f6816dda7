"""Every backend keeps the contract of tests/contracts.py (one subclass each); then tests of one backend's specifics.

A new backend subclasses :class:`tests.contracts.BackendContract` here, naming its id, a codec it refuses and
how its files read back plainly, and gets the whole suite: round trips on every codec it runs, access patterns,
empty chunks, durability, refusals and bounded memory.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for plain h5py reads)
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from tests import contracts
from tests.contracts import BackendContract
from tests.helpers import sparse_counts, stage_array

from cubebench.backends import WriteSettings, get_backend
from cubebench.backends.hdf5_filter import DATA_PATH
from cubebench.codecs import CODECS
from cubebench.errors import BackendError, CodecUnavailableError
from cubebench.fileio import stored_bytes
from cubebench.staging import source_checksums

if TYPE_CHECKING:
    from distributed import Client

SHAPE, CHUNKS = contracts.SHAPE, contracts.CHUNKS


class HDF5Plain:
    """HDF5 files: the cube is an ordinary chunked dataset for plain h5py (filters registered by hdf5plugin)."""

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        with h5py.File(path, "r") as f:
            assert f[DATA_PATH].chunks == chunks
            return np.asarray(f[DATA_PATH][...])


class ZarrPlain:
    """Zarr stores: plain zarr-python reads every chunk."""

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        stored = zarr.open_array(str(path), mode="r")
        assert stored.chunks == chunks
        return np.asarray(stored[...])


class TestHDF5(HDF5Plain, BackendContract):
    backend = "hdf5"
    codec_it_cannot_run = ("pcodec", "uint16", r"^pcodec: no HDF5 filter for pcodec$")


class TestHDF5Direct(HDF5Plain, BackendContract):
    backend = "hdf5_direct"
    codec_it_cannot_run = ("pcodec", "uint16", r"^pcodec: no HDF5 filter for pcodec$")


class TestHDF5VDS(BackendContract):
    """Plain h5py reads the master file's virtual dataset as one array (the parts found beside it)."""

    backend = "hdf5_vds"
    codec_it_cannot_run = ("pcodec", "uint16", r"^pcodec: no HDF5 filter for pcodec$")

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        from cubebench.backends.hdf5_vds import MASTER

        with h5py.File(path / MASTER, "r") as f:
            ds = f[DATA_PATH]
            assert ds.is_virtual and len(ds.virtual_sources()) >= 1
            for source in ds.virtual_sources():
                with h5py.File(path / source.file_name, "r") as part:
                    assert part[source.dset_name].chunks == chunks
            return np.asarray(ds[...])


class TestZarr(ZarrPlain, BackendContract):
    backend = "zarr"
    codec_it_cannot_run = ("pcodec", "uint8", r"pcodec does not take uint8")


class TestZarrDirect(ZarrPlain, BackendContract):
    backend = "zarr_direct"
    codec_it_cannot_run = ("pcodec", "uint16", r"no chunk encoder outside zarr")


class TestCSR(BackendContract):
    """Plain reading as the module docstring says: h5py, and a SciPy CSR matrix per frame."""

    backend = "csr"
    codec_it_cannot_run = ("gzip-9", "uint16", r"csr stores raw CSR arrays; only codec 'none' applies")

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        from scipy.sparse import csr_matrix

        out = np.zeros(shape, dtype)
        with h5py.File(path, "r") as f:
            assert f.attrs["cubebench_format"] == "csr" and f.attrs["cubebench_format_version"] == 1
            data, indices, indptr, offsets = f["data"][()], f["indices"][()], f["indptr"][()], f["offsets"][()]
        for iy, ix in np.ndindex(*shape[:2]):
            o, n = offsets[iy, ix], indptr[iy, ix, -1]
            out[iy, ix] = csr_matrix((data[o : o + n], indices[o : o + n], indptr[iy, ix]), shape=shape[2:]).toarray()
        return out


class TestUint8Overflow(BackendContract):
    """Plain reading as the module docstring says: h5py, the uint8 array, then each block's overflow entries."""

    backend = "uint8_overflow"
    codec_it_cannot_run = ("blosc-zstd", "uint16", r"only codec 'none' applies")

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        with h5py.File(path, "r") as f:
            assert f.attrs["cubebench_format"] == "uint8_overflow" and f["data"].chunks == chunks
            out = f["data"][()].astype(dtype)
            index, value = f["overflow_index"][()], f["overflow_value"][()]
            starts, counts = f["overflow_start"][()], f["overflow_count"][()]
        for grid in np.ndindex(*starts.shape):
            block = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(grid, chunks, shape, strict=True))
            entries = slice(starts[grid], starts[grid] + counts[grid])
            piece = out[block].copy()
            piece.reshape(-1)[index[entries]] = value[entries]
            out[block] = piece
        return np.asarray(out)


class TestNpyGzip(BackendContract):
    """Plain reading: gzip + numpy.load."""

    backend = "npy_gzip"
    codec_it_cannot_run = ("none", "uint16", r"^none: npy_gzip gzips the whole .npy; only codecs gzip-1")

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        with gzip.open(path) as f:
            return np.asarray(np.load(f))


ZARR_BACKENDS = ["zarr", "zarr_direct", "tensorstore"]


@pytest.mark.parametrize("name", ZARR_BACKENDS)
@pytest.mark.parametrize("write_empty", [True, False])
def test_sharded_zarr_round_trip(client: Client, tmp_path: Path, name: str, write_empty: bool) -> None:
    array = sparse_counts((5, 4, 16, 16))  # an edge shard, with inner chunks outside the array
    array[:2, :2] = 0  # a whole shard equal to the fill value
    array[4, 0, 3, 3] = 9
    staged = stage_array(array, tmp_path)
    backend = get_backend(name)
    settings = WriteSettings(shards=True, write_empty_chunks=write_empty)
    target = tmp_path / "s.zarr"
    backend.write(client, staged, CODECS["blosc-zstd"], (2, 2, 16, 16), target, settings)
    stored = zarr.open_array(str(target), mode="r")
    assert stored.chunks == (1, 1, 16, 16) and stored.shards == (2, 2, 16, 16)
    np.testing.assert_array_equal(stored[...], array)  # plain zarr reads every shard
    assert (target / "c/0/0/0/0").exists() == write_empty
    back = backend.read(client, target, (2, 2, 16, 16), settings)
    expected, _ = source_checksums(client, staged, (2, 2, 16, 16))
    assert back.checksums == expected


@pytest.mark.parametrize("shards", [False, True])
@pytest.mark.parametrize("codec_id", ["none", "gzip-1", "blosc-zstd", "bitshuffle-lz4"])
def test_zarr_direct_matches_zarr_python(client: Client, tmp_path: Path, codec_id: str, shards: bool) -> None:
    """Either writer's store reads through the other reader, and both store the same bytes give or take framing."""
    array = sparse_counts(SHAPE)
    staged = stage_array(array, tmp_path)
    settings = WriteSettings(shards=shards)
    chunks = (2, 2, 24, 20) if shards else CHUNKS
    expected, _ = source_checksums(client, staged, chunks)
    sizes = {}
    for writer, reader in (("zarr", "zarr_direct"), ("zarr_direct", "zarr")):
        target = tmp_path / f"{writer}.zarr"
        get_backend(writer).write(client, staged, CODECS[codec_id], chunks, target, settings)
        back = get_backend(reader).read(client, target, chunks, settings)
        assert back.checksums == expected, (writer, reader)
        sizes[writer] = stored_bytes(target)
    assert abs(sizes["zarr_direct"] - sizes["zarr"]) <= 0.02 * sizes["zarr"] + 64 * len(expected)


shard_dims = st.tuples(st.integers(1, 3), st.integers(1, 3))


@examples(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shard=shard_dims, extent=shard_dims, write_empty=st.booleans(), seed=st.integers(0, 2**16))
def test_zarr_direct_shards_are_what_zarr_reads(
    tmp_path: Path, shard: tuple[int, int], extent: tuple[int, int], write_empty: bool, seed: int
) -> None:
    """Shard files made by zarr_direct's encoder read back through plain zarr, and through its own decoder."""
    from cubebench.backends.zarr_ import create_store
    from cubebench.backends.zarr_direct import _decode_shard, _encode_shard, _Layout, _write_file
    from cubebench.cube import block_grid

    block = (*shard, 4, 5)
    shape = (shard[0] + extent[0] - 1, shard[1] + extent[1] - 1, 4, 5)  # edge shards, some inner chunks outside
    array = sparse_counts(shape, seed=seed)
    array[: shape[0] // 2] = 0  # shards and inner chunks equal to the fill value
    target = Path(tempfile.mkdtemp(dir=tmp_path)) / "s.zarr"  # tmp_path is shared by the examples
    store = create_store(target, shape, array.dtype, CODECS["blosc-lz4"], (1, 1, 4, 5), block)
    layout = _Layout.of(store, "blosc-lz4", str(target))
    encoder = layout.encoder()
    for index, where in block_grid(shape, block):
        data = array[where]
        full = np.zeros(block, dtype=array.dtype)
        full[tuple(slice(0, n) for n in data.shape)] = data
        parts = _encode_shard(full, data.shape, layout, encoder, write_empty)
        if not parts:
            assert not write_empty and not data.any()
            continue
        path = layout.path(store.metadata.encode_chunk_key(index))
        _write_file(path, parts)
        out = np.full(block, 7, dtype=array.dtype)
        with open(path, "rb") as f:
            _decode_shard(memoryview(f.read()), path, encoder, layout.inner_views(out))
        inside = tuple(slice(0, n) for n in data.shape)
        np.testing.assert_array_equal(out[inside], data)
    np.testing.assert_array_equal(zarr.open_array(str(target), mode="r")[...], array)


def test_zarr_direct_writes_every_part_when_writev_writes_less(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short ``writev`` (allowed for any file) goes on where it stopped, mid-part or between parts."""
    import os

    from cubebench.backends import zarr_direct

    real = os.writev
    monkeypatch.setattr(zarr_direct, "_IOV_MAX", 3)
    monkeypatch.setattr(os, "writev", lambda fd, views: real(fd, [memoryview(b"".join(views))[:5]]))
    parts = [b"abc", b"", b"defgh", np.arange(4, dtype="<u2"), b"ij"]
    path = tmp_path / "c" / "0"
    zarr_direct._write_file(str(path), parts)
    assert path.read_bytes() == b"abcdefgh" + np.arange(4, dtype="<u2").tobytes() + b"ij"


@pytest.mark.parametrize("shards", [False, True])
def test_zarr_direct_keeps_negative_zero_chunks(client: Client, tmp_path: Path, shards: bool) -> None:
    """A chunk of -0.0 equals the fill value as a number but not as bytes: it is stored, so the read is lossless."""
    array = np.zeros((2, 2, 8, 8), dtype="float32")
    array[0, 0] = -0.0
    array[1, 1, 3, 3] = 2.5
    staged = stage_array(array, tmp_path)
    backend = get_backend("zarr_direct")
    settings = WriteSettings(write_empty_chunks=False, shards=shards)
    target = tmp_path / "z.zarr"
    backend.write(client, staged, CODECS["blosc-zstd"], (1, 1, 8, 8), target, settings)
    back = backend.read(client, target, (1, 1, 8, 8), settings)
    expected, _ = source_checksums(client, staged, backend.storage_block((1, 1, 8, 8), settings))
    assert back.checksums == expected
    if not shards:
        assert sorted(p.relative_to(target).as_posix() for p in target.rglob("c/*/*/*/*")) == ["c/0/0/0/0", "c/1/1/0/0"]


def test_zarr_direct_refuses_foreign_stores_and_big_endian_hosts(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = tmp_path / "plain.zarr"
    zarr.create_array(store=str(foreign), shape=(2, 2, 4, 4), chunks=(1, 1, 4, 4), dtype="uint16")
    with pytest.raises(BackendError, match=r"plain.zarr: not a cubebench Zarr store \(no 'cubebench_codec'"):
        get_backend("zarr_direct").read(client, foreign, (1, 1, 4, 4), WriteSettings())
    monkeypatch.setattr("sys.byteorder", "big")
    with pytest.raises(CodecUnavailableError, match=r"^blosc-lz4: zarr_direct writes little-endian chunks"):
        get_backend("zarr_direct").check(CODECS["blosc-lz4"], np.dtype("uint16"))


def test_zarr_direct_refuses_a_damaged_shard(client: Client, tmp_path: Path) -> None:
    import google_crc32c

    staged = stage_array(sparse_counts((2, 2, 16, 16)), tmp_path)
    backend = get_backend("zarr_direct")
    settings = WriteSettings(shards=True)
    target = tmp_path / "s.zarr"
    backend.write(client, staged, CODECS["blosc-lz4"], (2, 2, 16, 16), target, settings)
    shard = target / "c/0/0/0/0"
    whole = shard.read_bytes()
    data = bytearray(whole)
    data[-10] ^= 0xFF  # inside the index
    shard.write_bytes(bytes(data))
    with pytest.raises(OSError, match=r"c/0/0/0/0: the shard index fails its CRC-32C check"):
        backend.read(client, target, (2, 2, 16, 16), settings)
    shard.write_bytes(bytes(data[:8]))
    with pytest.raises(OSError, match=r"c/0/0/0/0: 8 bytes, too short for a shard index of 4 chunks"):
        backend.read(client, target, (2, 2, 16, 16), settings)
    index = np.frombuffer(whole[-68:-4], dtype="<u8").copy()
    index[3] = 2**64 - 2  # the second chunk's size: its end would pass the 64-bit range
    raw = index.tobytes()
    shard.write_bytes(whole[:-68] + raw + google_crc32c.value(raw).to_bytes(4, "little"))
    with pytest.raises(OSError, match=r"c/0/0/0/0: a shard index entry points past the chunk data"):
        backend.read(client, target, (2, 2, 16, 16), settings)


@pytest.mark.parametrize(
    ("shape", "chunks", "parts", "expected"),
    [
        ((16, 8, 4, 4), (2, 8, 4, 4), 2, (0, [(0, 8), (8, 16)])),  # scan rows, whole chunks
        ((5, 8, 4, 4), (2, 8, 4, 4), 2, (0, [(0, 2), (2, 5)])),  # 3 rows of chunks, the last one thin
        ((5, 8, 4, 4), (2, 8, 4, 4), 4, (0, [(0, 2), (2, 4), (4, 5)])),  # fewer chunk rows than parts
        ((2, 8, 4, 4), (2, 2, 4, 4), 2, (1, [(0, 4), (4, 8)])),  # one row of chunks: split the scan columns
        ((2, 2, 4, 4), (2, 2, 4, 4), 2, (0, [(0, 2)])),  # one chunk: one part
    ],
)
def test_vds_slabs_are_whole_chunks(shape, chunks, parts, expected) -> None:
    from cubebench.backends.hdf5_vds import split_slabs

    assert split_slabs(shape, chunks, parts) == expected


def test_vds_one_file_per_worker_and_the_folder_moves(client: Client, tmp_path: Path) -> None:
    """Each worker thread writes its own part; the master's relative paths find them after the folder moves."""
    import shutil

    from cubebench.backends.hdf5_vds import MASTER

    array = sparse_counts((8, 4, 16, 16), seed=5)
    staged = stage_array(array, tmp_path)
    target = tmp_path / "a.vds"
    get_backend("hdf5_vds").write(client, staged, CODECS["lzf"], (2, 4, 16, 16), target, WriteSettings())
    parts = sorted(p.name for p in target.glob("part-*.h5"))
    assert parts == [f"part-{k:04d}.h5" for k in range(sum(client.nthreads().values()))]
    moved = shutil.move(str(target), str(tmp_path / "elsewhere" / "b.vds"))
    with h5py.File(Path(moved) / MASTER, "r") as f:
        assert f[DATA_PATH].attrs["cubebench_codec"] == "lzf"
        np.testing.assert_array_equal(f[DATA_PATH][...], array)
    with h5py.File(Path(moved) / parts[0], "r") as part, h5py.File(tmp_path / "filter.h5", "w") as ref:
        # the parts hold the HDF5 filter's own bytes (lzf through the filter itself)
        ds = ref.create_dataset("x", data=array[:4], chunks=(2, 4, 16, 16), compression="lzf")
        for offset in ((0, 0, 0, 0), (2, 0, 0, 0)):
            got, want = part["data"].id.read_direct_chunk(offset)[1], ds.id.read_direct_chunk(offset)[1]
            assert abs(len(got) - len(want)) <= 16  # liblzf's uninitialised hash table (CodecSpec.framing_note)


@pytest.mark.parametrize("name", ZARR_BACKENDS)
def test_write_empty_chunks_is_honoured(client: Client, tmp_path: Path, name: str) -> None:
    array = np.zeros((4, 4, 16, 16), dtype="uint16")
    array[0, 0, 0, 0] = 7
    staged = stage_array(array, tmp_path)
    backend = get_backend(name)
    sizes = {}
    for flag in (True, False):
        target = tmp_path / f"e{flag}.zarr"
        settings = WriteSettings(write_empty_chunks=flag)
        backend.write(client, staged, CODECS["none"], (1, 1, 16, 16), target, settings)
        sizes[flag] = stored_bytes(target)
        # chunks never stored read back as the fill value, not as what the reused read buffer held before
        expected, _ = source_checksums(client, staged, (1, 1, 16, 16))
        assert backend.read(client, target, (1, 1, 16, 16), settings).checksums == expected
    assert sizes[False] < sizes[True]


def test_unknown_backend() -> None:
    with pytest.raises(BackendError, match=r"hdf6.*valid: hdf5"):
        get_backend("hdf6")


def test_writeback_ahead_flushes_while_writing_and_reports_a_failed_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single writers start the disk's work every step; a flush that fails (a full disk) fails the write."""
    import errno
    import os

    from cubebench.fileio import WritebackAhead

    real = os.fdatasync
    flushed: list[int] = []

    def recording(fd: int) -> None:
        flushed.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    target = tmp_path / "stream.bin"
    payload = np.random.default_rng(0).integers(0, 255, 2**16, dtype=np.uint8).tobytes()
    with open(target, "wb") as f, WritebackAhead(target, step=2**17) as writeback:
        for _ in range(16):
            f.write(payload)
            f.flush()
            writeback.wrote(len(payload))
    assert flushed and all(size >= 2**17 for size in flushed)
    assert target.read_bytes() == payload * 16

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with (
        pytest.raises(OSError, match="No space left"),
        open(target, "wb") as f,
        WritebackAhead(target, step=1) as writeback,
    ):
        f.write(payload)
        writeback.wrote(len(payload))


def test_zarr_chunk_files_are_fsynced_by_the_workers_and_a_failed_fsync_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk file is fsynced in the background of the worker that wrote it, the write ends only after all
    of them, and an fsync that fails (a disk error) fails the write. Thread workers, so the probe sees them."""
    import errno
    import os

    from cubebench.cluster import open_client
    from cubebench.experiment import ClusterSpec

    real = os.fsync
    synced: list[str] = []

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    staged = stage_array(sparse_counts(SHAPE), tmp_path)
    backend, codec = get_backend("zarr"), CODECS["blosc-lz4"]
    with open_client(ClusterSpec(workers=2, processes=False)) as client:
        monkeypatch.setattr(os, "fsync", recording)
        backend.write(client, staged, codec, CHUNKS, tmp_path / "ok.zarr", WriteSettings())
        chunk_files = {str(p) for p in (tmp_path / "ok.zarr").rglob("*") if p.is_file() and p.name != "zarr.json"}
        assert len(chunk_files) == 3 * 2 * 2 * 2 and chunk_files <= set(synced)

        def failing(fd: int) -> None:
            if "/c/" in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(errno.EIO, "Input/output error")
            real(fd)

        monkeypatch.setattr(os, "fsync", failing)
        with pytest.raises(OSError, match="Input/output error"):
            backend.write(client, staged, codec, CHUNKS, tmp_path / "bad.zarr", WriteSettings())


def test_direct_chunk_reads_decode_in_place_and_refuse_short_or_masked_chunks(tmp_path: Path) -> None:
    import os

    from cubebench.backends.base import read_stored_chunk, stored_buffer
    from cubebench.codecs import get_codec

    chunk = sparse_counts((2, 3, 16, 16))
    encoders = {cid: get_codec(cid).encoder(chunk.dtype) for cid in ("none", "blosc-zstd")}
    stored = {cid: enc.encode(chunk) for cid, enc in encoders.items()}
    path = tmp_path / "chunks.bin"
    path.write_bytes(stored["none"] + stored["blosc-zstd"])
    out = np.empty_like(chunk)
    fd = os.open(path, os.O_RDONLY)
    try:
        n, m = len(stored["none"]), len(stored["blosc-zstd"])
        scratch = stored_buffer([(0, n, 0), None, (n, m, 0)])
        assert len(scratch) == max(n, m)
        read_stored_chunk(fd, str(path), (0,), (0, n, 0), encoders["none"], out, scratch)
        np.testing.assert_array_equal(out, chunk)
        out[...] = 7
        read_stored_chunk(fd, str(path), (1,), (n, m, 0), encoders["blosc-zstd"], out, scratch)
        np.testing.assert_array_equal(out, chunk)
        # a chunk never written is the fill value
        read_stored_chunk(fd, str(path), (2,), None, encoders["blosc-zstd"], out, scratch)
        assert not out.any()
        with pytest.raises(
            OSError, match=r"chunk \(1,\) of .*chunks.bin: read \d+ of its \d+ stored bytes \(the file is truncated\)"
        ):
            read_stored_chunk(fd, str(path), (1,), (n + 10, m, 0), encoders["blosc-zstd"], out, scratch)
        with pytest.raises(OSError, match="filter mask 1"):
            read_stored_chunk(fd, str(path), (1,), (n, m, 1), encoders["blosc-zstd"], out, scratch)
    finally:
        os.close(fd)
