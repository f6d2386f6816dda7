"""Storage backends, one module each, behind one small interface (:class:`~cubebench.backends.base.Backend`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends._pipelines import PIPELINES
from cubebench.backends.base import Backend, PatternRead, ReadBack, WriteSettings
from cubebench.backends.csr import CSRBackend
from cubebench.backends.hdf5_direct import HDF5DirectBackend
from cubebench.backends.hdf5_filter import HDF5FilterBackend
from cubebench.backends.hdf5_s3 import HDF5S3, HDF5DirectS3
from cubebench.backends.hdf5_vds import HDF5VDSBackend
from cubebench.backends.npy_gzip import NpyGzipBackend
from cubebench.backends.s3_io import S3Face, S3Target
from cubebench.backends.tensorstore_ import TensorstoreBackend
from cubebench.backends.tensorstore_s3 import TensorstoreS3
from cubebench.backends.uint8_overflow import Uint8OverflowBackend
from cubebench.backends.zarr_ import ZarrBackend
from cubebench.backends.zarr_direct import ZarrDirectBackend
from cubebench.backends.zarr_s3 import ZarrDirectS3, ZarrS3
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
        TensorstoreBackend,
        CSRBackend,
        Uint8OverflowBackend,
        NpyGzipBackend,
    )
}


#: Backend id -> its path on S3 storage (the same layout and codecs); a backend not listed says why in
#: :attr:`Backend.s3_unsupported` (see :meth:`Backend.check_storage`).
S3_FACES: dict[str, S3Face] = {
    HDF5FilterBackend.name: HDF5S3(),
    HDF5DirectBackend.name: HDF5DirectS3(),
    ZarrBackend.name: ZarrS3(),
    ZarrDirectBackend.name: ZarrDirectS3(),
    TensorstoreBackend.name: TensorstoreS3(),
}


def s3_face(backend: Backend) -> S3Face:
    """``backend``'s path on S3; a :class:`BackendError` says why when it has none."""
    try:
        return S3_FACES[backend.name]
    except KeyError:
        raise BackendError(f"{backend.name} has no S3 path registered in backends.S3_FACES") from None


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


__all__ = [
    "BACKENDS",
    "PIPELINES",
    "S3_FACES",
    "Backend",
    "PatternRead",
    "ReadBack",
    "S3Face",
    "S3Target",
    "WriteSettings",
    "availability",
    "get_backend",
    "s3_face",
]
