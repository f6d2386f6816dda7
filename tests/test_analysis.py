"""Out-of-core cube statistics: exact agreement with NumPy on small arrays, whatever the chunking or scheduler."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers import stage_array

from cubebench import analysis
from cubebench.analysis import CubeStats, array_stats, binary_entropy, cube_stats
from cubebench.cube import Cube, DatasetInfo
from cubebench.errors import DatasetError
from cubebench.sources import open_cube
from cubebench.staging import staged_stats

if TYPE_CHECKING:
    from distributed import Client


def numpy_reference(x: np.ndarray) -> dict[str, Any]:
    values, counts = np.unique(x, return_counts=True)
    p = counts / counts.sum()
    return {
        "zero_fraction": float((x == 0).mean()),
        "max": x.max(),
        "min": x.min(),
        "entropy_bits": float(-(p * np.log2(p)).sum()),
        "values": values,
        "counts": counts,
    }


def cube_of(x: np.ndarray, chunks: Any) -> Cube:
    info = DatasetInfo(name="t", shape=x.shape, dtype=x.dtype.name, source="memory", kind="npy")
    return Cube(data=da.from_array(x, chunks=chunks), info=info)


KNOWN = np.array([0, 0, 0, 0, 1, 1, 2, 4095], dtype=np.uint16).reshape(1, 2, 2, 2)


def test_known_array_by_hand() -> None:
    s = cube_stats(cube_of(KNOWN, (1, 1, 1, 2)))
    assert s.zero_fraction == 0.5
    assert s.max == 4095 and s.min == 0 and isinstance(s.max, int)
    assert s.effective_bits == 12
    assert s.entropy_bits == pytest.approx(1.75, abs=1e-15)  # -(1/2 log 1/2 + 1/4 log 1/4 + 2 * 1/8 log 1/8)
    assert s.sparsity_bound == 16.0  # H2(1/2) = 1 bit
    assert s.entropy_bound == pytest.approx(16 / 1.75)
    assert s.distinct_values == 4
    np.testing.assert_array_equal(s.histogram[0], [0, 1, 2, 4095])
    np.testing.assert_array_equal(s.histogram[1], [4, 2, 1, 1])
    assert s.shape == (1, 2, 2, 2) and s.nbytes == 16 and s.dtype == "uint16"


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int8", "uint32", "int64", "float32", "float64"])
@pytest.mark.parametrize("chunks", [(4, 3, 8, 8), (1, 2, 3, 5), (2, 3, 8, 4)])
def test_matches_numpy_exactly(dtype: str, chunks: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    x = rng.geometric(0.3, size=(4, 3, 8, 8)) - 1
    x[rng.random(x.shape) < 0.6] = 0
    if np.dtype(dtype).kind == "i":
        x = x - 2
    if np.dtype(dtype).kind == "f":
        x = x / 4.0  # exact quarters, like 2x2 mean binning
    x = x.astype(dtype)
    ref = numpy_reference(x)
    s = cube_stats(cube_of(x, chunks))
    assert s.zero_fraction == ref["zero_fraction"]
    assert s.max == ref["max"] and s.min == ref["min"]
    assert s.entropy_bits == pytest.approx(ref["entropy_bits"], rel=1e-12)
    np.testing.assert_array_equal(s.histogram[0], ref["values"])
    np.testing.assert_array_equal(s.histogram[1], ref["counts"])
    assert s.distinct_values == len(ref["values"])
    bits = np.dtype(dtype).itemsize * 8
    assert s.sparsity_bound == pytest.approx(bits / binary_entropy(ref["zero_fraction"]))
    assert s.entropy_bound == pytest.approx(bits / ref["entropy_bits"])


def test_effective_bits() -> None:
    def eb(values: list[float], dtype: str) -> int:
        return array_stats(np.array(values, dtype=dtype).reshape(1, 1, 1, -1)).effective_bits

    assert eb([0, 4095], "uint16") == 12
    assert eb([0, 4096], "uint16") == 13
    assert eb([0, 65535], "uint16") == 16
    assert eb([0, 0], "uint16") == 0
    assert eb([-3, 5], "int16") == 4  # -8..7 holds both
    assert eb([-128, 0], "int8") == 8
    assert eb([0.0, 1035.5], "float32") == 11  # integer part only
    assert eb([-296.5, 3.0], "float32") == 9
    assert eb([0.0, np.inf], "float64") == -1


def test_degenerate_bounds() -> None:
    zeros = array_stats(np.zeros((2, 2, 4, 4), np.uint16))
    assert zeros.zero_fraction == 1.0 and zeros.entropy_bits == 0.0
    assert math.isinf(zeros.sparsity_bound) and math.isinf(zeros.entropy_bound)
    dense = array_stats(np.full((2, 2, 4, 4), 7, np.float32))
    assert dense.zero_fraction == 0.0 and math.isinf(dense.sparsity_bound)


def test_nan_is_not_zero_and_not_an_extreme() -> None:
    x = np.array([0.0, -0.0, 2.5, np.nan], np.float64).reshape(1, 1, 2, 2)
    s = array_stats(x)
    assert s.zero_fraction == 0.5 and s.max == 2.5 and s.min == 0.0
    assert s.distinct_values == 3


def test_too_many_distinct_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis, "MAX_DISTINCT", 10)
    x = np.arange(64, dtype=np.float32).reshape(2, 2, 4, 4)
    s = cube_stats(cube_of(x, (1, 2, 4, 4)))
    assert s.zero_fraction == 1 / 64 and s.max == 63.0 and s.min == 0.0
    assert s.distinct_values == -1 and math.isnan(s.entropy_bits) and math.isnan(s.entropy_bound)
    assert s.histogram[0].size == 0


def test_synthetic_cube_matches_numpy_and_never_loads_whole() -> None:
    cube = open_cube({"preset": "4d_diff_bin4", "scale": 0.0625})
    s = cube_stats(cube)
    x = cube.data.compute(scheduler="threads")
    ref = numpy_reference(x)
    assert s.zero_fraction == ref["zero_fraction"] and s.max == float(ref["max"])
    assert s.entropy_bits == pytest.approx(ref["entropy_bits"], rel=1e-12)
    assert isinstance(s, CubeStats) and s.dtype == "float32"


def test_under_distributed_client(client: Any) -> None:
    cube = open_cube({"preset": "4d_eels", "scale": 0.03125, "seed": 2})
    remote = cube_stats(cube)  # the session's Client is the default scheduler
    x = cube.data.compute(scheduler="threads")
    ref = numpy_reference(x)
    assert remote.zero_fraction == ref["zero_fraction"] and remote.max == 4095
    assert remote.entropy_bits == pytest.approx(ref["entropy_bits"], rel=1e-12)


def test_to_dict_is_json() -> None:
    s = cube_stats(cube_of(KNOWN, -1))
    d = s.to_dict()
    assert "histogram" not in d and d["zero_fraction"] == 0.5 and d["shape"] == [1, 2, 2, 2]
    json.dumps(d)
    full = s.to_dict(histogram=True)
    assert full["histogram"] == {"values": [0, 1, 2, 4095], "counts": [4, 2, 1, 1]}
    json.dumps(full)


def test_rejects_non_numeric() -> None:
    with pytest.raises(DatasetError):
        array_stats(np.zeros((1, 1, 2, 2), np.complex64))


def test_binary_entropy() -> None:
    assert binary_entropy(0.5) == 1.0
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert binary_entropy(0.93) == pytest.approx(0.3659, abs=1e-4)  # the study's 93 % example


@settings(max_examples=12, deadline=None)
@given(
    dtype=st.sampled_from(["uint16", "int16", "uint8", "float32", "uint32"]),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
)
def test_staged_stats_on_the_cluster_equal_the_dask_pass(
    client: Client, tmp_path_factory: object, dtype: str, shape: tuple[int, ...], seed: int
) -> None:
    """The runner's one-pass statistics over the staged file agree with array_stats on the same data."""
    rng = np.random.default_rng(seed)
    array = (rng.poisson(0.7, size=shape) * rng.integers(-2, 3, size=shape)).astype(dtype)
    staged = stage_array(array, Path(tmp_path_factory.mktemp("stats")))  # type: ignore[attr-defined]
    got = staged_stats(client, staged)
    assert got == array_stats(array)
