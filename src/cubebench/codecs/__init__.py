"""Codecs: one neutral spec per id, meaning the same compression on every storage path.

- :mod:`~cubebench.codecs.spec`: :class:`CodecSpec`, the :class:`ChunkEncoder` interface and the face registry;
- :mod:`~cubebench.codecs.catalog`: every codec id (the only source of ids);
- :mod:`~cubebench.codecs.hdf5_face`, :mod:`~cubebench.codecs.zarr_face`, :mod:`~cubebench.codecs.encoders`:
  the faces (h5py filter kwargs, zarr codecs, direct-chunk encoders), registered on import;
- :mod:`~cubebench.codecs.adapter`: the Zarr v3 codec that stores an HDF5 filter's own chunk bytes;
- :mod:`~cubebench.codecs.threads`: codec-internal threads per process.

Which backend can run a codec is the backend's answer (:meth:`cubebench.backends.base.Backend.check`), not
the codec's.
"""

from __future__ import annotations

from cubebench.codecs import encoders, hdf5_face, zarr_face  # noqa: F401  (each registers its faces)
from cubebench.codecs.catalog import CODECS, get_codec, resolve_codecs
from cubebench.codecs.encoders import stores_raw
from cubebench.codecs.spec import ChunkEncoder, CodecSpec
from cubebench.codecs.threads import set_codec_threads

__all__ = [
    "CODECS",
    "ChunkEncoder",
    "CodecSpec",
    "get_codec",
    "resolve_codecs",
    "set_codec_threads",
    "stores_raw",
]
