"""cubebench: benchmark lossless compression of large scientific data cubes through HDF5 and Zarr on Dask.

The public API::

    import cubebench
    cube = cubebench.open_cube({"preset": "4d_diff", "scale": 0.0625})   # lazy
    print(cubebench.plan("configs/paper.yaml"))                     # cells, estimated time and disk, not run
    ds = cubebench.run("configs/quick.yaml", out="results/quick")     # an xarray.Dataset
    ds = cubebench.run("scan.emd", codecs=["blosc-zstd"], runs=1)     # the quick matrix on a data file
    ds = cubebench.load_results("results/quick")
    sds = cubebench.load_sufficiency("results/sufficiency")         # inference errors of representations
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["load_experiment", "load_results", "load_sufficiency", "open_cube", "plan", "run"]

if TYPE_CHECKING:
    from cubebench.experiment import load_experiment
    from cubebench.results import load_results
    from cubebench.runner import plan, run
    from cubebench.sources import open_cube
    from cubebench.sufficiency.results import load_sufficiency

_LAZY = {
    "open_cube": "cubebench.sources",
    "run": "cubebench.runner",
    "plan": "cubebench.runner",
    "load_results": "cubebench.results",
    "load_experiment": "cubebench.experiment",
    "load_sufficiency": "cubebench.sufficiency.results",
}


def __getattr__(name: str) -> Any:
    """Import the public functions on first use, so ``import cubebench`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cubebench' has no attribute {name!r}")
