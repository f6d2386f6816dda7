"""One palette for every figure: a fixed colour per codec, a marker and hatch per backend, a hatch per chunking.

Colours are fixed per codec id (families share a hue: gzip blues, Blosc-LZ4 oranges, zstd reds, ...), so a codec
has the same colour in every figure and every report. Unknown ids get a stable colour from their name's CRC.
"""

from __future__ import annotations

import zlib

CODEC_COLORS: dict[str, str] = {
    "none": "#7f7f7f",
    "gzip-1": "#9ecae1",
    "gzip-6": "#4292c6",
    "gzip-9": "#08306b",
    "lzf": "#bcbd22",
    "szip": "#8c564b",
    "blosc-blosclz": "#fdd0a2",
    "blosc-lz4": "#fd8d3c",
    "blosc-lz4hc": "#a63603",
    "blosc-zlib": "#2ca02c",
    "blosc-zstd": "#d62728",
    "blosc-zstd-bitshuffle": "#ff9896",
    "blosc-lz4-bitshuffle": "#ffbb78",
    "blosc2-zstd": "#67000d",
    "blosc2-lz4": "#7f2704",
    "lz4": "#e377c2",
    "bitshuffle-lz4": "#9467bd",
    "bitshuffle-zstd": "#c5b0d5",
    "zstd": "#17becf",
    "pcodec": "#000000",
}

#: Colours for ids not in :data:`CODEC_COLORS` (chosen by CRC of the id, so stable across runs).
_FALLBACK = (
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#5254a3",
    "#8ca252",
    "#bd9e39",
    "#ad494a",
    "#a55194",
    "#6b6ecf",
    "#b5cf6b",
    "#e7ba52",
    "#d6616b",
    "#ce6dbd",
)

BACKEND_MARKERS: dict[str, str] = {
    "hdf5": "o",
    "hdf5_direct": "s",
    "zarr": "^",
    "zarr_direct": "v",
    "csr": "P",
    "uint8_overflow": "X",
    "npy_gzip": "D",
    "study": "*",
}
_FALLBACK_MARKERS = ("<", ">", "p", "h", "d", "8")

BACKEND_HATCHES: dict[str, str] = {
    "hdf5": "",
    "hdf5_direct": "///",
    "zarr": "...",
    "zarr_direct": "\\\\\\",
    "study": "xx",
}
CHUNK_HATCHES: dict[str, str] = {"real_space": "", "balanced": "///", "single_frame": "..."}
_FALLBACK_HATCHES = ("xx", "++", "oo", "--", "**")


def _pick(name: str, options: tuple[str, ...]) -> str:
    return options[zlib.crc32(name.encode()) % len(options)]


def codec_color(codec: str) -> str:
    """The colour of ``codec`` in every figure."""
    return CODEC_COLORS.get(codec) or _pick(codec, _FALLBACK)


def backend_marker(backend: str) -> str:
    """The scatter marker of ``backend`` (study results: a star)."""
    if backend in BACKEND_MARKERS:
        return BACKEND_MARKERS[backend]
    if backend.startswith("study"):
        return "*"
    return _pick(backend, _FALLBACK_MARKERS)


def backend_hatch(backend: str) -> str:
    """The bar hatch of ``backend``."""
    return BACKEND_HATCHES.get(backend, _pick(backend, _FALLBACK_HATCHES))


def chunk_hatch(chunk: str) -> str:
    """The bar hatch of a chunking."""
    return CHUNK_HATCHES.get(chunk, _pick(chunk, _FALLBACK_HATCHES))
