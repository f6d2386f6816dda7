"""The codec catalog: every codec id and its parameters, the only source of codec ids.

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

from typing import TYPE_CHECKING

from cubebench.codecs.spec import CodecSpec
from cubebench.errors import CodecUnavailableError, ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CODECS", "get_codec", "resolve_codecs"]


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
        _BLOSC2_FRAMING if lib == "blosc2" else "",
    )


#: Why some codecs' chunk bytes differ between paths by design (the payloads agree within 0.5 %).
_GZIP_FRAMING = (
    "Zarr stores a gzip member (zarr's GzipCodec, readable by every Zarr implementation) where HDF5 stores a zlib "
    "stream: the same deflate stream, with gzip's 18 bytes of header and trailer instead of zlib's 6 (and "
    "numcodecs puts the current time in each gzip header, so Zarr's gzip chunks differ from run to run in bytes 4-7)"
)
_BLOSC2_FRAMING = (
    "python-blosc2 (direct and Zarr paths) writes the B2ND frame's dtype as the array's ('<u2') where the HDF5 "
    "filter writes an opaque '|V2', and with several threads it writes blocks in the order they finish: same "
    "blocks and size, other bytes; the filter decodes either frame"
)
_LZF_FRAMING = (
    "every path runs h5py's own LZF filter (cubebench.codecs.through_filter), but that liblzf leaves its hash "
    "table uninitialised (INIT_HTAB 0), so the same chunk can come out a few bytes different from call to call, "
    "in HDF5 itself too (measured: 3 of 64 4d_diff frames, 2 bytes each, in Dask worker processes)"
)
_ZSTD_FRAMING = (
    "zarr's ZstdCodec (numcodecs) links libzstd 1.5 where hdf5plugin and imagecodecs (direct paths) link 1.4: "
    "the same level makes a slightly different frame (0.06 % apart on a 512 KiB chunk of sparse counts); "
    "zarr_direct stores the HDF5 filter's bytes"
)


def _gzip(level: int) -> CodecSpec:
    return CodecSpec(
        f"gzip-{level}",
        "gzip",
        f"Deflate (HDF5 gzip) level {level}, no shuffle",
        (("level", level),),
        True,
        _GZIP_FRAMING,
    )


_CATALOG: tuple[CodecSpec, ...] = (
    # The study's set, in the study's order.
    CodecSpec("none", "none", "No compression (chunked, no filter)", (), True),
    _gzip(1),
    _gzip(6),
    _gzip(9),
    CodecSpec("lzf", "lzf", "LZF (h5py filter 32000)", (), True, _LZF_FRAMING),
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
    CodecSpec(
        "zstd",
        "zstd",
        "Zstandard level 3 (HDF5 filter 32015, hdf5plugin default)",
        (("clevel", 3),),
        False,
        _ZSTD_FRAMING,
    ),
    CodecSpec(
        "pcodec",
        "pcodec",
        "pcodec level 8 (Zarr only: array-to-bytes serializer)",
        (("level", 8),),
        False,
        "no HDF5 filter: Zarr only, nothing to compare",
    ),
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
