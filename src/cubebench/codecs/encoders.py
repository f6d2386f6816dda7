"""Direct-chunk encoders: the chunk bytes each HDF5 filter stores, made and decoded outside HDF5.

The direct HDF5 path (``write_direct_chunk``), the Zarr adapter codec and the direct Zarr path all use these,
so "the same codec id stores the same bytes" holds by construction. Framing facts, measured byte for byte
against the filters (h5py 3.16, HDF5 2.0, hdf5plugin 7.1), are noted on each encoder class.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cubebench.codecs.spec import SHUFFLE, ChunkEncoder, CodecSpec, FaceUnavailable, decode_each, register_faces
from cubebench.codecs.through_filter import FilterEncoder
from cubebench.errors import CodecUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def _flat_bytes(out: np.ndarray) -> np.ndarray:
    """A writable flat uint8 view of ``out`` (which must be C-contiguous)."""
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writable C-contiguous array")
    return out.reshape(-1).view(np.uint8)


@dataclass(frozen=True, kw_only=True)
class _Encoder:
    """Base: checks the chunk's dtype and contiguity, then defers to ``_encode``/``_decode``."""

    dtype: np.dtype
    #: Python modules the encoder needs; their absence makes the codec unavailable with the reason.
    requires: ClassVar[tuple[str, ...]] = ()

    def encode(self, chunk: np.ndarray) -> bytes:
        """Return the bytes the HDF5 filter would store for ``chunk`` (a full chunk, any layout)."""
        if chunk.dtype != self.dtype:
            raise TypeError(f"chunk dtype {chunk.dtype} differs from the encoder's {self.dtype}")
        return self._encode(np.ascontiguousarray(chunk))

    def decode(self, data: Any, out: np.ndarray) -> np.ndarray:
        """Decode ``data`` into ``out`` (C-contiguous, the chunk's shape and dtype) and return ``out``."""
        if out.dtype != self.dtype:
            raise TypeError(f"out dtype {out.dtype} differs from the encoder's {self.dtype}")
        self._decode(data, out)
        return out

    def decode_many(self, data: Any, spans: Sequence[Sequence[int]], outs: Sequence[np.ndarray]) -> None:
        """Decode the chunk stored at each ``(offset, nbytes)`` of ``data`` into the array of ``outs`` at its place.

        :meth:`decode` of each; a codec whose library takes little per call overrides it to do less per chunk.
        """
        decode_each(self, data, spans, outs)

    def _encode(self, arr: np.ndarray) -> bytes:
        raise NotImplementedError

    def _decode(self, data: Any, out: np.ndarray) -> None:
        raise NotImplementedError


def _imagecodecs() -> Any:
    """imagecodecs, typed loosely: its stubs reject numpy arrays, which it takes (zero-copy) at runtime."""
    import imagecodecs

    return imagecodecs


def _copy_into(out: np.ndarray, raw: Any) -> None:
    flat = _flat_bytes(out)
    src = np.frombuffer(raw, dtype=np.uint8)
    if src.size != flat.size:
        raise ValueError(f"decoded {src.size} bytes, expected {flat.size}")
    flat[:] = src


@dataclass(frozen=True, kw_only=True)
class _RawEncoder(_Encoder):
    """No filter: the chunk's bytes as they are."""

    def _encode(self, arr: np.ndarray) -> bytes:
        return arr.tobytes()

    def _decode(self, data: Any, out: np.ndarray) -> None:
        _copy_into(out, data)


def stores_raw(encoder: ChunkEncoder) -> bool:
    """Whether ``encoder`` stores a chunk's bytes as they are (no filter), so a reader may read them in place."""
    return isinstance(encoder, _RawEncoder)


@dataclass(frozen=True, kw_only=True)
class _DeflateEncoder(_Encoder):
    """HDF5 deflate (filter 1) stores a zlib stream: ``zlib.compress(data, level)`` (not gzip framing).

    Encoding is zlib's own, so the bytes equal the filter's. Decoding any zlib stream gives the same data, so it
    uses libdeflate (imagecodecs' ``deflate_decode``), straight into ``out``: 4x zlib's speed on 128 MiB uint16
    chunks here (0.07 vs 0.31 s), and no chunk-sized temporary.
    """

    level: int
    #: zlib's ``wbits`` for the framing: a zlib stream.
    wbits: ClassVar[int] = zlib.MAX_WBITS
    #: The imagecodecs function that decodes that framing into ``out``.
    decoder: ClassVar[str] = "deflate_decode"

    def _encode(self, arr: np.ndarray) -> bytes:
        return zlib.compress(arr.data, self.level, self.wbits)

    def _decode(self, data: Any, out: np.ndarray) -> None:
        flat = _flat_bytes(out)
        if flat.size == 0:
            return
        decoded = getattr(_imagecodecs(), self.decoder)(data, out=flat)
        if len(decoded) != flat.size:
            raise ValueError(f"decoded {len(decoded)} bytes, expected {flat.size}")


@dataclass(frozen=True, kw_only=True)
class _GzipEncoder(_DeflateEncoder):
    """Zarr's gzip codec stores a gzip member (numcodecs ``GZip``): the same deflate stream in gzip framing."""

    wbits: ClassVar[int] = 16 + zlib.MAX_WBITS
    decoder: ClassVar[str] = "gzip_decode"


@dataclass(frozen=True, kw_only=True)
class _LzfEncoder(_Encoder):
    """h5py's LZF (filter 32000) stores a bare LZF stream (no header); any LZF encoder's stream decodes.

    Not byte-identical: imagecodecs' liblzf finds more matches than the LZF compiled into h5py (chunks 4-10 %
    smaller on uint16 data), so the ``lzf`` face is a :class:`~cubebench.codecs.through_filter.FilterEncoder`
    that runs h5py's filter; this one decodes (fast, into ``out``) and encodes the chunks the filter declines.
    """

    requires: ClassVar[tuple[str, ...]] = ("imagecodecs",)

    def _encode(self, arr: np.ndarray) -> bytes:
        imagecodecs = _imagecodecs()

        return bytes(imagecodecs.lzf_encode(arr, header=False))

    def _decode(self, data: Any, out: np.ndarray) -> None:
        imagecodecs = _imagecodecs()

        imagecodecs.lzf_decode(data, header=False, out=_flat_bytes(out))


#: libaec/szlib option bits, as HDF5 sets them (H5Pset_szip + H5Z__set_local_szip).
_SZ_ALLOW_K13, _SZ_EC, _SZ_LSB, _SZ_NN, _SZ_RAW = 1, 4, 8, 32, 128
_SZ_MAX_BLOCKS_PER_SCANLINE, _SZ_MAX_PIXELS_PER_SCANLINE = 128, 4096


def szip_cd_values(shape: Sequence[int], dtype: Any, method: str, pixels_per_block: int) -> tuple[int, int, int, int]:
    """The szip parameters HDF5 derives for a chunk: ``(options_mask, pixels_per_block, bits_per_pixel, scanline)``.

    A transcription of ``H5Z__set_local_szip`` (HDF5 passes the *chunk's* dataspace there, measured): the scanline
    is the chunk's fastest dimension, bounded by ``pixels_per_block * 128``; when that dimension is shorter than a
    block, the chunk's element count takes its place.
    """
    dt = np.dtype(dtype)
    npoints = int(np.prod(shape, dtype=np.int64))
    if npoints < pixels_per_block:
        raise FaceUnavailable(
            f"a chunk of {npoints} elements is smaller than szip's {pixels_per_block} pixels per block"
        )
    scanline = int(shape[-1])
    bound = pixels_per_block * _SZ_MAX_BLOCKS_PER_SCANLINE
    if scanline < pixels_per_block:
        scanline = min(bound, npoints)
    elif scanline <= _SZ_MAX_PIXELS_PER_SCANLINE:
        scanline = min(bound, scanline)
    else:
        scanline = bound
    bits = dt.itemsize * 8
    mask = _SZ_ALLOW_K13 | _SZ_RAW | _SZ_LSB | (_SZ_NN if method == "nn" else _SZ_EC)
    return mask, pixels_per_block, bits, scanline


@dataclass(frozen=True, kw_only=True)
class _SzipEncoder(_Encoder):
    """HDF5 szip (filter 4) stores a 4-byte little-endian size, then the libaec stream with HDF5's cd_values.

    ``imagecodecs.szip_encode(..., header=True)`` with :func:`szip_cd_values` matches h5py byte for byte.
    """

    method: str
    pixels_per_block: int
    requires: ClassVar[tuple[str, ...]] = ("imagecodecs",)

    def _params(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        try:
            return szip_cd_values(shape, self.dtype, self.method, self.pixels_per_block)
        except FaceUnavailable as err:
            raise CodecUnavailableError(f"szip: {err}") from None

    def _encode(self, arr: np.ndarray) -> bytes:
        imagecodecs = _imagecodecs()

        return bytes(imagecodecs.szip_encode(arr, *self._params(arr.shape), header=True))

    def _decode(self, data: Any, out: np.ndarray) -> None:
        imagecodecs = _imagecodecs()

        imagecodecs.szip_decode(data, *self._params(out.shape), header=True, out=_flat_bytes(out))


@functools.cache
def _blosc() -> Any:
    """numcodecs' blosc module: its ``compress`` and ``decompress``, the functions numcodecs' ``Blosc`` codec calls."""
    from numcodecs import blosc

    return blosc


#: Bytes of a Blosc (1) chunk's header; bytes 4-7 hold the decoded size (little-endian).
_BLOSC_HEADER = 16


def _blosc_size(chunk: memoryview, out: np.ndarray) -> None:
    """Check that the Blosc chunk ``chunk`` decodes to ``out``'s size, as its header states."""
    if len(chunk) < _BLOSC_HEADER:
        raise ValueError(f"a stored chunk of {len(chunk)} bytes is shorter than a Blosc header")
    size = int.from_bytes(chunk[4:8], "little")
    if size != out.nbytes:
        raise ValueError(f"a Blosc chunk of {size} bytes, expected {out.nbytes}")


@functools.cache
def _small_chunk_decoder() -> Callable[[memoryview, np.ndarray], Any]:
    """``decompress(chunk, out)`` for small Blosc chunks, one thread each: C-Blosc2's when python-blosc2 is here.

    C-Blosc2 decodes Blosc 1 chunks (it is backward compatible with their format; any decoder gives the same
    bytes) and sets up a call in much less time than the C-Blosc 1 of numcodecs, which counts on small chunks.
    Measured here on the 32 KiB inner chunks of a shard (128 x 128 uint16 counts, one thread, medians of 30): lz4
    10.3 against 12.1 us each, zstd 22.3 against 35.3. python-blosc2 then releases the GIL around C work
    (``set_releasegil``, for the whole process), as numcodecs does, so that threads of one worker decode in
    parallel. Without python-blosc2: numcodecs' ``decompress``.
    """
    try:
        import blosc2
    except ImportError:
        numcodecs_decompress: Callable[[memoryview, np.ndarray], Any] = _blosc().decompress
        return numcodecs_decompress
    blosc2.set_releasegil(True)

    def decompress(chunk: memoryview, out: np.ndarray) -> None:
        blosc2.decompress2(chunk, dst=out, nthreads=1)

    return decompress


@dataclass(frozen=True, kw_only=True)
class _BloscEncoder(_Encoder):
    """hdf5-blosc (filter 32001) stores a plain blosc1 buffer: numcodecs' Blosc, typesize = itemsize, blocksize 0.

    It calls numcodecs' ``blosc.compress`` and ``decompress`` itself, as the ``Blosc`` codec does, without the
    codec object and its checks on every call. :meth:`decode_many` (a shard's small chunks) decodes with
    :func:`_small_chunk_decoder`.
    """

    cname: str
    clevel: int
    shuffle: str
    requires: ClassVar[tuple[str, ...]] = ("numcodecs",)

    def _encode(self, arr: np.ndarray) -> bytes:
        cname = self.cname.encode("ascii")
        return bytes(_blosc().compress(arr, cname, self.clevel, SHUFFLE[self.shuffle], 0, self.dtype.itemsize))

    def _decode(self, data: Any, out: np.ndarray) -> None:
        chunk, flat = memoryview(data).cast("B"), _flat_bytes(out)
        _blosc_size(chunk, flat)
        _blosc().decompress(chunk, flat)

    def decode_many(self, data: Any, spans: Sequence[Sequence[int]], outs: Sequence[np.ndarray]) -> None:
        """:meth:`decode` of each chunk, with only the checks each needs (its ``out``'s dtype and layout, its size)."""
        decompress = _small_chunk_decoder()
        view = memoryview(data).cast("B")
        for (offset, nbytes), out in zip(spans, outs, strict=True):
            if out.dtype != self.dtype or not out.flags.c_contiguous:
                layout = "C-contiguous" if out.flags.c_contiguous else "not C-contiguous"
                raise TypeError(f"out must be a C-contiguous {self.dtype} array, not a {layout} {out.dtype} one")
            chunk = view[offset : offset + nbytes]
            _blosc_size(chunk, out)
            decompress(chunk, out)


#: The HDF5 LZ4 filter's block size when its parameter is 0 (hdf5plugin.LZ4() default): 1 GiB.
_LZ4_DEFAULT_BLOCK = 1 << 30


@dataclass(frozen=True, kw_only=True)
class _Lz4H5Encoder(_Encoder):
    """HDF5 LZ4 (filter 32004): ``>Q`` total size, ``>I`` block size (min(1 GiB, chunk)), per block ``>I`` + LZ4.

    ``imagecodecs.lz4h5_encode`` writes that framing; the block size is passed explicitly so that the header
    matches the filter's default (measured: the filter writes min(1 GiB, chunk bytes)).
    """

    requires: ClassVar[tuple[str, ...]] = ("imagecodecs",)

    def _encode(self, arr: np.ndarray) -> bytes:
        imagecodecs = _imagecodecs()

        block = max(1, min(arr.nbytes, _LZ4_DEFAULT_BLOCK))
        return bytes(imagecodecs.lz4h5_encode(arr, blocksize=block))

    def _decode(self, data: Any, out: np.ndarray) -> None:
        imagecodecs = _imagecodecs()

        imagecodecs.lz4h5_decode(data, out=_flat_bytes(out))


def bitshuffle_block_size(itemsize: int) -> int:
    """Bitshuffle's default block size in elements (``bshuf_default_block_size``): 8 KiB, a multiple of 8."""
    return max((8192 // itemsize) // 8 * 8, 128)


@dataclass(frozen=True, kw_only=True)
class _BitshuffleEncoder(_Encoder):
    """Bitshuffle (filter 32008): 12-byte header ``>Q`` chunk bytes, ``>I`` block size in *bytes*, then blocks.

    Measured: the header's block size is ``block elements x itemsize`` (8192 for uint16 and float32 alike), and
    ``bitshuffle.compress_lz4``/``compress_zstd`` with the default block size match the filter's body.
    """

    cname: str
    clevel: int | None = None
    requires: ClassVar[tuple[str, ...]] = ("bitshuffle",)

    def _encode(self, arr: np.ndarray) -> bytes:
        import bitshuffle

        block = bitshuffle_block_size(arr.itemsize)
        flat = arr.reshape(-1)
        if self.cname == "zstd":
            body = bitshuffle.compress_zstd(flat, block, self.clevel)
        else:
            body = bitshuffle.compress_lz4(flat, block)
        header: bytes = struct.pack(">QI", arr.nbytes, block * arr.itemsize)
        return header + bytes(body)

    def _decode(self, data: Any, out: np.ndarray) -> None:
        import bitshuffle

        total, block_bytes = struct.unpack_from(">QI", data)
        if total != out.nbytes:
            raise ValueError(f"bitshuffle header says {total} bytes, expected {out.nbytes}")
        body = np.frombuffer(data, dtype=np.uint8, offset=12)
        decompress = bitshuffle.decompress_zstd if self.cname == "zstd" else bitshuffle.decompress_lz4
        res = decompress(body, (out.size,), out.dtype, block_bytes // out.itemsize)
        _flat_bytes(out)[:] = res.view(np.uint8)


@dataclass(frozen=True, kw_only=True)
class _ZstdEncoder(_Encoder):
    """HDF5 zstd (filter 32015) stores one zstd frame; ``imagecodecs.zstd_encode`` matched byte for byte."""

    clevel: int
    requires: ClassVar[tuple[str, ...]] = ("imagecodecs",)

    def _encode(self, arr: np.ndarray) -> bytes:
        imagecodecs = _imagecodecs()

        return bytes(imagecodecs.zstd_encode(arr, self.clevel))

    def _decode(self, data: Any, out: np.ndarray) -> None:
        imagecodecs = _imagecodecs()

        imagecodecs.zstd_decode(data, out=_flat_bytes(out))


#: Blosc2 compressor codes (BLOSC_BLOSCLZ ... BLOSC_ZSTD).
_BLOSC2_CODES = {"blosclz": 0, "lz4": 1, "lz4hc": 2, "zlib": 4, "zstd": 5}


@functools.lru_cache(maxsize=64)
def _blosc2_block_bytes(nbytes: int, itemsize: int, cname: str, clevel: int) -> int:
    """Blosc2's suggested block size for a chunk, as the HDF5 filter asks for it (``blosc2_chunk_zeros``)."""
    import blosc2

    zeros = blosc2.compress2(
        np.zeros(nbytes, dtype=np.uint8),
        codec=blosc2.Codec(_BLOSC2_CODES[cname]),
        clevel=clevel,
        typesize=itemsize,
        nthreads=1,
        splitmode=blosc2.SplitMode.FORWARD_COMPAT_SPLIT,
        filters=[blosc2.Filter.SHUFFLE],  # BLOSC2_CPARAMS_DEFAULTS, as in the filter
        filters_meta=[0],
    )
    return int(blosc2.get_cbuffer_sizes(zeros)[2])


def b2nd_block_shape(block_bytes: int, itemsize: int, chunk: Sequence[int]) -> tuple[int, ...]:
    """The B2ND block shape hdf5-blosc2 picks (``compute_b2nd_block_shape``): grow from the innermost axis."""
    nitems = block_bytes // itemsize
    blocks = [1 if c == 1 else 2 for c in chunk]
    n = int(np.prod(blocks))
    while n < nitems:
        prev = n
        for i in range(len(chunk) - 1, -1, -1):
            if blocks[i] * 2 <= chunk[i]:
                if n * 2 <= nitems:
                    n *= 2
                    blocks[i] *= 2
            elif blocks[i] < chunk[i]:
                ext = (n // blocks[i]) * chunk[i]
                if ext <= nitems:
                    n = ext
                    blocks[i] = chunk[i]
        if n == prev:
            break
    return tuple(blocks)


@dataclass(frozen=True, kw_only=True)
class _Blosc2Encoder(_Encoder):
    """hdf5-blosc2 (filter 32026) stores a B2ND cframe (chunk = the HDF5 chunk, one chunk) for 2-8-D chunks.

    Made with python-blosc2 with the filter's block shape and parameters; the frames differ from the filter's
    only in the dtype string of the b2nd metalayer (ours names the dtype, the filter's is opaque ``|V2``), and
    the filter decodes any B2ND frame. python-blosc2 holds the GIL: parallelize it in processes.
    """

    cname: str
    clevel: int
    shuffle: str
    requires: ClassVar[tuple[str, ...]] = ("blosc2",)

    def _encode(self, arr: np.ndarray) -> bytes:
        import blosc2

        if not 2 <= arr.ndim <= blosc2.MAX_DIM:
            raise CodecUnavailableError(f"blosc2: a {arr.ndim}-D chunk is not stored as B2ND by the HDF5 filter")
        block = _blosc2_block_bytes(arr.nbytes, arr.itemsize, self.cname, self.clevel)
        cparams = blosc2.CParams(
            codec=blosc2.Codec(_BLOSC2_CODES[self.cname]),
            clevel=self.clevel,
            typesize=arr.itemsize,
            nthreads=blosc2.nthreads,
            splitmode=blosc2.SplitMode.FORWARD_COMPAT_SPLIT,
            filters=[blosc2.Filter(SHUFFLE[self.shuffle])],
            filters_meta=[0],
        )
        nd = blosc2.asarray(
            arr, chunks=arr.shape, blocks=b2nd_block_shape(block, arr.itemsize, arr.shape), cparams=cparams
        )
        return bytes(nd.to_cframe())

    def _decode(self, data: Any, out: np.ndarray) -> None:
        import blosc2

        res = blosc2.ndarray_from_cframe(bytes(data))[...]
        _copy_into(out, np.ascontiguousarray(res).reshape(-1).view(np.uint8))


def _build_encoder(cls: type[_Encoder], spec: CodecSpec, dt: np.dtype) -> ChunkEncoder:
    """An encoder face: check the libraries ``cls`` needs, then ``cls(dtype=dt, **spec.params)``."""
    for module in cls.requires:
        try:
            __import__(module)
        except ImportError:
            raise FaceUnavailable(f"the {module} package is not installed (pip install {module})") from None
    return cls(dtype=dt, **spec.kw)


def _make_encoder(cls: type[_Encoder]) -> Callable[[CodecSpec, np.dtype], ChunkEncoder]:
    """The encoder face of a family whose encoder class is ``cls``."""
    return functools.partial(_build_encoder, cls)


def _through_filter(cls: type[_Encoder]) -> Callable[[CodecSpec, np.dtype], ChunkEncoder]:
    """The encoder face of a family whose only byte-identical encoder is HDF5's filter itself (``cls`` decodes)."""

    def build(spec: CodecSpec, dt: np.dtype) -> ChunkEncoder:
        standalone = _build_encoder(cls, spec, dt)
        return FilterEncoder(dtype=dt, filter_kwargs=tuple(spec.hdf5_filter(dt).items()), standalone=standalone)

    return build


def _bitshuffle_face(spec: CodecSpec, dt: np.dtype) -> ChunkEncoder:
    """bitshuffle-lz4: the ``bitshuffle`` package matches the filter byte for byte; bitshuffle-zstd does not.

    hdf5plugin's filter and the ``bitshuffle`` package link different libzstd builds (measured: 192 033 against
    192 073 bytes on a 512 KiB uint16 chunk), so zstd goes through the filter.
    """
    if spec.kw.get("cname") == "zstd":
        return _through_filter(_BitshuffleEncoder)(spec, dt)
    return _build_encoder(_BitshuffleEncoder, spec, dt)


def _no_encoder(spec: CodecSpec, dt: np.dtype) -> Any:
    raise FaceUnavailable(f"no HDF5 filter for {spec.family}, so no direct-chunk bytes")


def _no_zarr_encoder(spec: CodecSpec, dt: np.dtype) -> Any:
    raise FaceUnavailable(f"{spec.family} is a Zarr array-to-bytes serializer: no chunk encoder outside zarr")


register_faces(
    "encoder",
    {
        "none": _make_encoder(_RawEncoder),
        "gzip": _make_encoder(_DeflateEncoder),
        "lzf": _through_filter(_LzfEncoder),
        "szip": _make_encoder(_SzipEncoder),
        "blosc": _make_encoder(_BloscEncoder),
        "lz4": _make_encoder(_Lz4H5Encoder),
        "bitshuffle": _bitshuffle_face,
        "blosc2": _make_encoder(_Blosc2Encoder),
        "zstd": _make_encoder(_ZstdEncoder),
        "pcodec": _no_encoder,
    },
)
# Zarr stores the HDF5 filter's bytes (the "encoder" face) for every family but these two.
register_faces("zarr_encoder", {"gzip": _make_encoder(_GzipEncoder), "pcodec": _no_zarr_encoder})
