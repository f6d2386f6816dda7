"""Results on disk between runs: an append-only JSON-lines log, and small JSON side files written atomically.

The runner and the sufficiency runs keep one log each, every line flushed and fsynced as it is written, so that a
crash, a killed worker or Ctrl-C never loses a finished measurement, and ``--resume`` knows what is done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import numpy as np

from cubebench.errors import ResultsError

if TYPE_CHECKING:
    from collections.abc import Mapping


class Record(Protocol):
    """What a log line holds: a key that identifies it, and a JSON round trip."""

    @property
    def key(self) -> Any:
        """Records with equal keys replace each other (the last one wins)."""
        ...

    def to_json(self) -> str:
        """One JSON line."""
        ...

    @classmethod
    def from_json(cls, line: str) -> Self:
        """Inverse of :meth:`to_json`."""
        ...


R = TypeVar("R", bound=Record)


class JsonLinesLog(Generic[R]):
    """Append-only log of ``record_type`` records at ``path``."""

    def __init__(self, path: Path, record_type: type[R]) -> None:
        self.path = Path(path)
        self.record_type = record_type

    def append(self, record: R) -> None:
        """Write one finished record to disk now."""
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(record.to_json() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise ResultsError(f"cannot append to results log {self.path}: {exc.strerror or exc}") from None

    def read(self) -> list[R]:
        """All records; a torn last line (a crash mid-write) is skipped, and the last record per key wins."""
        if not self.path.exists():
            return []
        records: dict[Any, R] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = self.record_type.from_json(line)
            except (json.JSONDecodeError, TypeError):
                continue
            records[record.key] = record
        return list(records.values())


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON side file as a dict; missing, unreadable or malformed gives ``{}`` (it is rebuilt)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed), NumPy scalars and arrays included."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default))
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_dataset(ds: Any, folder: Path, nc_name: str, csv_name: str, frame: Any, what: str) -> Path:
    """Write ``ds`` as ``folder/nc_name`` (netCDF4 via h5netcdf) and ``frame`` as ``folder/csv_name``.

    The netCDF file goes to a temporary name and is renamed, so an existing result is never half-replaced.
    ``what`` names the results in the one-line error.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (nc_name + ".tmp")
        ds.to_netcdf(tmp, engine="h5netcdf")
        tmp.replace(folder / nc_name)
        frame.to_csv(folder / csv_name, index=False)
    except OSError as exc:
        raise ResultsError(f"cannot write {what} to {folder}: {exc.strerror or exc}") from None
    return folder / nc_name


def load_dataset(target: Path, what: str, schema_version: int, required: str | None = None) -> Any:
    """Open the netCDF results file ``target`` into memory: the one loader of every results kind.

    ``what`` names the kind in the one-line errors; a file written by a newer schema than ``schema_version``,
    or (with ``required``) one without that variable, is a :class:`~cubebench.errors.ResultsError`.
    """
    import xarray as xr

    try:  # phony_dims named: an HDF5 file that is not netCDF (a data file given by mistake) opens without a warning
        with xr.open_dataset(target, engine="h5netcdf", phony_dims="access") as ds:
            loaded = ds.load()
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {what} {target}: {exc}") from None
    if required is not None and required not in loaded.data_vars:
        raise ResultsError(f"{target} is not a cubebench {what} file (it has no {required!r} variable)")
    version = int(loaded.attrs.get("schema_version", 0))
    if version > schema_version:
        raise ResultsError(f"{target} has {what} schema {version}; this cubebench reads up to {schema_version}")
    return loaded
