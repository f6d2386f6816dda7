"""A read-only file object over one S3 object, reading byte ranges on demand: how h5py opens HDF5 on S3.

h5py's wheels have no ``ros3`` driver (h5py#2759), but ``h5py.File`` accepts any Python file object with ``read``,
``readinto``, ``seek`` and ``tell``. :class:`RangedFile` is one: each read becomes ranged GETs of
:func:`cubebench.storage.client.get_range`. HDF5 reads its metadata in many small pieces, so small reads go
through a cache of aligned blocks (``block`` bytes each, the ``blocks`` most recently used kept); a read of at
least a block bypasses the cache and is one GET, unless it is exactly a block already cached (a paged HDF5 file
read with blocks of its page size: the page buffer asks for the page the first GET fetched). It pickles as its
spec and key (a Dask task can carry it) and counts its requests into the process's counter of ``tally``
(:mod:`cubebench.storage.tally`). The object's size comes with the first GET (no HEAD).

>>> # with h5py.File(RangedFile(spec, "cell/data.h5"), "r") as f: f["data"][0, 0]
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from cubebench.storage.client import _checked, _fail, get_range, object_store
from cubebench.storage.pacing import pace
from cubebench.storage.tally import tally as counter_named

if TYPE_CHECKING:
    from cubebench.storage.counters import RequestCounter
    from cubebench.storage.spec import S3Storage

#: Bytes of one cached block; HDF5's metadata reads are a few hundred bytes to a few KiB each.
BLOCK = 256 * 2**10
#: Cached blocks kept per file object.
BLOCKS = 64


class RangedFile(io.RawIOBase):
    """A seekable, read-only file over the object ``key`` of ``spec``, read by ranged GETs with a block cache."""

    def __init__(
        self, spec: S3Storage, key: str, tally: str | None = None, block: int = BLOCK, blocks: int = BLOCKS
    ) -> None:
        super().__init__()
        self.spec, self.key, self.tally = _checked(spec), key, tally
        self.block, self.blocks = block, blocks
        self._pos = 0
        self._size: int | None = None
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.spec, self.key, self.tally, self.block, self.blocks))

    def __repr__(self) -> str:
        return f"RangedFile(s3://{self.spec.bucket}/{self.spec.prefix}/{self.key})"

    @property
    def counter(self) -> RequestCounter | None:
        """Where this file's requests are counted (None: not counted)."""
        return None if self.tally is None else counter_named(self.tally)

    @property
    def size(self) -> int:
        """The object's size, from the first ranged GET (of the first block, which is cached): no HEAD request."""
        if self._size is None:
            self._cache.pop(0, None)
            self._block(0)  # sets the size
        if self._size is None:
            raise OSError(f"{self!r}: the server did not say the object's size")
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"{self!r}: seek to {base + offset} before the start")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        if n == 0:
            return 0
        if n >= self.block and not self._is_cached_block(n):  # a chunk-sized read: one GET, no copy into the cache
            view[:n] = get_range(self.spec, self.key, self._pos, n, self.counter)
        else:
            done = 0
            while done < n:
                pos = self._pos + done
                first = pos // self.block
                data = self._block(first)
                start = pos - first * self.block
                take = min(n - done, len(data) - start)
                view[done : done + take] = data[start : start + take]
                done += take
        self._pos += n
        return n

    def _is_cached_block(self, n: int) -> bool:
        """Whether the next ``n`` bytes are exactly one whole block in the cache."""
        number, offset = divmod(self._pos, self.block)
        return offset == 0 and number in self._cache and len(self._cache[number]) == n

    def _block(self, number: int) -> bytes:
        if number in self._cache:
            self._cache.move_to_end(number)
            return self._cache[number]
        start = number * self.block
        if self._size is None:  # the first request also learns the object's size (S3 clamps the range to it)
            data = self._first(start)
        else:
            data = get_range(self.spec, self.key, start, min(self.block, self.size - start), self.counter)
        self._cache[number] = data
        if len(self._cache) > self.blocks:
            self._cache.popitem(last=False)
        return data

    def _first(self, start: int) -> bytes:
        import obstore

        try:
            result = obstore.get(object_store(self.spec), self.key, options={"range": (start, start + self.block)})
            data = bytes(result.bytes())
        except FileNotFoundError as exc:
            where = f"s3://{self.spec.bucket}/{self.spec.prefix}"
            raise FileNotFoundError(f"no object {self.key!r} in {where}") from exc
        except Exception as exc:
            raise _fail(self.spec, f"GET {self.key} [{start}:{start + self.block}]", exc) from exc
        self._size = int(result.meta["size"])
        pace(self.spec, len(data))
        if self.counter is not None:
            self.counter.add(gets=1, bytes_in=len(data))
        return data

    def write(self, data: Any) -> int:
        raise io.UnsupportedOperation(f"{self!r} is read-only")
