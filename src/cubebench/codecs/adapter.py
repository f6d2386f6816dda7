"""A Zarr v3 bytes-to-bytes codec that stores the HDF5 filter's own chunk bytes.

For codec families without a standard Zarr v3 codec (lzf, szip, lz4, bitshuffle-*, blosc2-*), the catalog's
Zarr face is :class:`HDF5ChunkCodec`: it encodes each Zarr chunk with the same
:class:`~cubebench.codecs.spec.ChunkEncoder` that the direct HDF5 path uses, so a Zarr chunk holds exactly the
bytes HDF5 would hold, and "same compression" holds by construction.

Its metadata is ``{"name": "cubebench.hdf5_chunk", "configuration": {"codec": "<id>", "params": {...}}}``;
the stored parameters (not today's catalog) decide how a store decodes. Importing this module registers the codec
with zarr, so any process that opens such a store (a Dask worker too) must import it first::

    import cubebench.codecs.adapter  # noqa: F401  (registers "cubebench.hdf5_chunk")

The ``zarr.codecs`` entry point ``cubebench.hdf5_chunk`` (pyproject.toml) makes that automatic wherever cubebench
is installed.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import BytesBytesCodec
from zarr.core.common import JSON, parse_named_configuration
from zarr.registry import register_codec

from cubebench.codecs.catalog import get_codec

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer

    from cubebench.codecs.spec import ChunkEncoder

__all__ = ["CODEC_NAME", "HDF5ChunkCodec"]

#: The codec's name in Zarr metadata.
CODEC_NAME = "cubebench.hdf5_chunk"


@functools.lru_cache(maxsize=256)
def _encoder(codec: str, params: tuple[tuple[str, Any], ...], dtype: str) -> ChunkEncoder:
    """The catalog encoder for ``codec`` with the store's ``params`` (cached: one per codec and dtype)."""
    return replace(get_codec(codec), params=params).encoder(dtype)


def _chunk_dtype(chunk_spec: ArraySpec) -> np.dtype:
    # zarr's BytesCodec hands over little-endian bytes; read them as such.
    return np.dtype(chunk_spec.dtype.to_native_dtype()).newbyteorder("<")


@dataclass(frozen=True)
class HDF5ChunkCodec(BytesBytesCodec):
    """Bytes-to-bytes codec: a catalog codec's HDF5 chunk framing (see module docstring).

    Parameters
    ----------
    codec
        Catalog id, e.g. ``"bitshuffle-lz4"``.
    params
        The codec's parameters; default: the catalog's. Stored in the metadata so a store decodes the same
        whatever the catalog later says.
    """

    is_fixed_size = False

    codec: str
    params: tuple[tuple[str, Any], ...]

    def __init__(self, *, codec: str, params: Mapping[str, Any] | None = None) -> None:
        if not isinstance(codec, str):
            raise TypeError(f"codec must be a catalog id string, got {codec!r}")
        spec = get_codec(codec)
        parsed = spec.params if params is None else tuple((str(k), v) for k, v in dict(params).items())
        object.__setattr__(self, "codec", codec)
        object.__setattr__(self, "params", parsed)

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        """Build from Zarr metadata."""
        _, configuration = parse_named_configuration(data, CODEC_NAME)
        return cls(**configuration)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, JSON]:
        """Zarr metadata form."""
        return {"name": CODEC_NAME, "configuration": {"codec": self.codec, "params": dict(self.params)}}

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        """Fail at array creation (not at the first write) when the encoder is unavailable for this dtype."""
        _encoder(self.codec, self.params, np.dtype(dtype.to_native_dtype()).newbyteorder("<").str)

    def compute_encoded_size(self, _input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError

    def _encode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        dtype = _chunk_dtype(chunk_spec)
        arr = chunk_bytes.as_numpy_array().view(dtype).reshape(chunk_spec.shape)
        encoded = _encoder(self.codec, self.params, dtype.str).encode(arr)
        return chunk_spec.prototype.buffer.from_bytes(encoded)

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        dtype = _chunk_dtype(chunk_spec)
        out = np.empty(chunk_spec.shape, dtype=dtype)
        _encoder(self.codec, self.params, dtype.str).decode(chunk_bytes.as_numpy_array(), out)
        return chunk_spec.prototype.buffer.from_array_like(out.reshape(-1).view(np.uint8))

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_bytes, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)


register_codec(CODEC_NAME, HDF5ChunkCodec)
