"""The Zarr face: each family as keyword arguments for ``zarr.create_array`` (``compressors=``, ``serializer=``).

Families with a Zarr v3 codec use it (Blosc with the array's typesize, gzip, zstd, pcodec as the serializer);
the others store the HDF5 filter's own chunk bytes through :class:`cubebench.codecs.adapter.HDF5ChunkCodec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from cubebench.codecs.spec import CodecSpec, FaceUnavailable, register_faces

if TYPE_CHECKING:
    import numpy as np


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
    spec.encoder(dt)  # fail here, with the encoder's reason, not at the first write
    from cubebench.codecs.adapter import HDF5ChunkCodec  # importing registers the codec with zarr

    return {"compressors": [HDF5ChunkCodec(codec=spec.id, params=spec.kw)]}


#: Dtypes pcodec takes (it has no 8-bit types).
_PCODEC_DTYPES = frozenset({"uint16", "uint32", "uint64", "int16", "int32", "int64", "float16", "float32", "float64"})


def _zarr_pcodec(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    if dt.name not in _PCODEC_DTYPES:
        raise FaceUnavailable(f"pcodec does not take {dt.name} (only 16-, 32- and 64-bit integers and floats)")
    try:
        import pcodec  # noqa: F401
    except ImportError:
        raise FaceUnavailable("the pcodec package is not installed (pip install pcodec)") from None
    try:
        from zarr.codecs.numcodecs import PCodec
    except ImportError:
        raise FaceUnavailable("zarr.codecs.numcodecs.PCodec needs zarr>=3.1.3") from None
    # PCodec() warns "Numcodecs codecs are not in the Zarr version 3 specification ..." (ZarrUserWarning) on
    # every construction, also when a store is opened; the project allows that warning in pyproject.
    return {"compressors": [], "serializer": PCodec(level=spec.kw["level"])}


register_faces(
    "zarr",
    {
        "none": _zarr_none,
        "gzip": _zarr_gzip,
        "lzf": _zarr_adapter,
        "szip": _zarr_adapter,
        "blosc": _zarr_blosc,
        "lz4": _zarr_adapter,
        "bitshuffle": _zarr_adapter,
        "blosc2": _zarr_adapter,
        "zstd": _zarr_zstd,
        "pcodec": _zarr_pcodec,
    },
)
