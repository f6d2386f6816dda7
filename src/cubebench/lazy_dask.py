"""Import ``dask.array`` without the xarray (and pandas) it imports at load time.

``dask.array.core`` imports xarray, when it is installed, only so that ``from_array`` can unwrap a chunked
``DataArray``. In a run that costs every process that touches ``dask.array`` 40-60 MiB of resident memory and about a
second, though cubebench needs xarray only to build the results after the last cell. Measured on the study-style
matrix of ``benchmarks/bench_throughput.py`` (1 GiB cube, thread workers): peak of the run 588 -> 532 MiB.

dask still recognises DataArrays: its ``xr`` becomes :class:`XarrayOnceImported`, which answers with xarray itself as
soon as anything has imported it. While ``dask.array`` is being imported (a fraction of a second, once per process,
before the first cell), an ``import xarray`` from another thread would fail; cubebench imports xarray only after.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

_LOCK = threading.Lock()


class _NotImported:
    """A type no object is an instance of: before xarray is imported, nothing can be a ``DataArray``."""


class XarrayOnceImported:
    """Stands in for ``dask.array.core.xr``: xarray's attributes once xarray is imported, until then a
    ``DataArray`` type that matches nothing."""

    def __getattr__(self, name: str) -> Any:
        module = sys.modules.get("xarray")
        if module is not None:
            return getattr(module, name)
        if name == "DataArray":
            return _NotImported
        raise AttributeError(f"xarray is not imported yet (dask asked for xarray.{name})")


def import_dask_array() -> ModuleType:
    """Return ``dask.array``, importing it without xarray when neither is imported yet.

    Returns
    -------
    ModuleType
        The ``dask.array`` module, the same object ``import dask.array`` gives.
    """
    with _LOCK:
        if "dask.array" in sys.modules or "xarray" in sys.modules:
            return importlib.import_module("dask.array")
        absent: Any = None
        sys.modules["xarray"] = absent  # an import of xarray now fails: dask records xarray as not installed
        try:
            module = importlib.import_module("dask.array")
        finally:
            if "xarray" in sys.modules and sys.modules["xarray"] is absent:
                del sys.modules["xarray"]
        core = importlib.import_module("dask.array.core")
        if getattr(core, "xr", None) is None:
            core.xr = XarrayOnceImported()  # type: ignore[attr-defined]
        return module
