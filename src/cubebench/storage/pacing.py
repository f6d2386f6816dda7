"""The link model applied as it happens: each request made through cubebench's S3 client waits, client-side.

An :class:`~cubebench.storage.spec.S3Storage` with ``latency_ms`` and ``bandwidth_MBps`` makes every request wait
``latency_ms`` plus its bytes over ``bandwidth_MBps`` (per request stream) after the server answered, in the thread
(or, for zarr-python, the coroutine) that made it. Requests in flight at once wait side by side, as round trips
over a real link overlap. The same waits apply to every backend, since they all go through the helpers of
:mod:`cubebench.storage.client` or the zarr store :func:`~cubebench.storage.client.zarr_store` returns.

A model, not a network: no TCP slow start, no server queueing, and the bandwidth is per stream, not one link
shared by all (cubebench's workers are separate processes). :func:`cubebench.storage.latency.added_latency`
gives the same model's total for a count of requests, for estimates.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Self

from zarr.abc.store import Store
from zarr.storage import WrapperStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype

    from cubebench.storage.spec import S3Storage


def request_delay(spec: S3Storage, nbytes: int = 0) -> float:
    """Seconds one request moving ``nbytes`` waits on ``spec``'s link (0 without a link model).

    >>> from cubebench.storage.spec import S3Storage
    >>> request_delay(S3Storage(bucket="b", latency_ms=20, bandwidth_MBps=100), 10**6)
    0.03
    """
    seconds = spec.latency_ms / 1000.0
    if spec.bandwidth_MBps:
        seconds += nbytes / (spec.bandwidth_MBps * 1e6)
    return seconds


def pace(spec: S3Storage, nbytes: int = 0, rounds: int = 1) -> None:
    """Wait as ``rounds`` round trips moving ``nbytes`` in all would on ``spec``'s link (a blocking sleep)."""
    seconds = rounds * spec.latency_ms / 1000.0 + (request_delay(spec, nbytes) - spec.latency_ms / 1000.0)
    if seconds > 0:
        time.sleep(seconds)


def paced(store: Store, spec: S3Storage) -> Store:
    """``store`` itself without a link model, else wrapped so that each request waits (:class:`PacedStore`)."""
    return PacedStore(store, spec) if spec.latency_ms or spec.bandwidth_MBps else store


class PacedStore(WrapperStore[Store]):
    """A zarr store whose every request waits (``asyncio.sleep``) as the link model says, after it is answered."""

    def __init__(self, store: Store, spec: S3Storage) -> None:
        super().__init__(store)
        self.spec = spec

    def _with_store(self, store: Store) -> Self:
        return type(self)(store, self.spec)

    def __repr__(self) -> str:
        return f"PacedStore({self._store!r}, latency_ms={self.spec.latency_ms}, MBps={self.spec.bandwidth_MBps})"

    async def _wait(self, nbytes: int) -> None:
        await asyncio.sleep(request_delay(self.spec, nbytes))

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        value = await self._store.get(key, prototype, byte_range)
        await self._wait(0 if value is None else len(value))
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        values = await self._store.get_partial_values(prototype, list(key_ranges))
        await asyncio.gather(*(self._wait(0 if v is None else len(v)) for v in values))
        return values

    async def exists(self, key: str) -> bool:
        found = await self._store.exists(key)
        await self._wait(0)
        return found

    async def set(self, key: str, value: Buffer) -> None:
        await self._store.set(key, value)
        await self._wait(len(value))

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        await self._store.set_if_not_exists(key, value)
        await self._wait(len(value))

    async def delete(self, key: str) -> None:
        await self._store.delete(key)
        await self._wait(0)
