"""The codec catalog: one neutral :class:`CodecSpec` per id, meaning the same compression on every storage path.

A spec is plain data (id, family, parameters). Its three faces are computed from that data by the family's
functions in :data:`_FAMILIES`, so a parameter is written down once and cannot drift between paths:

- :meth:`CodecSpec.hdf5_filter`: keyword arguments for h5py ``create_dataset`` (h5py built-ins or hdf5plugin);
- :meth:`CodecSpec.zarr_kwargs`: keyword arguments for ``zarr.create_array`` (``compressors=`` and, for
  array-to-bytes codecs such as pcodec, ``serializer=``);
- :meth:`CodecSpec.encoder`: a :class:`ChunkEncoder` that makes, outside HDF5, exactly the chunk bytes the HDF5
  filter would store (for ``write_direct_chunk``) and decodes them back (after ``read_direct_chunk``).

Codecs that have no standard Zarr v3 codec (lzf, szip, lz4, bitshuffle-*, blosc2-*) are stored in Zarr through
:class:`cubebench.zarr_codec.HDF5ChunkCodec`, which wraps the same encoder: the Zarr chunk then holds the very
bytes HDF5 would hold. Framing facts, measured byte for byte against the filters (h5py 3.16, HDF5 2.0,
hdf5plugin 7.1), are noted on each encoder class.

Examples
--------
>>> spec = get_codec("blosc-zstd")
>>> spec.hdf5_filter("uint16")["compression"]
32001
>>> enc = spec.encoder("uint16")
>>> import numpy as np
>>> chunk = np.arange(4096, dtype="uint16").reshape(1, 1, 64, 64)
>>> bool((enc.decode(enc.encode(chunk), np.empty_like(chunk)) == chunk).all())
True
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from cubebench.errors import CodecUnavailableError, ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "CODECS",
    "ChunkEncoder",
    "CodecSpec",
    "get_codec",
    "resolve_codecs",
    "set_codec_threads",
]

#: HDF5 filter ids used by the catalog.
FILTER_DEFLATE = 1
FILTER_SZIP = 4
FILTER_LZF = 32000
FILTER_BLOSC = 32001
FILTER_LZ4 = 32004
FILTER_BITSHUFFLE = 32008
FILTER_ZSTD = 32015
FILTER_BLOSC2 = 32026


class _Unavailable(Exception):
    """Internal: a face cannot be built; the public methods turn it into ``CodecUnavailableError("<id>: why")``."""


@runtime_checkable
class ChunkEncoder(Protocol):
    """Encode and decode one HDF5 chunk outside HDF5, byte-compatible with the HDF5 filter.

    Implementations are pickleable (they are shipped to Dask workers) and thread-safe, and release the GIL
    wherever the underlying library does.
    """

    def encode(self, chunk: np.ndarray) -> bytes:
        """Return the bytes the HDF5 filter pipeline would store for ``chunk`` (full chunk shape)."""
        ...

    def decode(self, data: Any, out: np.ndarray) -> np.ndarray:
        """Decode ``data`` (bytes-like) into ``out`` (C-contiguous, the chunk's shape and dtype) and return it."""
        ...


# ---------------------------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class CodecSpec:
    """One lossless codec, described neutrally; the same parameters on every storage path.

    Parameters
    ----------
    id
        Catalog key, e.g. ``"blosc-zstd"``.
    family
        Key into the family table that builds the three faces: ``"none"``, ``"gzip"``, ``"lzf"``, ``"szip"``,
        ``"blosc"``, ``"lz4"``, ``"bitshuffle"``, ``"blosc2"``, ``"zstd"``, ``"pcodec"``.
    description
        One line for tables and provenance.
    params
        The family's parameters as ``(name, value)`` pairs (JSON-able values); the only place they are written.
    study
        True for the original study's codecs (and ``none``).
    """

    id: str
    family: str
    description: str
    params: tuple[tuple[str, Any], ...]
    study: bool

    @property
    def kw(self) -> dict[str, Any]:
        """``params`` as a dict."""
        return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-able) for provenance attributes."""
        return {
            "id": self.id,
            "family": self.family,
            "description": self.description,
            "params": self.kw,
            "study": self.study,
        }

    def hdf5_filter(self, dtype: Any) -> dict[str, Any]:
        """Keyword arguments for h5py ``create_dataset`` (``compression=``, ``compression_opts=``).

        Raises
        ------
        CodecUnavailableError
            ``"<id>: <reason>"`` when the filter is not registered in this HDF5/hdf5plugin or cannot take ``dtype``.
        """
        kwargs: dict[str, Any] = self._face("hdf5", dtype)
        return kwargs

    def zarr_kwargs(self, dtype: Any) -> dict[str, Any]:
        """Keyword arguments for ``zarr.create_array``: ``compressors=[...]``, plus ``serializer=`` for pcodec.

        Always pass all of them: pcodec is an array-to-bytes codec in Zarr v3 and must be the ``serializer``,
        with no compressor after it (``compressors`` defaults to zstd otherwise). Importing this face also
        registers :class:`cubebench.zarr_codec.HDF5ChunkCodec` with zarr.
        """
        kwargs: dict[str, Any] = self._face("zarr", dtype)
        return kwargs

    def zarr_codecs(self, dtype: Any) -> list[Any]:
        """The Zarr v3 bytes-to-bytes codecs (``compressors=``); ``[]`` for ``none``.

        Raises :class:`CodecUnavailableError` for codecs that need a ``serializer`` (pcodec): use
        :meth:`zarr_kwargs` for those, so that a codec is never silently dropped.
        """
        kwargs = self.zarr_kwargs(dtype)
        if "serializer" in kwargs:
            raise CodecUnavailableError(
                f"{self.id}: is a Zarr array-to-bytes codec (serializer=), not a compressor; use zarr_kwargs()"
            )
        return list(kwargs["compressors"])

    def encoder(self, dtype: Any) -> ChunkEncoder:
        """A :class:`ChunkEncoder` making the HDF5 filter's chunk bytes for ``dtype``.

        Raises
        ------
        CodecUnavailableError
            ``"<id>: <reason>"`` when the library is missing or no byte-compatible encoder exists.
        """
        enc: ChunkEncoder = self._face("encoder", dtype)
        return enc

    def zarr_encoder(self, dtype: Any) -> ChunkEncoder:
        """A :class:`ChunkEncoder` making the chunk bytes Zarr stores with :meth:`zarr_kwargs`' codecs.

        For every family but gzip these are the HDF5 filter's bytes: the same blosc1 buffer, zstd frame or raw
        bytes, and :class:`cubebench.zarr_codec.HDF5ChunkCodec` stores exactly them; Zarr's gzip codec frames
        the same deflate stream as gzip, not zlib.

        Raises
        ------
        CodecUnavailableError
            ``"<id>: <reason>"`` when the library is missing or the codec has no chunk encoder (pcodec).
        """
        enc: ChunkEncoder = self._face("zarr_encoder", dtype)
        return enc

    def availability(self, dtype: Any) -> dict[str, str | None]:
        """``{"hdf5": ..., "hdf5_direct": ..., "zarr": ..., "zarr_direct": ...}``: ``None`` where usable, else why."""
        out: dict[str, str | None] = {}
        for path, faces in _PATH_FACES.items():
            try:
                for face in faces:
                    self._face(face, dtype)
                out[path] = None
            except CodecUnavailableError as err:
                out[path] = str(err).removeprefix(f"{self.id}: ")
        return out

    def _face(self, face: str, dtype: Any) -> Any:
        try:
            dt = _check_dtype(dtype)
            return getattr(_FAMILIES[self.family], face)(self, dt)
        except _Unavailable as err:
            raise CodecUnavailableError(f"{self.id}: {err}") from None


def _check_dtype(dtype: Any) -> np.dtype:
    """Accept native-order integer and float dtypes of 1, 2, 4 or 8 bytes (what a 4-D detector cube holds)."""
    try:
        dt: np.dtype[Any] = np.dtype(dtype)
    except TypeError:
        raise _Unavailable(f"{dtype!r} is not a dtype") from None
    if dt.kind not in "uif" or dt.itemsize not in (1, 2, 4, 8):
        raise _Unavailable(f"dtype {dt} is not supported (integer or float of 1, 2, 4 or 8 bytes)")
    if not dt.isnative:
        raise _Unavailable(f"dtype {dt.str} is not in native byte order; convert the source first")
    return dt


# ---------------------------------------------------------------------------------------------------------------
# HDF5 faces


def _require_filter(filter_id: int, name: str) -> None:
    """Raise unless HDF5 has ``filter_id`` registered with encoding enabled (hdf5plugin registers on import)."""
    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401  (registers the plugin filters with HDF5)
    from h5py import h5z

    if not h5z.filter_avail(filter_id):
        raise _Unavailable(f"HDF5 filter {name} ({filter_id}) is not registered in this HDF5/hdf5plugin")
    if not h5z.get_filter_info(filter_id) & h5z.FILTER_CONFIG_ENCODE_ENABLED:
        raise _Unavailable(f"HDF5 filter {name} ({filter_id}) can decode but not encode in this build")


def _plugin(cls_name: str, filter_id: int, **kwargs: Any) -> dict[str, Any]:
    """``dict(hdf5plugin.<cls_name>(**kwargs))``: the filter as plain create_dataset kwargs."""
    try:
        import hdf5plugin
    except ImportError:
        raise _Unavailable("hdf5plugin is not installed") from None
    _require_filter(filter_id, cls_name)
    return dict(getattr(hdf5plugin, cls_name)(**kwargs))


def _hdf5_none(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    return {}


def _hdf5_gzip(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    _require_filter(FILTER_DEFLATE, "deflate")
    return {"compression": "gzip", "compression_opts": spec.kw["level"]}


def _hdf5_lzf(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    _require_filter(FILTER_LZF, "lzf")
    return {"compression": "lzf"}


def _hdf5_szip(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    _require_filter(FILTER_SZIP, "szip")
    return {"compression": "szip", "compression_opts": (spec.kw["method"], spec.kw["pixels_per_block"])}


def _hdf5_blosc(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    p = spec.kw
    return _plugin("Blosc", FILTER_BLOSC, cname=p["cname"], clevel=p["clevel"], shuffle=_SHUFFLE[p["shuffle"]])


def _hdf5_lz4(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    return _plugin("LZ4", FILTER_LZ4)


def _hdf5_bitshuffle(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    p = spec.kw
    if p["cname"] == "zstd":
        return _plugin("Bitshuffle", FILTER_BITSHUFFLE, cname="zstd", clevel=p["clevel"])
    return _plugin("Bitshuffle", FILTER_BITSHUFFLE, cname=p["cname"])


def _hdf5_blosc2(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    p = spec.kw
    return _plugin("Blosc2", FILTER_BLOSC2, cname=p["cname"], clevel=p["clevel"], filters=_SHUFFLE[p["shuffle"]])


def _hdf5_zstd(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    return _plugin("Zstd", FILTER_ZSTD, clevel=spec.kw["clevel"])


def _no_hdf5(spec: CodecSpec, dt: np.dtype) -> Any:
    raise _Unavailable(f"no HDF5 filter for {spec.family}")


# ---------------------------------------------------------------------------------------------------------------
# Zarr faces


def _zarr_none(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    return {"compressors": []}


def _zarr_gzip(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    # zarr's spec codec, not the HDF5-bytes adapter: it is readable by every Zarr implementation, and it is the
    # same deflate stream at the same level; only the framing differs (gzip's 18-byte header+trailer instead of
    # zlib's 6), well inside the "same compression" tolerance.
    from zarr.codecs import GzipCodec

    return {"compressors": [GzipCodec(level=spec.kw["level"])]}


_ZARR_SHUFFLE: dict[str, Literal["noshuffle", "shuffle", "bitshuffle"]] = {
    "none": "noshuffle",
    "byte": "shuffle",
    "bit": "bitshuffle",
}


def _zarr_blosc(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    # zarr's BloscCodec with the array's typesize; numcodecs' blosc wrapper would see bytes (typesize 1), so its
    # shuffle would do nothing (DESIGN.md).
    from zarr.codecs import BloscCodec

    p = spec.kw
    codec = BloscCodec(
        typesize=dt.itemsize,
        cname=p["cname"],
        clevel=p["clevel"],
        shuffle=_ZARR_SHUFFLE[p["shuffle"]],
        blocksize=0,
    )
    return {"compressors": [codec]}


def _zarr_zstd(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    from zarr.codecs import ZstdCodec

    return {"compressors": [ZstdCodec(level=spec.kw["clevel"], checksum=False)]}


def _zarr_adapter(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    """Store the HDF5 filter's own chunk bytes in Zarr (no spec codec exists for this family)."""
    _FAMILIES[spec.family].encoder(spec, dt)  # fail here, with the encoder's reason, not at the first write
    from cubebench.zarr_codec import HDF5ChunkCodec  # importing registers the codec with zarr

    return {"compressors": [HDF5ChunkCodec(codec=spec.id, params=spec.kw)]}


#: Dtypes pcodec takes (it has no 8-bit types).
_PCODEC_DTYPES = frozenset({"uint16", "uint32", "uint64", "int16", "int32", "int64", "float16", "float32", "float64"})


def _zarr_pcodec(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    if dt.name not in _PCODEC_DTYPES:
        raise _Unavailable(f"pcodec does not take {dt.name} (only 16-, 32- and 64-bit integers and floats)")
    try:
        import pcodec  # noqa: F401
    except ImportError:
        raise _Unavailable("the pcodec package is not installed (pip install pcodec)") from None
    try:
        from zarr.codecs.numcodecs import PCodec
    except ImportError:
        raise _Unavailable("zarr.codecs.numcodecs.PCodec needs zarr>=3.1.3") from None
    # PCodec() warns "Numcodecs codecs are not in the Zarr version 3 specification ..." (ZarrUserWarning) on
    # every construction, also when a store is opened; the project allows that warning in pyproject.
    return {"compressors": [], "serializer": PCodec(level=spec.kw["level"])}


# ---------------------------------------------------------------------------------------------------------------
# Direct-chunk encoders


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

    Not byte-identical: imagecodecs' liblzf finds more matches than the LZF compiled into h5py, so its chunks
    are 2-3 % smaller on uint16 data (about equal on float32). The direct and Zarr paths share this encoder.
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
        raise _Unavailable(f"a chunk of {npoints} elements is smaller than szip's {pixels_per_block} pixels per block")
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
        except _Unavailable as err:
            raise CodecUnavailableError(f"szip: {err}") from None

    def _encode(self, arr: np.ndarray) -> bytes:
        imagecodecs = _imagecodecs()

        return bytes(imagecodecs.szip_encode(arr, *self._params(arr.shape), header=True))

    def _decode(self, data: Any, out: np.ndarray) -> None:
        imagecodecs = _imagecodecs()

        imagecodecs.szip_decode(data, *self._params(out.shape), header=True, out=_flat_bytes(out))


@dataclass(frozen=True, kw_only=True)
class _BloscEncoder(_Encoder):
    """hdf5-blosc (filter 32001) stores a plain blosc1 buffer: numcodecs' Blosc, typesize = itemsize, blocksize 0."""

    cname: str
    clevel: int
    shuffle: str
    requires: ClassVar[tuple[str, ...]] = ("numcodecs",)

    def _codec(self) -> Any:
        from numcodecs import Blosc

        return Blosc(
            cname=self.cname,
            clevel=self.clevel,
            shuffle=_SHUFFLE[self.shuffle],
            blocksize=0,
            typesize=self.dtype.itemsize,
        )

    def _encode(self, arr: np.ndarray) -> bytes:
        return bytes(self._codec().encode(arr))

    def _decode(self, data: Any, out: np.ndarray) -> None:
        self._codec().decode(data, out=_flat_bytes(out))


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
            filters=[blosc2.Filter(_SHUFFLE[self.shuffle])],
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
            raise _Unavailable(f"the {module} package is not installed (pip install {module})") from None
    return cls(dtype=dt, **spec.kw)


def _make_encoder(cls: type[_Encoder]) -> Callable[[CodecSpec, np.dtype], ChunkEncoder]:
    """The encoder face of a family whose encoder class is ``cls``."""
    return functools.partial(_build_encoder, cls)


def _no_encoder(spec: CodecSpec, dt: np.dtype) -> Any:
    raise _Unavailable(f"no HDF5 filter for {spec.family}, so no direct-chunk bytes")


def _no_zarr_encoder(spec: CodecSpec, dt: np.dtype) -> Any:
    raise _Unavailable(f"{spec.family} is a Zarr array-to-bytes serializer: no chunk encoder outside zarr")


# ---------------------------------------------------------------------------------------------------------------
# Families and the catalog


_SHUFFLE = {"none": 0, "byte": 1, "bit": 2}


@dataclass(frozen=True)
class _Family:
    """The three faces of a family, each ``(spec, dtype) -> face``."""

    hdf5: Callable[[CodecSpec, np.dtype], dict[str, Any]]
    zarr: Callable[[CodecSpec, np.dtype], dict[str, Any]]
    encoder: Callable[[CodecSpec, np.dtype], ChunkEncoder]
    #: The encoder of the bytes the Zarr face stores; None: the same as ``encoder`` (the HDF5 filter's bytes).
    zarr_chunks: Callable[[CodecSpec, np.dtype], ChunkEncoder] | None = None

    def zarr_encoder(self, spec: CodecSpec, dt: np.dtype) -> ChunkEncoder:
        """The Zarr chunk encoder face."""
        return (self.zarr_chunks or self.encoder)(spec, dt)


_FAMILIES: dict[str, _Family] = {
    "none": _Family(_hdf5_none, _zarr_none, _make_encoder(_RawEncoder)),
    "gzip": _Family(_hdf5_gzip, _zarr_gzip, _make_encoder(_DeflateEncoder), _make_encoder(_GzipEncoder)),
    "lzf": _Family(_hdf5_lzf, _zarr_adapter, _make_encoder(_LzfEncoder)),
    "szip": _Family(_hdf5_szip, _zarr_adapter, _make_encoder(_SzipEncoder)),
    "blosc": _Family(_hdf5_blosc, _zarr_blosc, _make_encoder(_BloscEncoder)),
    "lz4": _Family(_hdf5_lz4, _zarr_adapter, _make_encoder(_Lz4H5Encoder)),
    "bitshuffle": _Family(_hdf5_bitshuffle, _zarr_adapter, _make_encoder(_BitshuffleEncoder)),
    "blosc2": _Family(_hdf5_blosc2, _zarr_adapter, _make_encoder(_Blosc2Encoder)),
    "zstd": _Family(_hdf5_zstd, _zarr_zstd, _make_encoder(_ZstdEncoder)),
    "pcodec": _Family(_no_hdf5, _zarr_pcodec, _no_encoder, _no_zarr_encoder),
}

#: The faces each storage path needs, for :meth:`CodecSpec.availability`.
_PATH_FACES: dict[str, tuple[str, ...]] = {
    "hdf5": ("hdf5",),
    "hdf5_direct": ("encoder",),
    "zarr": ("zarr",),
    "zarr_direct": ("zarr", "zarr_encoder"),
}


def _blosc(cname: str, clevel: int, shuffle: str, *, study: bool, lib: str = "blosc") -> CodecSpec:
    word = {"byte": "byte shuffle", "bit": "bitshuffle"}[shuffle]
    name = f"{lib}-{cname}" + ("-bitshuffle" if lib == "blosc" and shuffle == "bit" else "")
    label = "Blosc" if lib == "blosc" else "Blosc2 (B2ND)"
    return CodecSpec(
        name,
        lib,
        f"{label} {cname} clevel {clevel}, {word}",
        (("cname", cname), ("clevel", clevel), ("shuffle", shuffle)),
        study,
    )


def _gzip(level: int) -> CodecSpec:
    return CodecSpec(
        f"gzip-{level}", "gzip", f"Deflate (HDF5 gzip) level {level}, no shuffle", (("level", level),), True
    )


_CATALOG: tuple[CodecSpec, ...] = (
    # The study's set, in the study's order.
    CodecSpec("none", "none", "No compression (chunked, no filter)", (), True),
    _gzip(1),
    _gzip(6),
    _gzip(9),
    CodecSpec("lzf", "lzf", "LZF (h5py filter 32000)", (), True),
    # h5py's default for compression="szip" is ("nn", 8): the study's setting is what a user gets by default.
    CodecSpec(
        "szip",
        "szip",
        "SZIP (libaec) nearest-neighbour, 8 pixels per block (h5py default)",
        (("method", "nn"), ("pixels_per_block", 8)),
        True,
    ),
    _blosc("blosclz", 5, "byte", study=True),
    _blosc("lz4", 5, "byte", study=True),
    _blosc("lz4hc", 5, "byte", study=True),
    _blosc("zlib", 5, "byte", study=True),
    _blosc("zstd", 3, "byte", study=True),
    CodecSpec("lz4", "lz4", "HDF5 LZ4 filter 32004, default block (1 GiB: one block per chunk)", (), True),
    CodecSpec(
        "bitshuffle-lz4",
        "bitshuffle",
        "Bitshuffle + LZ4 (filter 32008), default 8 KiB blocks",
        (("cname", "lz4"),),
        True,
    ),
    # Newer codecs.
    _blosc("zstd", 3, "bit", study=False),
    _blosc("lz4", 5, "bit", study=False),
    # blosc2-zstd keeps blosc-zstd's byte shuffle and level, so blosc1 vs blosc2 (B2ND blocks) is one change.
    _blosc("zstd", 3, "byte", study=False, lib="blosc2"),
    _blosc("lz4", 5, "bit", study=False, lib="blosc2"),
    CodecSpec(
        "bitshuffle-zstd",
        "bitshuffle",
        "Bitshuffle + zstd level 3 (filter 32008 default), 8 KiB blocks",
        (("cname", "zstd"), ("clevel", 3)),
        False,
    ),
    CodecSpec("zstd", "zstd", "Zstandard level 3 (HDF5 filter 32015, hdf5plugin default)", (("clevel", 3),), False),
    CodecSpec("pcodec", "pcodec", "pcodec level 8 (Zarr only: array-to-bytes serializer)", (("level", 8),), False),
)

#: Every codec by id, the study's set first.
CODECS: dict[str, CodecSpec] = {spec.id: spec for spec in _CATALOG}


def get_codec(codec_id: str) -> CodecSpec:
    """Return the spec for ``codec_id``; unknown ids raise :class:`CodecUnavailableError` listing the valid ones."""
    try:
        return CODECS[codec_id]
    except (KeyError, TypeError):
        raise CodecUnavailableError(f"unknown codec {codec_id!r}; valid: {', '.join(CODECS)}") from None


def resolve_codecs(selection: str | Sequence[str]) -> tuple[CodecSpec, ...]:
    """Turn ``"all"``, ``"study"``, one id or a list of ids into specs, in the given (or catalog) order.

    Raises
    ------
    CodecUnavailableError
        An id is unknown (the message names it and lists the valid ids).
    ConfigError
        The selection is empty, not strings, or names an id twice.
    """
    if isinstance(selection, str):
        if selection == "all":
            return tuple(CODECS.values())
        if selection == "study":
            return tuple(spec for spec in CODECS.values() if spec.study)
        selection = [selection]
    ids = list(selection)
    if not ids:
        raise ConfigError("codecs: the selection is empty; give 'all', 'study' or a list of codec ids")
    bad = [i for i in ids if not isinstance(i, str)]
    if bad:
        raise ConfigError(f"codecs: entries must be codec id strings, got {bad!r}")
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise ConfigError(f"codecs: {', '.join(dups)} listed more than once")
    return tuple(get_codec(i) for i in ids)


def set_codec_threads(n: int) -> None:
    """Set the codec libraries' internal threads to ``n`` in this process (call it on every Dask worker).

    Sets ``BLOSC_NTHREADS`` (which c-blosc and c-blosc2, also inside hdf5plugin's filters, read on every call),
    numcodecs' Blosc threads, and python-blosc2's threads if it is imported, so that workers x threads never
    oversubscribes the cores.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"codec threads must be a positive integer, got {n!r}")
    n = int(n)
    os.environ["BLOSC_NTHREADS"] = str(n)
    from numcodecs import blosc

    blosc.set_nthreads(n)
    if "blosc2" in sys.modules:
        sys.modules["blosc2"].set_nthreads(n)
