"""Codec-internal threads, set per process (on every Dask worker) so workers x threads never oversubscribes."""

from __future__ import annotations

import os
import sys

import numpy as np

from cubebench.errors import ConfigError

__all__ = ["set_codec_threads"]


def set_codec_threads(n: int) -> None:
    """Set the codec libraries' internal threads to ``n`` in this process (call it on every Dask worker).

    Sets ``BLOSC_NTHREADS`` (which c-blosc and c-blosc2, also inside hdf5plugin's filters, read on every call),
    numcodecs' Blosc threads, and python-blosc2's threads if it is imported, so that workers x threads never
    oversubscribes the cores.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"codec threads must be a positive integer, got {n!r}")
    n = int(n)
    os.environ["BLOSC_NTHREADS"] = str(n)
    from numcodecs import blosc

    blosc.set_nthreads(n)
    if "blosc2" in sys.modules:
        sys.modules["blosc2"].set_nthreads(n)
