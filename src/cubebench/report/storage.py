"""HDF5 against Zarr on each storage: one table comparing the backends where the storages differ.

Timings from different storages are not averaged together: each storage row is its own medians over the ok,
verified cells of that backend (every codec and chunking), beside what each cell asked of the storage (requests,
objects) and, for the HDF5 paths on S3, how much of the write was the upload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cubebench.report.format import Table

if TYPE_CHECKING:
    import xarray as xr

#: Columns: label -> (results variable, how cells are combined).
_COLUMNS = {
    "ratio": ("ratio", "geomean"),
    "write GiB/s": ("write_GiBps", "median"),
    "read GiB/s": ("read_GiBps", "median"),
    "requests / cell": ("requests", "median"),
    "objects / cell": ("objects", "median"),
    "upload s": ("upload_seconds", "median"),
    "frame read ms": ("read_frame_seconds", "median"),
    "frame read requests": ("read_frame_requests", "median"),
}


def storage_table(ds: xr.Dataset) -> Table:
    """Per storage and backend: ratio (geometric mean), write and read GiB/s, requests and objects per cell."""
    ok = (ds["status"] == "ok") & ds["verified"].astype(bool)
    rows = []
    for storage in ds["storage"].values:
        for backend in ds["backend"].values:
            where = ok.sel(storage=storage, backend=backend)
            if not bool(where.any()):
                continue
            row: dict[str, object] = {"storage": str(storage), "backend": str(backend)}
            for label, (name, how) in _COLUMNS.items():
                if name not in ds:
                    continue
                values = ds[name].sel(storage=storage, backend=backend).where(where).values.astype(float).ravel()
                values = values[np.isfinite(values)]
                if label == "frame read ms":
                    values = values * 1000
                if not values.size:
                    row[label] = float("nan")
                elif how == "geomean":
                    row[label] = float(np.exp(np.mean(np.log(values[values > 0])))) if (values > 0).any() else np.nan
                else:
                    row[label] = float(np.median(values))
            rows.append(row)
    formats = {label: ".3f" for label in ("write GiB/s", "read GiB/s", "upload s")}
    formats.update({"ratio": ".2f", "requests / cell": ".0f", "objects / cell": ".0f", "frame read ms": ".1f"})
    formats["frame read requests"] = ".0f"
    return Table(
        "storage",
        "HDF5 and Zarr on each storage: medians over the ok, verified cells (every codec and chunking)",
        pd.DataFrame(rows),
        formats,
        note="Requests are counted on S3 only (local files: –). On S3 the HDF5 paths write locally, then upload.",
    )
