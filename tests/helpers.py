"""What the test modules share: count generators, staging an array as the runner does, and experiment dicts.

One place for each, so that a test module says only how its data or experiment differs from the common one:

- :func:`sparse_counts`: diffraction-like counts (mostly zeros, geometric values up to ``top``);
- :func:`stage_array`: an array written as a staged ``.npy`` cube (:class:`cubebench.cube.StagedCube`);
- :func:`experiment`: a small, fast experiment dict (8 MiB of ``4d_diff``, 2 workers, no warm-up), updated
  with a module's own base dict and then a test's overrides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import StagedCube

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

#: 8 x 8 scan of 256 x 256 uint16 (8 MiB) of the ``4d_diff`` preset.
DIFF = {"preset": "4d_diff", "scale": 0.03125, "name": "diff"}
#: 16 x 16 scan of 256 x 256 uint16 (32 MiB) of the ``4d_diff`` preset.
DIFF_32MIB = {"preset": "4d_diff", "scale": 0.0625, "name": "diff"}

#: What every test experiment starts from (modules override it with a base dict of their own).
EXPERIMENT: dict[str, Any] = {
    "name": "t",
    "datasets": [DIFF],
    "backends": ["hdf5_direct", "zarr"],
    "codecs": ["none", "gzip-1", "blosc-zstd"],
    "chunks": ["balanced"],
    "runs": 1,
    "warmup": False,
    "cluster": {"workers": 2, "threads_per_worker": 1},
}


def experiment(base: Mapping[str, Any] | None = None, /, **overrides: Any) -> dict[str, Any]:
    """:data:`EXPERIMENT`, updated with ``base`` (a module's own defaults) and then ``overrides``.

    >>> experiment({"name": "faults", "runs": 2}, runs=3)["runs"]
    3
    >>> experiment(codecs=["none"])["codecs"], experiment()["codecs"] is EXPERIMENT["codecs"]
    (['none'], False)
    """
    import copy

    return copy.deepcopy({**EXPERIMENT, **(base or {}), **overrides})


def sparse_counts(
    shape: tuple[int, ...],
    zero_fraction: float = 0.75,
    seed: int = 0,
    dtype: str = "uint16",
    *,
    p: float = 0.05,
    top: int = 4095,
) -> np.ndarray:
    """Diffraction-like counts: geometric values (success probability ``p``) clipped to ``top``, a share zeroed.

    >>> a = sparse_counts((2, 2, 8, 8))
    >>> a.dtype, int(a.max()) <= 4095, 0.6 < float((a == 0).mean()) < 0.9
    (dtype('uint16'), True, True)
    """
    rng = np.random.default_rng(seed)
    values = rng.geometric(p, size=shape).clip(0, top)
    values[rng.random(shape) < zero_fraction] = 0
    return values.astype(dtype)


def stage_array(array: np.ndarray, folder: Path, name: str = "cube") -> StagedCube:
    """Write ``array`` as a staged ``.npy`` cube, as the runner does."""
    path = folder / f"{name}.npy"
    np.save(path, array)
    return StagedCube(path=path, shape=array.shape, dtype=array.dtype.str, name=name)
