"""The HDF5 face: each family's filter as keyword arguments for h5py ``create_dataset``.

h5py's built-in filters (deflate, LZF, szip) or hdf5plugin's; a filter that is not registered in this
HDF5/hdf5plugin, or registered for decoding only, makes the codec unavailable for HDF5 with that reason.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from cubebench.codecs.spec import SHUFFLE, CodecSpec, FaceUnavailable, register_faces

if TYPE_CHECKING:
    import numpy as np

#: HDF5 filter ids used by the catalog.
FILTER_DEFLATE = 1
FILTER_SZIP = 4
FILTER_LZF = 32000
FILTER_BLOSC = 32001
FILTER_LZ4 = 32004
FILTER_BITSHUFFLE = 32008
FILTER_ZSTD = 32015
FILTER_BLOSC2 = 32026


def _require_filter(filter_id: int, name: str) -> None:
    """Raise unless HDF5 has ``filter_id`` registered with encoding enabled (hdf5plugin registers on import)."""
    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401  (registers the plugin filters with HDF5)
    from h5py import h5z

    if not h5z.filter_avail(filter_id):
        raise FaceUnavailable(f"HDF5 filter {name} ({filter_id}) is not registered in this HDF5/hdf5plugin")
    if not h5z.get_filter_info(filter_id) & h5z.FILTER_CONFIG_ENCODE_ENABLED:
        raise FaceUnavailable(f"HDF5 filter {name} ({filter_id}) can decode but not encode in this build")


def _plugin(cls_name: str, filter_id: int, **kwargs: Any) -> dict[str, Any]:
    """``dict(hdf5plugin.<cls_name>(**kwargs))``: the filter as plain create_dataset kwargs."""
    try:
        import hdf5plugin
    except ImportError:
        raise FaceUnavailable("hdf5plugin is not installed") from None
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
    return _plugin("Blosc", FILTER_BLOSC, cname=p["cname"], clevel=p["clevel"], shuffle=SHUFFLE[p["shuffle"]])


def _hdf5_lz4(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    return _plugin("LZ4", FILTER_LZ4)


def _hdf5_bitshuffle(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    p = spec.kw
    if p["cname"] == "zstd":
        return _plugin("Bitshuffle", FILTER_BITSHUFFLE, cname="zstd", clevel=p["clevel"])
    return _plugin("Bitshuffle", FILTER_BITSHUFFLE, cname=p["cname"])


def _hdf5_blosc2(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    p = spec.kw
    return _plugin("Blosc2", FILTER_BLOSC2, cname=p["cname"], clevel=p["clevel"], filters=SHUFFLE[p["shuffle"]])


def _hdf5_zstd(spec: CodecSpec, dt: np.dtype) -> dict[str, Any]:
    return _plugin("Zstd", FILTER_ZSTD, clevel=spec.kw["clevel"])


def _no_hdf5(spec: CodecSpec, dt: np.dtype) -> Any:
    raise FaceUnavailable(f"no HDF5 filter for {spec.family}")


register_faces(
    "hdf5",
    {
        "none": _hdf5_none,
        "gzip": _hdf5_gzip,
        "lzf": _hdf5_lzf,
        "szip": _hdf5_szip,
        "blosc": _hdf5_blosc,
        "lz4": _hdf5_lz4,
        "bitshuffle": _hdf5_bitshuffle,
        "blosc2": _hdf5_blosc2,
        "zstd": _hdf5_zstd,
        "pcodec": _no_hdf5,
    },
)
