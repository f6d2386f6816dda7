"""The study's simple method: the whole array saved as ``.npy`` through gzip (``np.save`` into ``gzip.open``).

The format is unchanged: the file is one gzip stream holding a ``.npy`` file, and loads with plain
``np.load(gzip.open(path))``. The write is parallel all the same, because a gzip file may hold several members
whose contents are concatenated (RFC 1952): workers gzip C-contiguous slabs of the array (whole scan rows, or runs
of frames when a scan row is larger than a task) into members, and the client writes them in order after a member
holding the ``.npy`` header. Reading has no random access: one worker streams the file back through
``gzip.open`` one scan row at a time, and hashes each storage block incrementally from the rows (a streaming
XXH3 hash equals the one-shot hash), so memory stays at one scan row. The codec is the gzip level: ``gzip-1``,
``gzip-6``, ``gzip-9`` (the study's setting). Access patterns stream from the start up to the selection's last scan row.
"""

from __future__ import annotations

import gzip
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.backends._frames import require_codec, require_dtype
from cubebench.backends.base import Backend, ReadBack, WriteSettings
from cubebench.cube import Block, StagedCube, block_grid, checksum_stream
from cubebench.fileio import WritebackAhead, fsync_tree
from cubebench.parallel import BATCH_BYTES, run_ordered
from cubebench.patterns import PatternResult, Selection, TilePart, combine, reduce_tile

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

    from cubebench.codecs import CodecSpec

ChunkIndex = tuple[int, ...]

#: The codecs this backend accepts: the gzip level of the stream.
LEVELS = {"gzip-1": 1, "gzip-6": 6, "gzip-9": 9}
#: Raw bytes gzipped into one member by one task.
SLAB_BYTES = BATCH_BYTES


class NpyGzipBackend(Backend):
    """``.npy`` in a (multi-member) gzip stream; parallel gzip of slabs, one in-order writer, streamed read."""

    name = "npy_gzip"
    s3_unsupported = "one gzip stream read sequentially from the start; not ported to S3 (it has no random access)"
    writes, reads = "one_writer", "one_process"  # workers gzip, the client writes; one worker streams back
    suffix = ".npy.gz"
    chunked = False

    def check(self, codec: CodecSpec, dtype: np.dtype[Any]) -> None:
        """Only the gzip codecs: their level is the stream's level."""
        require_codec(codec, tuple(LEVELS), f"npy_gzip gzips the whole .npy; only codecs {', '.join(LEVELS)} apply")
        require_dtype(codec, dtype, self.name)

    def write(
        self,
        client: Client,
        staged: StagedCube,
        codec: CodecSpec,
        chunks: tuple[int, ...],
        target: Path,
        settings: WriteSettings,
    ) -> None:
        """Gzip slabs on the workers into members; write the header member, then the slabs in order."""
        level = LEVELS[codec.id]
        dtype = np.dtype(staged.dtype)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": staged.shape}
        )
        with open(target, "wb") as f, WritebackAhead(target) as writeback:
            f.write(gzip.compress(header.getvalue(), compresslevel=level, mtime=0))
            for member in run_ordered(client, _gzip_slab, slabs(staged.shape, dtype.itemsize), staged, level):
                f.write(member)
                writeback.wrote(len(member))
            f.flush()
        fsync_tree(target)

    def read(self, client: Client, target: Path, chunks: tuple[int, ...], settings: WriteSettings) -> ReadBack:
        """One worker streams the file back row by row; one hash per block of ``chunks``, continued across rows."""
        return ReadBack(client.submit(_stream_checksums, str(target), chunks, pure=False).result())

    def stored_shape(self, target: Path) -> tuple[int, ...]:
        """The array's shape, from the ``.npy`` header (the first gzip member)."""
        with gzip.open(target, "rb") as f:
            return read_header(f)[0]

    def pattern_result(
        self, client: Client, target: Path, sel: Selection, chunks: tuple[int, ...], settings: WriteSettings
    ) -> PatternResult:
        """One worker streams from the start to the selection's last scan row (gzip has no random access)."""
        parts: list[TilePart] = client.submit(_stream_pattern, str(target), sel, pure=False).result()
        return combine(sel, parts)


def slabs(shape: tuple[int, ...], itemsize: int, limit: int | None = None) -> list[Block]:
    """C-contiguous pieces of the array in file order: runs of whole scan rows, or runs of frames of one row."""
    limit = limit or SLAB_BYTES
    sy, sx, dy, dx = shape
    full = (slice(0, dy), slice(0, dx))
    row_bytes = sx * dy * dx * itemsize
    if row_bytes <= limit:
        rows = max(1, limit // max(1, row_bytes))
        return [(slice(y, min(y + rows, sy)), slice(0, sx), *full) for y in range(0, sy, rows)]
    frames = max(1, limit // max(1, dy * dx * itemsize))
    return [(slice(y, y + 1), slice(x, min(x + frames, sx)), *full) for y in range(sy) for x in range(0, sx, frames)]


def read_header(f: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from the ``.npy`` header at the start of the open (decompressing) file ``f``."""
    version = np.lib.format.read_magic(f)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(f)
    if fortran:
        raise ValueError("npy_gzip: a Fortran-ordered .npy cannot be streamed row by row")
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _gzip_slab(block: Block, staged: StagedCube, level: int) -> bytes:
    data = staged.read_block(block)
    return gzip.compress(data.data.cast("B"), compresslevel=level, mtime=0)


def _rows(path: str, stop: int | None = None) -> Any:
    """Yield ``(y, row)`` for scan rows ``0 .. stop-1``, streamed into one reused buffer."""
    with gzip.open(path, "rb") as f:
        shape, dtype = read_header(f)
        row = np.empty(shape[1:], dtype=dtype)
        view = row.data.cast("B")
        for y in range(shape[0] if stop is None else stop):
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    raise EOFError(f"{path} ends in scan row {y} of {shape[0]}")
                got += n
            yield y, row


def _stream_checksums(path: str, chunks: tuple[int, ...]) -> dict[ChunkIndex, int]:
    hashers: dict[ChunkIndex, Any] = {}
    in_row: list[tuple[tuple[int, ...], Block]] | None = None
    for y, row in _rows(path):
        if in_row is None:
            in_row = block_grid(row.shape, chunks[1:])
        band = y // chunks[0]
        for index, block in in_row:
            key = (band, *index)
            if key not in hashers:
                hashers[key] = checksum_stream()
            hashers[key].update(np.ascontiguousarray(row[block]))
    return {key: int(hasher.intdigest()) for key, hasher in hashers.items()}


def _stream_pattern(path: str, sel: Selection) -> list[TilePart]:
    ys, xs = sel.scan
    return [
        reduce_tile(sel, y, xs.start, row[None, xs, sel.det[0], sel.det[1]])
        for y, row in _rows(path, ys.stop)
        if y >= ys.start
    ]
