"""The codec spec: one neutral :class:`CodecSpec` per id, and the registry of its faces.

A spec is plain data (id, family, parameters). Each storage path needs a *face* of it, computed from that data
by a function registered for the spec's family, so a parameter is written down once and cannot drift between
paths. The face modules register themselves when :mod:`cubebench.codecs` is imported:

- ``"hdf5"`` (:mod:`cubebench.codecs.hdf5_face`): keyword arguments for h5py ``create_dataset``;
- ``"zarr"`` (:mod:`cubebench.codecs.zarr_face`): keyword arguments for ``zarr.create_array``;
- ``"encoder"`` and ``"zarr_encoder"`` (:mod:`cubebench.codecs.encoders`): a :class:`ChunkEncoder` that makes,
  outside HDF5 or zarr, exactly the chunk bytes the filter (or Zarr codec) would store.

This module imports no face: it is the interface the faces and the catalog share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from cubebench.errors import CodecUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["SHUFFLE", "ChunkEncoder", "CodecSpec", "FaceUnavailable", "decode_each", "register_faces"]

#: Shuffle names of the catalog and their Blosc codes.
SHUFFLE = {"none": 0, "byte": 1, "bit": 2}


class FaceUnavailable(Exception):
    """A face cannot be built; :class:`CodecSpec` turns it into ``CodecUnavailableError("<id>: why")``."""


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

    def decode_many(self, data: Any, spans: Sequence[Sequence[int]], outs: Sequence[np.ndarray]) -> None:
        """Decode the chunk stored at each ``(offset, nbytes)`` of ``data`` into the array of ``outs`` at its place.

        As :meth:`decode` of each (:func:`decode_each`); an encoder whose library takes little per call does less
        per chunk (a Zarr shard holds hundreds of small chunks).
        """
        ...


def decode_each(encoder: ChunkEncoder, data: Any, spans: Sequence[Sequence[int]], outs: Sequence[np.ndarray]) -> None:
    """:meth:`ChunkEncoder.decode_many` by :meth:`ChunkEncoder.decode` of each chunk."""
    view = memoryview(data).cast("B")
    for (offset, nbytes), out in zip(spans, outs, strict=True):
        encoder.decode(view[offset : offset + nbytes], out)


#: ``face -> family -> (spec, dtype) -> face value``; filled by the face modules through :func:`register_faces`.
_FACES: dict[str, dict[str, Callable[[CodecSpec, np.dtype], Any]]] = {}


def register_faces(face: str, by_family: dict[str, Callable[[CodecSpec, np.dtype], Any]]) -> None:
    """Register the ``face`` builders of each family (called once by each face module at import)."""
    _FACES.setdefault(face, {}).update(by_family)


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
    framing_note
        Empty when every path stores the same chunk bytes (the HDF5 filter, the direct encoder, the Zarr face);
        otherwise why a path frames the same compressed payload differently by design (checked within 0.5 %
        by ``tests/test_codecs.py``).
    """

    id: str
    family: str
    description: str
    params: tuple[tuple[str, Any], ...]
    study: bool
    framing_note: str = ""

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
        } | ({"framing_note": self.framing_note} if self.framing_note else {})

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
        registers :class:`cubebench.codecs.adapter.HDF5ChunkCodec` with zarr.
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
        bytes, and :class:`cubebench.codecs.adapter.HDF5ChunkCodec` stores exactly them; Zarr's gzip codec frames
        the same deflate stream as gzip, not zlib.

        Raises
        ------
        CodecUnavailableError
            ``"<id>: <reason>"`` when the library is missing or the codec has no chunk encoder (pcodec).
        """
        enc: ChunkEncoder = self._face("zarr_encoder", dtype)
        return enc

    def _face(self, face: str, dtype: Any) -> Any:
        try:
            dt = _check_dtype(dtype)
            builders = _FACES[face]
            if self.family not in builders and face == "zarr_encoder":
                builders = _FACES["encoder"]  # Zarr stores the HDF5 filter's bytes unless a family says otherwise
            return builders[self.family](self, dt)
        except FaceUnavailable as err:
            raise CodecUnavailableError(f"{self.id}: {err}") from None


def _check_dtype(dtype: Any) -> np.dtype:
    """Accept native-order integer and float dtypes of 1, 2, 4 or 8 bytes (what a 4-D detector cube holds)."""
    try:
        dt: np.dtype[Any] = np.dtype(dtype)
    except TypeError:
        raise FaceUnavailable(f"{dtype!r} is not a dtype") from None
    if dt.kind not in "uif" or dt.itemsize not in (1, 2, 4, 8):
        raise FaceUnavailable(f"dtype {dt} is not supported (integer or float of 1, 2, 4 or 8 bytes)")
    if not dt.isnative:
        raise FaceUnavailable(f"dtype {dt.str} is not in native byte order; convert the source first")
    return dt
