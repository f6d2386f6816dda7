"""One cell's bytes on S3: its own prefix, the backend's S3 face, request counts gathered, and clean-up.

A run owns one prefix (``<experiment>/<run id>`` under the storage's own prefix); each cell writes under
``<run prefix>/<cell label>/`` and deletes exactly that prefix when it ends, also when it fails. Requests made in
this process and on every worker count into counters named after the cell (:mod:`cubebench.storage.tally`) and are
taken after the write and after the full read, so each cell records what it asked of the storage.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from cubebench.backends import PatternRead, ReadBack, S3Target, WriteSettings, s3_face
from cubebench.errors import StorageError
from cubebench.storage import RequestCounts, delete_prefix, folder_usage, object_usage, take

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.backends import Backend
    from cubebench.codecs import CodecSpec
    from cubebench.cube import StagedCube
    from cubebench.storage import S3Storage


class S3Cell:
    """One cell on S3: its target under the run's prefix, timed write and read, counts, clean-up."""

    def __init__(self, client: Client, run: S3Storage, label: str, backend: Backend, local: Path) -> None:
        self.client, self.backend = client, backend
        self.face = s3_face(backend)
        storage = run.under(label)
        self.target = S3Target(storage, f"{backend.name}{backend.suffix}", local, tally=storage.prefix)

    @property
    def counted(self) -> bool:
        """Whether cubebench counts this cell's requests (False: the backend's library makes its own)."""
        return not self.face.uncounted

    def requests(self, counts: RequestCounts) -> float:
        """``counts.requests``, or NaN when this cell's requests are not counted."""
        return float(counts.requests) if self.counted else float("nan")

    def counts(self) -> RequestCounts:
        """The requests made for this cell since the last call, here and on every worker (then reset)."""
        total = RequestCounts(**take(self.target.tally))
        for counts in self.client.run(take, self.target.tally).values():
            total = total + RequestCounts(**counts)
        return total

    def write(
        self, staged: StagedCube, codec: CodecSpec, chunks: tuple[int, ...], settings: WriteSettings
    ) -> tuple[float, dict[str, float]]:
        """The timed write (an HDF5 path's local write and upload included); its extra timings."""
        start = time.perf_counter()
        extra = self.face.write(self.client, staged, codec, chunks, self.target, settings)
        return time.perf_counter() - start, extra

    def read(self, chunks: tuple[int, ...], settings: WriteSettings) -> tuple[float, ReadBack]:
        """The timed full read."""
        start = time.perf_counter()
        back = self.face.read(self.client, self.target, chunks, settings)
        return time.perf_counter() - start, back

    def read_pattern(self, pattern: str, chunks: tuple[int, ...], settings: WriteSettings) -> PatternRead:
        """One timed access-pattern read."""
        return self.face.read_pattern(self.client, self.target, pattern, chunks, settings)

    def usage(self) -> RequestCounts:
        """Objects and bytes stored under the cell's prefix (one LIST, not counted as the cell's)."""
        return object_usage(self.target.storage)

    def clean(self) -> None:
        """Delete everything under the cell's prefix (and only that); the counters of this cell are dropped."""
        with contextlib.suppress(StorageError, OSError):
            delete_prefix(self.target.storage)
        with contextlib.suppress(Exception):
            self.counts()


def count_fields(
    write: RequestCounts, read: RequestCounts, stored: RequestCounts, spec: S3Storage, counted: bool = True
) -> dict[str, Any]:
    """The :class:`~cubebench.results.CellResult` fields of an S3 cell's counts; without ``counted`` (a library
    with its own HTTP client) the request and read-byte counts are NaN, while objects and bytes stored are listed."""
    nan = float("nan")
    return {
        "objects": stored.objects_written,
        "bytes_written": stored.bytes_out,
        "requests": float(write.requests + read.requests) if counted else nan,
        "get_requests": float(write.gets + read.gets) if counted else nan,
        "put_requests": float(write.puts + read.puts) if counted else nan,
        "bytes_read": float(read.bytes_in) if counted else nan,
        "latency_ms": spec.latency_ms,
        "bandwidth_MBps": spec.bandwidth_MBps if spec.bandwidth_MBps is not None else float("nan"),
    }


def local_fields(target: Path, size: int) -> dict[str, Any]:
    """The count fields of a local cell: the files it stored (requests are not counted on local disk)."""
    files = folder_usage(target).objects_written if target.is_dir() else int(target.exists())
    return {"objects": files, "bytes_written": size}
