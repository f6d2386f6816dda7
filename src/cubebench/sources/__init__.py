"""Open any supported source as a lazy 4-D :class:`~cubebench.cube.Cube` ``(scan_y, scan_x, det_y, det_x)``.

A source is a path, a preset name, or a mapping shaped like one entry of an experiment's ``datasets:`` list::

    open_cube("4d_diff")                                        # synthetic preset (8 GiB, lazy)
    open_cube({"preset": "4d_diff", "scale": 0.0625, "seed": 1})
    open_cube({"shape": [16, 16, 128, 128], "zero_fraction": 0.9})
    open_cube("scan.emd")                                       # EMD 1.0 / any HDF5 with one 4-D dataset
    open_cube({"path": "scan.h5", "dataset": "/entry/data"})
    open_cube({"path": "frames.mib", "scan_shape": [256, 256]})

Files are recognised by extension and signature: ``.h5 .hdf5 .hdf .he5 .emd .nxs`` (HDF5), a directory or
``.zarr`` (Zarr array or group), ``.npy``, ``.mib`` (Quantum Detectors, via rosettasciio). Everything a user can
get wrong raises a one-line :class:`~cubebench.errors.DatasetError` or :class:`~cubebench.errors.ConfigError`
that names the culprit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cubebench.errors import ConfigError, DatasetError
from cubebench.sources import hdf5_, mib, npy, zarr_  # noqa: F401  (each registers its file kind)
from cubebench.sources._common import check_scan_shape
from cubebench.sources.presets import PRESETS, SYNTHETIC_KEYS, Preset, get_preset, list_presets, open_synthetic
from cubebench.sources.registry import FILE_KINDS, FileKind, find_kind
from cubebench.sources.s3 import is_s3_url, open_s3, s3_kind
from cubebench.sources.synthetic import SyntheticParams, generate_block

if TYPE_CHECKING:
    from cubebench.cube import Cube

__all__ = [
    "FILE_KEYS",
    "FILE_KINDS",
    "PRESETS",
    "SOURCE_KEYS",
    "FileKind",
    "Preset",
    "SyntheticParams",
    "find_kind",
    "generate_block",
    "get_preset",
    "list_presets",
    "open_cube",
    "source_kind",
]

#: Keys of a file dataset spec.
FILE_KEYS = ("path", "dataset", "scan_shape", "name")
#: Every key a dataset spec may have.
SOURCE_KEYS = tuple(dict.fromkeys((*SYNTHETIC_KEYS, *FILE_KEYS)))


def open_cube(source: str | os.PathLike[str] | Mapping[str, Any]) -> Cube:
    """Open ``source`` (a path, a preset name, or a dataset mapping) as a lazy 4-D cube.

    Nothing is read but metadata (and, for synthetic presets, a sample of noiseless patterns to calibrate the
    dose); ``Cube.data`` is a Dask array whose graph holds only small picklable readers or generator parameters.

    Examples
    --------
    >>> cube = open_cube({"preset": "4d_diff", "scale": 0.0625})
    >>> cube.data.shape, cube.info.dtype
    ((16, 16, 256, 256), 'uint16')
    """
    if isinstance(source, Mapping):
        spec = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        spec = {"preset": text} if isinstance(source, str) and text in PRESETS else {"path": text}
    else:
        raise ConfigError(f"a dataset must be a path, a preset name or a mapping, got {type(source).__name__}")
    unknown = sorted(k for k in spec if k not in SOURCE_KEYS)
    if unknown:
        raise ConfigError(f"unknown dataset key {unknown[0]!r}; valid: {', '.join(SOURCE_KEYS)}")
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError(f"dataset name must be a non-empty string, got {name!r}")
    if spec.get("path") is not None:
        extra = sorted(k for k in spec if k not in FILE_KEYS and spec[k] is not None)
        if extra:
            raise ConfigError(
                f"key {extra[0]!r} applies to synthetic datasets, not to a file (path {spec['path']!s}); "
                f"file keys: {', '.join(FILE_KEYS)}"
            )
        return _open_path(spec)
    extra = sorted(k for k in ("dataset", "scan_shape") if spec.get(k) is not None)
    if extra:
        raise ConfigError(f"key {extra[0]!r} needs a `path`; synthetic keys: {', '.join(SYNTHETIC_KEYS)}")
    if spec.get("preset") is None and spec.get("shape") is None:
        raise ConfigError("a dataset needs `path`, `preset` or `shape`")
    if spec.get("preset") is not None and not isinstance(spec["preset"], str):
        raise ConfigError(f"preset must be a name, got {spec['preset']!r}; valid: {', '.join(PRESETS)}")
    return open_synthetic({k: v for k, v in spec.items() if v is not None})


def _open_path(spec: Mapping[str, Any]) -> Cube:
    raw = spec["path"]
    if not isinstance(raw, (str, os.PathLike)):
        raise ConfigError(f"path must be a string, got {raw!r}")
    if is_s3_url(raw):  # s3://bucket/key: Zarr or HDF5 on S3 (cubebench.sources.s3)
        return open_s3(str(raw), spec.get("dataset"), spec.get("scan_shape"), spec.get("name"))
    path = Path(os.fspath(raw)).expanduser()
    where = str(path)
    dataset = spec.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise ConfigError(f"{where}: dataset must be an in-file path string, got {dataset!r}")
    scan_shape = check_scan_shape(where, spec.get("scan_shape"))
    name = spec.get("name")
    if not path.exists():
        if path.suffix == "" and os.sep not in where and "/" not in where:
            raise DatasetError(
                f"{where!r} is neither a file nor a synthetic preset; presets: {', '.join(list_presets())}"
            )
        raise DatasetError(f"{where}: file not found")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"{where}: cannot read the file (permission denied)")
    if not (path.is_file() or path.is_dir()):  # reading a FIFO would block forever
        raise DatasetError(f"{where}: not a regular file or directory (a FIFO, socket or device)")
    if path.is_dir():
        stores = [kind for kind in FILE_KINDS.values() if kind.directory]
        found = next((kind for kind in stores if kind.sniff(path)), None)
        if found is None:
            raise DatasetError(f"{where}: directory is not a {' or '.join(kind.label for kind in stores)}")
    else:
        try:
            found = find_kind(path)
        except OSError as exc:
            raise DatasetError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
        if found is not None and found.directory:
            raise DatasetError(f"{where}: a {path.suffix} store must be a directory")
        if found is None:
            supported = ", ".join(kind.label for kind in FILE_KINDS.values())
            raise DatasetError(
                f"{where}: unknown file type {path.suffix or '(no extension)'!r}; supported: {supported}"
            )
    if dataset is not None and not found.takes_dataset:
        raise ConfigError(f"{where}: `dataset` applies to HDF5 files and Zarr groups only")
    return found.opener(path, dataset, scan_shape, name)


def source_kind(path: str | os.PathLike[str]) -> str | None:
    """What :func:`open_cube` would open ``path`` as: a :data:`FILE_KINDS` id (``hdf5``, ``zarr``, ...), or None.

    Decided as :func:`open_cube` decides, by suffix and signature (a file that does not exist yet counts by its
    suffix); never raises. Nothing beyond the first bytes is read. An ``s3://`` URL counts by its suffix.
    """
    if is_s3_url(path):
        return s3_kind(str(path))
    p = Path(os.fspath(path)).expanduser()
    try:
        if p.is_dir():
            return next((kind.name for kind in FILE_KINDS.values() if kind.directory and kind.sniff(p)), None)
        found = find_kind(p)
    except OSError:
        return None
    return found.name if found is not None else None
