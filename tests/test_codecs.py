"""The codec catalog: every id reachable, each codec byte-compatible across HDF5 (filter and direct) and Zarr.

Files are real (pytest's tmp_path) but tiny: a (4, 4, 32, 32) cube of 75 %-zero counts up to 4095, in uint16 and
float32, chunked (2, 2, 32, 32).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import h5py
import hdf5plugin  # noqa: F401  (registers the plugin filters, as a plain reader would)
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cubebench.codecs import CODECS, CodecSpec, get_codec, resolve_codecs, set_codec_threads
from cubebench.cube import block_grid
from cubebench.errors import CodecUnavailableError, ConfigError

# zarr warns on every construction of a numcodecs-backed codec (pcodec), also when opening a store; deliberate.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Numcodecs codecs are not in the Zarr version 3 specification:zarr.errors.ZarrUserWarning"
)

STUDY_IDS = (
    "none",
    "gzip-1",
    "gzip-6",
    "gzip-9",
    "lzf",
    "szip",
    "blosc-blosclz",
    "blosc-lz4",
    "blosc-lz4hc",
    "blosc-zlib",
    "blosc-zstd",
    "lz4",
    "bitshuffle-lz4",
)
NEWER_IDS = (
    "blosc-zstd-bitshuffle",
    "blosc-lz4-bitshuffle",
    "blosc2-zstd",
    "blosc2-lz4",
    "bitshuffle-zstd",
    "zstd",
    "pcodec",
)
#: Codecs that have no HDF5 filter by nature (checked in test_no_hdf5_filter_is_unavailable).
NO_HDF5 = ("pcodec",)
HDF5_IDS = [i for i in CODECS if i not in NO_HDF5]
DTYPES = ("uint16", "float32")
SHAPE = (4, 4, 32, 32)
CHUNKS = (2, 2, 32, 32)


def make_cube(dtype: str, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """Diffraction-like counts: about 75 % zeros, the rest skewed towards small values, at most 4095."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.exponential(300.0, size=shape), 4095).astype(np.uint16)
    counts[rng.random(shape) < 0.75] = 0
    return counts.astype(dtype)


def chunk_offsets() -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    grid = block_grid(SHAPE, CHUNKS)
    return [(tuple(i * c for i, c in zip(index, CHUNKS, strict=True)), block) for index, block in grid]


def usable(face, dtype):
    """Call a face, skipping (with the reason) when this environment cannot provide it."""
    try:
        return face(dtype)
    except CodecUnavailableError as err:
        pytest.skip(str(err))


#: Relative size tolerance per codec where the direct/Zarr encoder is a different implementation of the same
#: format (none left: LZF, once 2-10 % apart, now runs h5py's own filter; see test_same_chunk_bytes_on_every_path).
SIZE_TOLERANCE: dict[str, float] = {}


def close_sizes(a: int, b: int, codec_id: str = "") -> bool:
    """Sizes that differ by no more than header overhead: 1 % + 64 bytes (or the codec's measured tolerance)."""
    return abs(a - b) <= SIZE_TOLERANCE.get(codec_id, 0.01) * max(a, b) + 64


# ---------------------------------------------------------------------------------------------------------------
# 1. The catalog


def test_catalog_ids_reachable_and_ordered():
    assert tuple(CODECS) == STUDY_IDS + NEWER_IDS
    for codec_id, spec in CODECS.items():
        assert get_codec(codec_id) is spec
        assert spec.id == codec_id
        assert spec.study == (codec_id in STUDY_IDS)
        assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()
        assert pickle.loads(pickle.dumps(spec)) == spec


def test_unknown_id_lists_valid_ids():
    with pytest.raises(CodecUnavailableError, match=r"'brotli'") as info:
        get_codec("brotli")
    assert all(codec_id in str(info.value) for codec_id in CODECS)


def test_resolve_codecs():
    assert tuple(s.id for s in resolve_codecs("study")) == STUDY_IDS
    assert resolve_codecs("all") == tuple(CODECS.values())
    assert tuple(s.id for s in resolve_codecs(["zstd", "gzip-1"])) == ("zstd", "gzip-1")
    assert resolve_codecs("lzf") == (CODECS["lzf"],)
    with pytest.raises(CodecUnavailableError, match=r"'nope'.*valid: none, gzip-1"):
        resolve_codecs(["lzf", "nope"])
    with pytest.raises(ConfigError, match=r"lzf listed more than once"):
        resolve_codecs(["lzf", "zstd", "lzf"])
    with pytest.raises(ConfigError, match=r"empty"):
        resolve_codecs([])


def test_faces_are_plain_data():
    spec = get_codec("blosc-zstd")
    assert spec.hdf5_filter("uint16") == {"compression": 32001, "compression_opts": (0, 0, 0, 0, 3, 1, 5)}
    assert get_codec("gzip-9").hdf5_filter("uint16") == {"compression": "gzip", "compression_opts": 9}
    assert get_codec("szip").hdf5_filter("float32") == {"compression": "szip", "compression_opts": ("nn", 8)}
    assert get_codec("none").hdf5_filter("uint16") == {}
    assert get_codec("none").zarr_codecs("uint16") == []
    (blosc,) = spec.zarr_codecs("uint16")
    assert (blosc.typesize, blosc.cname.value, blosc.clevel, blosc.shuffle.value) == (2, "zstd", 3, "shuffle")


# ---------------------------------------------------------------------------------------------------------------
# 2. Direct chunks <-> the HDF5 filter


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec_id", HDF5_IDS)
def test_direct_chunks_read_back_by_the_filter(tmp_path, codec_id, dtype):
    spec = get_codec(codec_id)
    enc = usable(spec.encoder, dtype)
    data = make_cube(dtype)
    path = tmp_path / "direct.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=SHAPE, dtype=dtype, chunks=CHUNKS, **spec.hdf5_filter(dtype))
        for offset, block in chunk_offsets():
            ds.id.write_direct_chunk(offset, enc.encode(data[block]))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][...], data)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec_id", HDF5_IDS)
def test_filter_chunks_decode_directly(tmp_path, codec_id, dtype):
    spec = get_codec(codec_id)
    enc = usable(spec.encoder, dtype)
    data = make_cube(dtype)
    path = tmp_path / "filter.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=CHUNKS, **spec.hdf5_filter(dtype))
    with h5py.File(path, "r") as f:
        ds = f["x"]
        for offset, block in chunk_offsets():
            mask, raw = ds.id.read_direct_chunk(offset)
            assert mask == 0  # the filter ran (it is skipped, mask 1, only on incompressible chunks)
            out = np.empty(CHUNKS, dtype=dtype)
            assert enc.decode(raw, out) is out
            np.testing.assert_array_equal(out, data[block])
            # Same compression, not just compatible framing: sizes agree within header overhead.
            sizes = len(enc.encode(data[block])), len(raw)
            assert close_sizes(*sizes, codec_id), sizes


#: Chunk shapes where framing details bite: odd sizes (bitshuffle remainders, B2ND padding), a fastest axis
#: shorter than szip's block or longer than its 4096-pixel scanline, incompressible tiny chunks.
ODD_CHUNKS = [(3, 3, 5, 3), (2, 3, 9, 13), (1, 1, 4, 5000), (3, 2, 7, 1)]


@pytest.mark.parametrize("chunks", ODD_CHUNKS, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("codec_id", HDF5_IDS)
def test_odd_chunk_shapes_both_ways(tmp_path, codec_id, chunks):
    spec = get_codec(codec_id)
    enc = usable(spec.encoder, "uint16")
    data = make_cube("uint16", chunks, seed=7)
    with h5py.File(tmp_path / "direct.h5", "w") as f:
        ds = f.create_dataset("x", shape=chunks, dtype="uint16", chunks=chunks, **spec.hdf5_filter("uint16"))
        ds.id.write_direct_chunk((0, 0, 0, 0), enc.encode(data))
    with h5py.File(tmp_path / "direct.h5", "r") as f:
        np.testing.assert_array_equal(f["x"][...], data)
    with h5py.File(tmp_path / "filter.h5", "w") as f:
        f.create_dataset("x", data=data, chunks=chunks, **spec.hdf5_filter("uint16"))
    with h5py.File(tmp_path / "filter.h5", "r") as f:
        mask, raw = f["x"].id.read_direct_chunk((0, 0, 0, 0))
    out = np.empty(chunks, dtype="uint16")
    if mask:  # the (optional) filter gave up on an incompressible chunk and HDF5 stored it raw
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, dtype=np.uint8)
    else:
        enc.decode(raw, out)
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("length", [4095, 4097])
def test_deflate_decoder_refuses_a_stream_of_the_wrong_length_or_corrupt(length):
    """libdeflate decodes into the chunk's buffer: a short, long or damaged stream must raise, never pass."""
    import zlib

    enc = get_codec("gzip-1").encoder("uint16")
    out = np.empty(2048, dtype="uint16")  # 4096 bytes
    with pytest.raises(Exception, match=r"expected 4096|INSUFFICIENT_SPACE"):
        enc.decode(zlib.compress(bytes(length), 1), out)
    good = zlib.compress(np.arange(2048, dtype="uint16").tobytes(), 1)
    with pytest.raises(Exception, match="BAD_DATA"):
        enc.decode(good[:-5], out)
    np.testing.assert_array_equal(enc.decode(good, out), np.arange(2048, dtype="uint16"))


# ---------------------------------------------------------------------------------------------------------------
# 3. Zarr


def write_zarr(path, spec: CodecSpec, data: np.ndarray) -> zarr.Array:
    arr = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=CHUNKS,
        dtype=data.dtype,
        fill_value=0,
        **usable(spec.zarr_kwargs, data.dtype),
    )
    arr[...] = data
    return arr


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec_id", list(CODECS))
def test_zarr_round_trip(tmp_path, codec_id, dtype):
    data = make_cube(dtype)
    write_zarr(tmp_path / "a.zarr", get_codec(codec_id), data)
    back = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")
    np.testing.assert_array_equal(back[...], data)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec_id", HDF5_IDS)
def test_zarr_and_hdf5_store_the_same_compression(tmp_path, codec_id, dtype):
    spec = get_codec(codec_id)
    data = make_cube(dtype)
    write_zarr(tmp_path / "a.zarr", spec, data)
    zarr_chunk = (tmp_path / "a.zarr" / "c" / "0" / "0" / "0" / "0").read_bytes()
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("x", data=data, chunks=CHUNKS, **usable(spec.hdf5_filter, dtype))
        hdf5_size = f["x"].id.get_chunk_info_by_coord((0, 0, 0, 0)).size
    assert close_sizes(len(zarr_chunk), hdf5_size, codec_id), (len(zarr_chunk), hdf5_size)
    from cubebench.codecs.adapter import HDF5ChunkCodec

    if any(isinstance(c, HDF5ChunkCodec) for c in spec.zarr_kwargs(dtype)["compressors"]):
        # The adapter stores exactly the direct path's bytes.
        assert zarr_chunk == spec.encoder(dtype).encode(data[:2, :2])


#: A realistic chunk for the byte-identity check: (4, 4, 128, 128) uint16 sparse counts, 512 KiB.
IDENTITY_CHUNK = (4, 4, 128, 128)


def deflate_payload(stream: bytes) -> bytes:
    """The raw deflate stream inside a zlib stream (2-byte header, 4-byte Adler-32) or a gzip member (10 + 8)."""
    if stream[:2] == b"\x1f\x8b":
        assert stream[3] == 0, "gzip member with optional fields"
        return stream[10:-8]
    return stream[2:-4]


@pytest.mark.parametrize("codec_id", list(CODECS))
def test_same_chunk_bytes_on_every_path(tmp_path, codec_id):
    """One codec id, one chunk: the direct encoder, h5py's filter pipeline and zarr-python store the same bytes.

    Where a path frames the payload differently by design, the catalog says why (``framing_note``) and the
    payloads agree within 0.5 % (deflate: the streams inside the gzip and zlib framings are equal).
    """
    spec = get_codec(codec_id)
    data = make_cube("uint16", IDENTITY_CHUNK, seed=3)
    zarr.create_array(
        store=str(tmp_path / "a.zarr"),
        shape=IDENTITY_CHUNK,
        chunks=IDENTITY_CHUNK,
        dtype="uint16",
        fill_value=0,
        **spec.zarr_kwargs("uint16"),
    )[...] = data
    zarr_bytes = (tmp_path / "a.zarr" / "c" / "0" / "0" / "0" / "0").read_bytes()
    if codec_id in NO_HDF5:
        assert spec.framing_note.startswith("no HDF5 filter")
        return
    direct = spec.encoder("uint16").encode(data)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        ds = f.create_dataset(
            "x", shape=IDENTITY_CHUNK, dtype="uint16", chunks=IDENTITY_CHUNK, **spec.hdf5_filter("uint16")
        )
        ds[...] = data
        mask, filtered = ds.id.read_direct_chunk((0, 0, 0, 0))
    assert mask == 0
    # zarr_direct stores zarr_encoder's bytes: those of the Zarr face, except where the catalog says why not.
    zarr_direct = spec.zarr_encoder("uint16").encode(data)
    if spec.family == "gzip":  # zarr's GzipCodec stamps the time into each gzip header (bytes 4-7)
        assert deflate_payload(zarr_direct) == deflate_payload(zarr_bytes)
    elif spec.family not in ("zstd", "blosc2"):
        assert zarr_direct == zarr_bytes
    if not spec.framing_note:
        assert direct == filtered
        assert zarr_bytes == filtered
        return
    if spec.family == "gzip":
        assert direct == filtered
        assert deflate_payload(zarr_bytes) == deflate_payload(filtered)
    if spec.family == "lzf":  # h5py's filter itself, up to its uninitialised hash table: a few bytes at most
        for got in (direct, zarr_bytes):  # (imagecodecs' liblzf, used before, was 2-10 % smaller)
            assert abs(len(got) - len(filtered)) <= 64, (len(got), len(filtered))
    for got in (direct, zarr_bytes):
        assert abs(len(got) - len(filtered)) <= 0.005 * len(filtered), (codec_id, len(got), len(filtered))


def test_filter_encoder_runs_any_filter_and_refuses_what_it_cannot_say():
    """FilterEncoder works for any filter (here blosc-zstd and szip): the filter's bytes, decoded through it too;
    a chunk the optional filter declines (random bytes: LZF stores them raw, mask 1) falls back to the
    standalone encoder when there is one, and is refused with the reason when not."""
    from cubebench.codecs.through_filter import FilterEncoder, filter_chunk_bytes

    data = make_cube("uint16", (2, 2, 32, 32), seed=9)
    for codec_id in ("blosc-zstd", "szip"):
        spec = get_codec(codec_id)
        enc = FilterEncoder(dtype=np.dtype("uint16"), filter_kwargs=tuple(spec.hdf5_filter("uint16").items()))
        encoded = enc.encode(data)
        assert encoded == spec.encoder("uint16").encode(data)
        np.testing.assert_array_equal(enc.decode(encoded, np.empty_like(data)), data)
    noise = np.random.default_rng(1).integers(0, 2**16, size=(1, 1, 8, 8), dtype=np.uint16)
    mask, raw = filter_chunk_bytes(noise, {"compression": "lzf"})
    assert mask != 0 and raw == noise.tobytes()
    lzf = get_codec("lzf").encoder("uint16")
    np.testing.assert_array_equal(lzf.decode(lzf.encode(noise), np.empty_like(noise)), noise)
    bare = FilterEncoder(dtype=np.dtype("uint16"), filter_kwargs=(("compression", "lzf"),))
    with pytest.raises(ValueError, match=r"declined a chunk of shape \(1, 1, 8, 8\)"):
        bare.encode(noise)


def test_adapter_store_reads_in_a_fresh_process(tmp_path):
    data = make_cube("uint16")
    write_zarr(tmp_path / "a.zarr", get_codec("bitshuffle-lz4"), data)
    meta = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    assert meta["codecs"][-1] == {
        "name": "cubebench.hdf5_chunk",
        "configuration": {"codec": "bitshuffle-lz4", "params": {"cname": "lz4"}},
    }
    script = textwrap.dedent(f"""
        import cubebench.codecs.adapter, zarr
        print(int(zarr.open_array({str(tmp_path / "a.zarr")!r}, mode="r")[...].astype("int64").sum()))
    """)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert int(result.stdout) == int(data.astype(np.int64).sum())


def test_adapter_decodes_with_the_stored_params(tmp_path):
    # A store keeps decoding as written even if the catalog's parameters change later.
    from cubebench.codecs.adapter import HDF5ChunkCodec

    data = make_cube("uint16")
    codec = HDF5ChunkCodec(codec="szip", params={"method": "nn", "pixels_per_block": 32})
    arr = zarr.create_array(
        store=str(tmp_path / "a.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="uint16", fill_value=0, compressors=[codec]
    )
    arr[...] = data
    meta = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    assert meta["codecs"][-1]["configuration"]["params"]["pixels_per_block"] == 32
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[...], data)


# ---------------------------------------------------------------------------------------------------------------
# 4. Unavailable combinations say why


def test_no_hdf5_filter_is_unavailable():
    for codec_id in NO_HDF5:
        spec = get_codec(codec_id)
        with pytest.raises(CodecUnavailableError, match=f"^{codec_id}: no HDF5 filter for pcodec"):
            spec.hdf5_filter("uint16")
        with pytest.raises(CodecUnavailableError, match=f"^{codec_id}: no HDF5 filter"):
            spec.encoder("uint16")
        from cubebench.backends import availability

        found = availability(spec, "uint16")
        assert found["hdf5"] == "no HDF5 filter for pcodec"
        assert found["hdf5_direct"] is not None and "no HDF5 filter for pcodec" in found["hdf5_direct"]
        assert found["zarr"] is None
        assert found["zarr_direct"] == "pcodec is a Zarr array-to-bytes serializer: no chunk encoder outside zarr"


def test_pcodec_is_a_zarr_serializer():
    spec = get_codec("pcodec")
    kwargs = spec.zarr_kwargs("uint16")
    assert kwargs["compressors"] == []
    assert kwargs["serializer"].to_dict() == {"name": "numcodecs.pcodec", "configuration": {"level": 8}}
    with pytest.raises(CodecUnavailableError, match=r"^pcodec: .*serializer"):
        spec.zarr_codecs("uint16")
    with pytest.raises(CodecUnavailableError, match=r"^pcodec: pcodec does not take uint8"):
        spec.zarr_kwargs("uint8")


@pytest.mark.parametrize("dtype", ["complex64", ">u2", "U4"])
def test_unsupported_dtypes(dtype):
    for spec in CODECS.values():
        for face in (spec.hdf5_filter, spec.zarr_kwargs, spec.encoder):
            with pytest.raises(CodecUnavailableError, match=f"^{spec.id}: dtype"):
                face(dtype)


def test_missing_optional_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "blosc2", None)  # "import blosc2" now raises ImportError
    spec = get_codec("blosc2-zstd")
    with pytest.raises(CodecUnavailableError, match=r"^blosc2-zstd: the blosc2 package is not installed"):
        spec.encoder("uint16")
    with pytest.raises(CodecUnavailableError, match=r"^blosc2-zstd: the blosc2 package is not installed"):
        spec.zarr_kwargs("uint16")
    assert spec.hdf5_filter("uint16")["compression"] == 32026  # hdf5plugin's own compiled filter


def test_unregistered_hdf5_filter(monkeypatch):
    monkeypatch.setattr(h5py.h5z, "filter_avail", lambda filter_id: filter_id != 32008)
    with pytest.raises(CodecUnavailableError, match=r"^bitshuffle-lz4: HDF5 filter Bitshuffle \(32008\)"):
        get_codec("bitshuffle-lz4").hdf5_filter("uint16")


def test_szip_chunk_smaller_than_a_block():
    enc = get_codec("szip").encoder("uint16")
    with pytest.raises(CodecUnavailableError, match=r"smaller than szip's 8 pixels per block"):
        enc.encode(np.ones((1, 1, 1, 4), dtype="uint16"))


def test_encoder_rejects_a_wrong_dtype():
    with pytest.raises(TypeError, match=r"float32"):
        get_codec("zstd").encoder("uint16").encode(np.zeros(CHUNKS, dtype="float32"))


# ---------------------------------------------------------------------------------------------------------------
# Encoders: pickleable and thread-safe (they run on Dask workers); codec threads


def available_encoders(dtype: str) -> list:
    out = []
    for spec in CODECS.values():
        try:
            out.append((spec, spec.encoder(dtype)))
        except CodecUnavailableError:
            continue
    return out


def test_encoders_pickle_and_run_in_threads():
    data = make_cube("uint16")
    blocks = [np.ascontiguousarray(data[block]) for _, block in chunk_offsets()]
    for spec, enc in available_encoders("uint16"):
        serial = [enc.encode(b) for b in blocks]
        clone = pickle.loads(pickle.dumps(enc))
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(clone.encode, blocks)) == serial, spec.id


@pytest.fixture(params=["blosc2", "numcodecs"])
def small_chunk_decoder(request, monkeypatch):
    """The Blosc decoder of many small chunks: C-Blosc2 (python-blosc2), or numcodecs' when blosc2 is missing."""
    from cubebench.codecs import encoders

    encoders._small_chunk_decoder.cache_clear()
    if request.param == "numcodecs":
        monkeypatch.setitem(sys.modules, "blosc2", None)  # import blosc2 raises ImportError
    yield request.param
    encoders._small_chunk_decoder.cache_clear()


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_many_decodes_each_chunk(dtype, small_chunk_decoder):
    """A shard's chunks end to end, in any order, decode as each alone does, with every encoder of both faces."""
    data = make_cube(dtype)
    blocks = [np.ascontiguousarray(data[block]) for _, block in chunk_offsets()]
    for spec in CODECS.values():
        for face in (spec.encoder, spec.zarr_encoder):
            try:
                enc = face(dtype)
            except CodecUnavailableError:
                continue
            parts = [enc.encode(b) for b in blocks]
            spans = [(sum(map(len, parts[:n])), len(part)) for n, part in enumerate(parts)]
            out = np.zeros((len(blocks), *CHUNKS), dtype=dtype)
            enc.decode_many(b"".join(parts), spans[::-1], list(out)[::-1])
            np.testing.assert_array_equal(out, np.stack(blocks), err_msg=f"{spec.id} {face.__name__}")


def test_blosc_decoders_refuse_a_chunk_of_another_size(small_chunk_decoder):
    enc = get_codec("blosc-lz4").zarr_encoder("uint16")
    data = enc.encode(make_cube("uint16", CHUNKS))
    wrong = np.empty((1, 2, 32, 32), dtype="uint16")  # half the chunk
    for decode in (enc.decode, lambda d, out: enc.decode_many(d, [(0, len(d))], [out])):
        with pytest.raises(ValueError, match=r"a Blosc chunk of 8192 bytes, expected 4096"):
            decode(data, wrong)
        with pytest.raises(ValueError, match=r"a stored chunk of 8 bytes is shorter than a Blosc header"):
            decode(data[:8], wrong)
        with pytest.raises((RuntimeError, ValueError)):  # the header is whole, the compressed data not
            decode(data[: len(data) // 2], np.empty(CHUNKS, dtype="uint16"))


def test_set_codec_threads(monkeypatch):
    import blosc2
    from numcodecs import blosc

    monkeypatch.delenv("BLOSC_NTHREADS", raising=False)
    before = blosc.get_nthreads(), blosc2.nthreads
    try:
        set_codec_threads(1)
        assert sys.modules["os"].environ["BLOSC_NTHREADS"] == "1"
        assert blosc.get_nthreads() == 1
        assert blosc2.nthreads == 1
    finally:
        blosc.set_nthreads(before[0])
        blosc2.set_nthreads(before[1])
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match=r"codec threads"):
            set_codec_threads(bad)


# ---------------------------------------------------------------------------------------------------------------
# 5. Property: every available encoder round-trips any small chunk shape


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 16), st.integers(1, 16)),
    seed=st.integers(0, 2**32 - 1),
)
def test_encoders_round_trip(shape, seed):
    data = make_cube("uint16", shape, seed)
    for spec, enc in available_encoders("uint16"):
        if spec.family == "szip" and data.size < spec.kw["pixels_per_block"]:
            with pytest.raises(CodecUnavailableError):
                enc.encode(data)
            continue
        out = np.empty(shape, dtype="uint16")
        np.testing.assert_array_equal(enc.decode(enc.encode(data), out), data, err_msg=spec.id)
