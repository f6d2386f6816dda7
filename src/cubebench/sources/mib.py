"""Quantum Detectors Merlin ``.mib`` sources, read lazily through rosettasciio.

A ``.mib`` file is a run of frames, each an ASCII header (384 bytes for one chip, 768 for a quad, starting
``MQ1,``) followed by big-endian pixels (``U08``, ``U16`` or ``U32``). The header does not give the scan shape:
pass ``scan_shape`` (or keep the ``.hdr`` file from the acquisition next to it). The cube has rosettasciio's
orientation: detector rows flipped with respect to the order in the file, as HyperSpy shows Merlin frames.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cubebench.cube import Cube, DatasetInfo
from cubebench.errors import DatasetError
from cubebench.sources._common import check_dtype, dask_chunks, first_line, frame_chunks, to_native
from cubebench.sources.registry import FileKind, register_kind

MIB_MAGIC = b"MQ1,"
_DTYPES = {"U08": ">u1", "U16": ">u2", "U32": ">u4"}


@dataclass(frozen=True)
class MibHeader:
    """What the first frame header says."""

    header_bytes: int
    width: int
    height: int
    dtype: np.dtype
    chips: int
    pixel_type: str

    @property
    def frame_bytes(self) -> int:
        """Header plus pixels of one frame."""
        return self.header_bytes + self.width * self.height * self.dtype.itemsize


def read_header(path: str | os.PathLike[str]) -> MibHeader:
    """Parse the first frame header; raise :class:`DatasetError` if it is not a usable MIB header."""
    where = str(path)
    with open(path, "rb") as fh:
        head = fh.read(768)
    if not head.startswith(MIB_MAGIC):
        raise DatasetError(f"{where}: not a Quantum Detectors .mib file (no 'MQ1,' header)")
    try:
        fields = head[:384].decode("ascii", errors="replace").split(",")
        header_bytes = int(fields[2])
        chips = int(fields[3])
        width, height = int(fields[4]), int(fields[5])
        kind = fields[6].strip()
    except (IndexError, ValueError):
        raise DatasetError(f"{where}: corrupt .mib frame header") from None
    if header_bytes not in (384, 768):
        raise DatasetError(f"{where}: unsupported .mib header size {header_bytes} (expected 384 or 768)")
    if kind not in _DTYPES:
        raise DatasetError(f"{where}: unsupported .mib pixel type {kind!r} (supported: U08, U16, U32; not raw R64)")
    if width <= 0 or height <= 0:
        raise DatasetError(f"{where}: corrupt .mib frame header (frame {width}x{height})")
    return MibHeader(header_bytes, width, height, np.dtype(_DTYPES[kind]), chips, kind)


def open_mib(path: str | os.PathLike[str], scan_shape: tuple[int, int] | None = None, name: str | None = None) -> Cube:
    """Open a ``.mib`` file lazily with ``rsciio.quantumdetector.file_reader(..., lazy=True)``."""
    path = Path(path)
    where = str(path)
    header = read_header(path)
    check_dtype(where, header.dtype)
    size = os.path.getsize(path)
    n_frames, rest = divmod(size, header.frame_bytes)
    hdr_file = path.with_suffix(".hdr")
    if scan_shape is not None:
        need = scan_shape[0] * scan_shape[1]
        if n_frames < need or (n_frames == need and rest):
            raise DatasetError(
                f"{where}: truncated .mib file: {n_frames} complete frames"
                + (f" and {rest} stray bytes" if rest else "")
                + f", scan_shape {list(scan_shape)} needs {need}"
            )
        if n_frames > need or rest:
            raise DatasetError(
                f"{where}: holds {n_frames} frames"
                + (f" and {rest} stray bytes" if rest else "")
                + f", but scan_shape {list(scan_shape)} needs {need}"
            )
    elif rest:
        raise DatasetError(
            f"{where}: truncated .mib file: {n_frames} complete frames and {rest} stray bytes "
            f"(frames are {header.frame_bytes} bytes)"
        )
    elif not hdr_file.exists():
        raise DatasetError(
            f"{where}: the .mib file holds {n_frames} frames but no scan shape; give scan_shape [scan_y, scan_x] "
            f"(or keep the acquisition's .hdr file next to it)"
        )
    if n_frames == 0:
        raise DatasetError(f"{where}: the .mib file holds no complete frame")
    try:
        from rsciio.quantumdetector import file_reader
    except ImportError:
        raise DatasetError(f"{where}: reading .mib files needs rosettasciio (pip install rosettasciio)") from None

    kwargs: dict[str, Any] = {"lazy": True}
    if scan_shape is not None:
        sy, sx = scan_shape
        kwargs["navigation_shape"] = (sx, sy)  # rosettasciio takes (x, y)
        kwargs["chunks"] = frame_chunks((sy, sx, header.height, header.width), header.dtype.itemsize, None)
    logger = logging.getLogger("rsciio.quantumdetector._api")
    level = logger.level
    if scan_shape is not None:
        logger.setLevel(logging.ERROR)  # it warns that no .hdr file exists, which it needs only to guess the scan
    try:
        result = file_reader(str(path), **kwargs)
    except Exception as exc:  # rosettasciio raises many types for malformed files
        raise DatasetError(f"{where}: cannot read .mib file ({first_line(exc)})") from None
    finally:
        logger.setLevel(level)
    data = result[0]["data"]
    if data.ndim != 4:
        raise DatasetError(
            f"{where}: rosettasciio read a {data.ndim}-D array {tuple(data.shape)}; give scan_shape [scan_y, scan_x]"
        )
    shape4 = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]), int(data.shape[3]))
    if data.chunks[2:] != ((shape4[2],), (shape4[3],)):  # rosettasciio's "auto" chunks may split frames
        chunk = frame_chunks(shape4, header.dtype.itemsize, None)
        data = data.rechunk(dask_chunks(shape4, chunk), method="tasks")
    data = to_native(data)
    info = DatasetInfo(
        name=name or path.stem,
        shape=shape4,
        dtype=np.dtype(data.dtype).name,
        source=str(path.resolve()),
        kind="mib",
        attrs={
            "header_bytes": header.header_bytes,
            "pixel_type": header.pixel_type,
            "orientation": "rosettasciio: detector rows flipped relative to file order",
        },
    )
    return Cube(data=data, info=info)


def _sniff_mib(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(MIB_MAGIC)) == MIB_MAGIC


def _open(path: Path, dataset: str | None, scan_shape: tuple[int, int] | None, name: str | None) -> Cube:
    return open_mib(path, scan_shape, name)


KIND = register_kind(FileKind("mib", "Quantum Detectors .mib", (".mib",), _sniff_mib, _open))
