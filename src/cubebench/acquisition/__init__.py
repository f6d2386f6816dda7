"""Paced acquisition: can compression and storage keep up with a detector?

- :mod:`~cubebench.acquisition.config`: the ``acquisition:`` section of an experiment;
- :mod:`~cubebench.acquisition.pacer`: frames released in scan order at a rate;
- :mod:`~cubebench.acquisition.assembler`: frames collected into chunks, completed chunks handed on;
- :mod:`~cubebench.acquisition.writers`: chunks encoded on the cluster and stored (``hdf5_direct``, ``zarr_direct``);
- :mod:`~cubebench.acquisition.metrics`: backlog, latency and the kept-up criterion;
- :mod:`~cubebench.acquisition.cell`, :mod:`~cubebench.acquisition.search`, :mod:`~cubebench.acquisition.run`:
  one paced cell, the maximum-rate search, the whole experiment;
- :mod:`~cubebench.acquisition.results`: the log and ``acquisition.nc``;
- :mod:`~cubebench.acquisition.summary`, :mod:`~cubebench.acquisition.figure`: the results as a table, and buffer
  and latency against chunk shape as a figure with its data;
- :mod:`~cubebench.acquisition.feasibility`, :mod:`~cubebench.acquisition.scaling`: a detector judged against the
  measured rates, and the linear-in-workers model checked against 1- and 2-worker searches;
- :mod:`~cubebench.acquisition.forms`, :mod:`~cubebench.acquisition.zarr_events`: reduced forms stored on the fly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["acquire"]


def acquire(experiment: Any, out: Any = None, *, resume: bool = False, find_max: bool = False) -> Path:
    """Run an experiment's paced acquisition cells (see :func:`cubebench.acquisition.run.acquire`)."""
    from cubebench.acquisition.run import acquire as run_acquire

    return run_acquire(experiment, out, resume=resume, find_max_rate=find_max)
