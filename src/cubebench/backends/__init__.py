"""Storage backends, one module each, behind one small interface (:class:`~cubebench.backends.base.Backend`)."""

from __future__ import annotations

from cubebench.backends.base import Backend, PatternRead, ReadBack, WriteSettings
from cubebench.backends.csr import CSRBackend
from cubebench.backends.hdf5_direct import HDF5DirectBackend
from cubebench.backends.hdf5_filter import HDF5FilterBackend
from cubebench.backends.npy_gzip import NpyGzipBackend
from cubebench.backends.uint8_overflow import Uint8OverflowBackend
from cubebench.backends.zarr_ import ZarrBackend
from cubebench.backends.zarr_direct import ZarrDirectBackend
from cubebench.errors import BackendError

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        HDF5FilterBackend,
        HDF5DirectBackend,
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


__all__ = ["BACKENDS", "Backend", "PatternRead", "ReadBack", "WriteSettings", "get_backend"]
