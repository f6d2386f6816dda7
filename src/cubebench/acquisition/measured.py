"""The measured rate of one acquisition pipeline at one worker count, from ``acquisition.nc``.

The max-rate search's ``max_GBps`` when there is one, else the highest ``achieved_GBps`` of a paced cell that
kept up (a lower bound), best over datasets; with the compression ratio of its paced cells (raw / stored bytes).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def measured(ds: Any, sel: dict[str, Any]) -> tuple[float, float]:
    """GB/s of raw frames (NaN when nothing was measured) and the median compression ratio (NaN without paced
    cells) of the pipeline ``sel`` (backend, codec, chunk and workers)."""
    rate, ratio = float("nan"), float("nan")
    if "max_GBps" in ds:
        values = ds["max_GBps"].sel(sel).values
        if np.isfinite(values).any():
            rate = float(np.nanmax(values))
    if "achieved_GBps" in ds:
        cells = ds.sel(sel)
        if not np.isfinite(rate):
            kept = cells["achieved_GBps"].where(cells["kept_up"] == 1).values
            rate = float(np.nanmax(kept)) if np.isfinite(kept).any() else rate
        raw = cells["frames"] * cells["frame_bytes"]
        ratio = float((raw / cells["stored_bytes"].where(cells["stored_bytes"] > 0)).median(skipna=True))
    return rate, ratio
