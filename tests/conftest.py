"""Shared fixtures: a real LocalCluster (2 worker processes) and small staged cubes of 4D-STEM-like data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from cubebench.cube import StagedCube
from cubebench.experiment import ClusterSpec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="session")
def client() -> Iterator[object]:
    """A real distributed cluster shared by the tests that need one."""
    from cubebench.cluster import open_client

    with open_client(ClusterSpec(workers=2, threads_per_worker=1)) as c:
        yield c


def sparse_counts(
    shape: tuple[int, ...], zero_fraction: float = 0.75, seed: int = 0, dtype: str = "uint16"
) -> np.ndarray:
    """Diffraction-like counts: mostly zeros, values up to 4095."""
    rng = np.random.default_rng(seed)
    values = rng.geometric(0.05, size=shape).clip(0, 4095)
    values[rng.random(shape) < zero_fraction] = 0
    return values.astype(dtype)


def stage_array(array: np.ndarray, folder: Path, name: str = "cube") -> StagedCube:
    """Write ``array`` as a staged ``.npy`` cube, as the runner does."""
    path = folder / f"{name}.npy"
    np.save(path, array)
    return StagedCube(path=path, shape=array.shape, dtype=array.dtype.str, name=name)
