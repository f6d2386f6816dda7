"""The benchmark pipeline: expand an experiment into cells and run them on a Dask cluster.

- :mod:`~cubebench.runner.cells`: the cells and the rules each follows (runs or not, estimate, layout copy);
- :mod:`~cubebench.runner.estimate`: codec speeds sampled in-process and each cell's estimated seconds;
- :mod:`~cubebench.runner.planning`: ``cubebench plan``, the estimates and disk needs before a run;
- :mod:`~cubebench.runner.session`: one cell: write, size, read, verify, clean up;
- :mod:`~cubebench.runner.workspace`: scratch, staging and results folders, signals, resuming;
- :mod:`~cubebench.runner.provenance`: what every result records about the run, the machine and libraries;
- :mod:`~cubebench.runner.execute`: :func:`run`, the whole experiment (named so that the submodule never
  shadows the function).
"""

from __future__ import annotations

from cubebench.runner.cells import Cell, plan_cells
from cubebench.runner.execute import open_sources, run
from cubebench.runner.planning import plan
from cubebench.runner.workspace import Interrupted

__all__ = ["Cell", "Interrupted", "open_sources", "plan", "plan_cells", "run"]
