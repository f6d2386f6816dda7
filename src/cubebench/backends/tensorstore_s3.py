"""``tensorstore`` on S3: the same Zarr v3 store as on local disk, through tensorstore's own ``s3`` kvstore driver.

The store's kvstore is ``{"driver": "s3", "bucket", "path", "endpoint", "aws_region", "aws_credentials"}`` with the
storage's endpoint, region and the cell's prefix, so the objects land where the other backends' do and plain
zarr-python reads them. Credentials: for a server cubebench started (its random keys), a credentials file of mode
0600 in the cell's scratch folder, read by every worker and removed when the write or read ends (tensorstore takes
no keys in its spec); otherwise tensorstore's ``default`` chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance metadata), as obstore's.

Two things cubebench cannot do inside tensorstore's HTTP client: count its requests (the cell records them as NaN,
:attr:`TensorstoreS3.uncounted` says why; objects and bytes stored are still listed), and apply the link model
(``latency_ms``: such storage is refused, see :meth:`TensorstoreBackend.check_storage`).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends.base import ReadBack, WriteSettings
from cubebench.backends.s3_io import S3Face, S3Target
from cubebench.backends.tensorstore_ import (
    TensorstoreBackend,
    _open,
    _pattern_batch,
    _read_batch,
    _write_batch,
    create,
    load_everywhere,
    options,
)
from cubebench.fileio import remove
from cubebench.parallel import BATCH_BYTES, run_batches, scan_batches
from cubebench.patterns import PatternResult, TilePart, combine, pattern_batches, selection

if TYPE_CHECKING:
    from collections.abc import Iterator

    from distributed import Client

    from cubebench.codecs import CodecSpec
    from cubebench.cube import StagedCube

ChunkIndex = tuple[int, ...]
PROFILE = "cubebench"


@contextlib.contextmanager
def kvstore(target: S3Target) -> Iterator[dict[str, Any]]:
    """The tensorstore ``s3`` kvstore spec of the target's store, valid inside the block (see the module's
    note on credentials)."""
    storage = target.store_storage
    spec: dict[str, Any] = {
        "driver": "s3",
        "bucket": storage.bucket,
        "path": f"{storage.prefix}/",
        "aws_region": storage.region,
        "aws_credentials": {"type": "default"},
    }
    if storage.endpoint is not None:
        spec["endpoint"] = storage.endpoint
    if not (storage.access_key_id and storage.secret_access_key):
        yield spec
        return
    folder = target.local.parent
    credentials, config = folder / f"{target.local.name}.credentials", folder / f"{target.local.name}.config"
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[{PROFILE}]\naws_access_key_id = {storage.access_key_id}\n")
        f.write(f"aws_secret_access_key = {storage.secret_access_key}\n")
    config.write_text(f"[profile {PROFILE}]\nregion = {storage.region}\n")  # the profile provider needs both files
    spec["aws_credentials"] = {
        "type": "profile", "profile": PROFILE, "credentials_file": str(credentials), "config_file": str(config),
    }  # fmt: skip
    try:
        yield spec
    finally:
        remove(credentials)
        remove(config)


class TensorstoreS3(S3Face):
    """tensorstore's ``zarr3`` driver on its ``s3`` kvstore: each worker writes and reads its own chunks (or shards)."""

    uncounted = "tensorstore makes its S3 requests through its own HTTP client, which cubebench cannot count"
    local = TensorstoreBackend()

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: S3Target,
        settings: WriteSettings,
    ) -> dict[str, float]:
        """Create the array (its ``zarr.json``), then let each worker PUT its own chunks (or shards)."""
        dtype = np.dtype(staged.dtype)
        load_everywhere(client)
        with kvstore(target) as where:
            create(where, staged.shape, dtype, codec, *self.local._layout(chunks, settings))
            work = scan_batches(client, staged.shape, self.local.storage_block(chunks, settings), dtype.itemsize)
            for _ in run_batches(client, _write_batch, work, staged, where, options(settings)):
                pass
        return {}

    def read(self, client: Client, target: S3Target, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """Each worker GETs and decodes whole chunks (or shards) of its batch into its reused buffer."""
        load_everywhere(client)
        sums: dict[ChunkIndex, int] = {}
        with kvstore(target) as where:
            store = _open(where, options(settings))
            itemsize = np.dtype(store.dtype.numpy_dtype).itemsize
            work = scan_batches(client, tuple(store.shape), self.local.storage_block(chunks, settings), itemsize)
            for result in run_batches(client, _read_batch, work, where, options(settings)):
                sums.update(result)
        return ReadBack(sums)

    def stored_shape(self, target: S3Target) -> tuple[int, ...]:
        """The array's shape, from its ``zarr.json`` (read by tensorstore)."""
        with kvstore(target) as where:
            return tuple(int(s) for s in _open(where, (True, 1, 1)).shape)

    def pattern_result(
        self, client: Client, target: S3Target, pattern: str, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """tensorstore slicing on the workers, one column of chunks (or shards) of the selection per tile."""
        parts: list[TilePart] = []
        with kvstore(target) as where:
            store = _open(where, options(settings))
            sel = selection(pattern, tuple(int(s) for s in store.shape))
            block = tuple(int(c) for c in store.chunk_layout.write_chunk.shape)
            work = pattern_batches(sel, block, np.dtype(store.dtype.numpy_dtype).itemsize, BATCH_BYTES)
            for result in run_batches(client, _pattern_batch, work, sel, where, options(settings)):
                parts.extend(result)
        return combine(sel, parts)
