"""dask.array without its eager xarray import: in the client and on the workers, and dask still knows DataArrays.

Each check runs in a fresh interpreter: in the test process xarray is imported long before.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def _run(code: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_run_imports_xarray_nowhere_until_results_and_dask_then_sees_it(tmp_path: Path) -> None:
    out = _run(
        """
        import sys
        import numpy as np
        from cubebench.cluster import open_client
        from cubebench.experiment import ClusterSpec
        from cubebench.sources.npy import open_npy

        if __name__ == "__main__":
            np.save("cube.npy", np.arange(4 * 4 * 8 * 8, dtype="uint16").reshape(4, 4, 8, 8))
            cube = open_npy("cube.npy")
            with open_client(ClusterSpec(workers=1, threads_per_worker=1)) as client:
                total = int(client.compute(cube.data.sum()).result())
                on_workers = client.run(lambda: sorted(m for m in ("xarray", "pandas") if m in sys.modules))
            print(total == int(np.load("cube.npy").sum()))
            print(sorted(m for m in ("xarray", "pandas") if m in sys.modules), list(on_workers.values()))

            import dask.array as da
            import dask.array.core
            import xarray as xr

            lazy = xr.DataArray(da.ones((4, 4), chunks=2))
            print(da.from_array(lazy) is lazy.data, dask.array.core.xr.DataArray is xr.DataArray)
        """,
        tmp_path,
    )
    assert out.split("\n")[:3] == ["True", "[] [[]]", "True True"]


def test_dask_array_already_imported_with_xarray_is_left_alone(tmp_path: Path) -> None:
    out = _run(
        """
        import dask.array, dask.array.core, xarray
        from cubebench.lazy_dask import import_dask_array

        print(import_dask_array() is dask.array, dask.array.core.xr is xarray)
        """,
        tmp_path,
    )
    assert out.strip() == "True True"


def test_before_xarray_is_imported_nothing_is_a_dataarray(tmp_path: Path) -> None:
    out = _run(
        """
        import sys
        import numpy as np
        from cubebench.lazy_dask import import_dask_array

        da = import_dask_array()
        import dask.array.core as core

        print("xarray" in sys.modules, isinstance(np.zeros(2), core.xr.DataArray))
        print(da.from_array(np.arange(6), chunks=3).sum().compute())
        try:
            core.xr.Dataset
        except AttributeError as err:
            print("xarray.Dataset" in str(err))
        """,
        tmp_path,
    )
    assert out.split("\n")[:3] == ["False False", "15", "True"]
