"""Storage backends, one module each, behind one small interface (:class:`~cubebench.backends.base.Backend`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import Backend, PatternRead, ReadBack, WriteSettings
from cubebench.backends.csr import CSRBackend
from cubebench.backends.hdf5_direct import HDF5DirectBackend
from cubebench.backends.hdf5_filter import HDF5FilterBackend
from cubebench.backends.hdf5_vds import HDF5VDSBackend
from cubebench.backends.npy_gzip import NpyGzipBackend
from cubebench.backends.uint8_overflow import Uint8OverflowBackend
from cubebench.backends.zarr_ import ZarrBackend
from cubebench.backends.zarr_direct import ZarrDirectBackend
from cubebench.errors import BackendError, CodecUnavailableError

if TYPE_CHECKING:
    from cubebench.codecs import CodecSpec

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        HDF5FilterBackend,
        HDF5DirectBackend,
        HDF5VDSBackend,
        ZarrBackend,
        ZarrDirectBackend,
        CSRBackend,
        Uint8OverflowBackend,
        NpyGzipBackend,
    )
}


def get_backend(name: str) -> Backend:
    """Instantiate a backend by id; an unknown id raises :class:`BackendError` listing the valid ones."""
    try:
        return BACKENDS[name]()
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}") from None


def availability(codec: CodecSpec, dtype: Any = "uint16") -> dict[str, str | None]:
    """Backend id -> ``None`` where ``codec`` runs on ``dtype`` data, else the reason; asked of each backend.

    The one answer to "can this backend run this codec": :meth:`Backend.check`, never the codec's own faces.
    """
    out: dict[str, str | None] = {}
    for name, cls in BACKENDS.items():
        try:
            cls().check(codec, np.dtype(dtype))
            out[name] = None
        except CodecUnavailableError as exc:
            out[name] = str(exc).removeprefix(f"{codec.id}: ")
    return out


__all__ = ["BACKENDS", "Backend", "PatternRead", "ReadBack", "WriteSettings", "availability", "get_backend"]
