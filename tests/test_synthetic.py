"""The seeded synthetic generator: determinism per block, dask composition, zero-fraction targeting, presets."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cubebench.errors import ConfigError
from cubebench.sources import PRESETS, SyntheticParams, generate_block, list_presets, open_cube
from cubebench.sources import synthetic as syn
from cubebench.sources.presets import synthetic_params

if TYPE_CHECKING:
    from distributed import Client

SMALL = SyntheticParams(shape=(6, 5, 32, 24), dose=4000.0, block=(4, 4), seed=7)


def compose(params: SyntheticParams) -> np.ndarray:
    """The whole cube from generate_block, block by block."""
    ny, nx = params.grid
    return np.concatenate(
        [np.concatenate([generate_block(params, (by, bx)) for bx in range(nx)], axis=1) for by in range(ny)], axis=0
    )


# ---------------------------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------------------------


def test_generate_block_is_a_pure_function() -> None:
    a = generate_block(SMALL, (1, 0))
    b = generate_block(SMALL, (1, 0))
    assert a.shape == (2, 4, 32, 24) and a.dtype == np.uint16  # edge block clipped to the scan
    assert a.tobytes() == b.tobytes()
    assert a.any()
    assert generate_block(replace(SMALL, seed=8), (1, 0)).tobytes() != a.tobytes()
    assert generate_block(SMALL, (0, 0)).tobytes() != generate_block(SMALL, (0, 1))[:, :4].tobytes()


def test_block_index_outside_grid() -> None:
    with pytest.raises(IndexError):
        generate_block(SMALL, (2, 0))


def test_dask_array_equals_blocks_threaded_distributed_and_rechunked(client: Client) -> None:
    data = syn.to_dask(SMALL)
    expected = compose(SMALL)
    threaded = data.compute(scheduler="threads")
    distributed = client.compute(data).result()
    assert threaded.tobytes() == expected.tobytes()
    assert distributed.tobytes() == expected.tobytes()
    rechunked = data.rechunk((5, 2, 7, 24), method="tasks").compute(scheduler="threads")
    assert rechunked.tobytes() == expected.tobytes()


def test_preset_cube_same_bytes_on_cluster_and_threads(client: Client) -> None:
    cube = open_cube({"preset": "4d_eels", "scale": 0.0625, "seed": 3})
    local = cube.data.compute(scheduler="threads")
    remote = client.compute(cube.data).result()
    assert local.tobytes() == remote.tobytes()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sy=st.integers(1, 9),
    sx=st.integers(1, 9),
    dy=st.integers(2, 20),
    dx=st.integers(2, 20),
    gy=st.integers(1, 5),
    gx=st.integers(1, 5),
    cy=st.integers(1, 9),
    cx=st.integers(1, 9),
    cd=st.integers(1, 20),
    eels=st.booleans(),
)
def test_any_shape_and_chunking_composes_blocks(
    sy: int, sx: int, dy: int, dx: int, gy: int, gx: int, cy: int, cx: int, cd: int, eels: bool
) -> None:
    model = syn.EELSModel() if eels else syn.DiffractionModel()
    params = SyntheticParams(
        shape=(sy, sx, dy, dx), model=model, dose=300.0 * dy * dx, block=(gy, gx), seed=sy * 31 + dx
    )
    data = syn.to_dask(params).rechunk((cy, cx, cd, cd), method="tasks")  # P2P would need the cluster
    got = data.compute(scheduler="sync")
    assert got.tobytes() == compose(params).tobytes()
    assert got.max() <= 4095


def test_graph_is_small_and_picklable() -> None:
    cube = open_cube("4d_diff")
    assert cube.data.shape == (256, 256, 256, 256)
    graph = dict(cube.data.__dask_graph__())
    assert len(pickle.dumps(graph)) < 100_000  # no arrays in the graph, just parameters
    assert len(pickle.dumps(cube.info.attrs["params"])) < 5_000


def test_chunks_are_whole_generator_blocks() -> None:
    for name in list_presets():
        cube = open_cube(name)
        gy, gx = cube.info.attrs["params"].generator_block
        assert all(c % gy == 0 for c in cube.data.chunks[0][:-1])
        assert all(c % gx == 0 for c in cube.data.chunks[1][:-1])
        assert cube.data.chunks[2:] == ((cube.data.shape[2],), (cube.data.shape[3],))
        chunk_bytes = np.prod(cube.data.chunksize) * cube.data.dtype.itemsize
        assert chunk_bytes <= syn.CHUNK_TARGET_BYTES


# ---------------------------------------------------------------------------------------------------------------
# counting statistics
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.004, 0.3, 0.999, 1.0, 2.5, 60.0])
def test_poisson_sampler_moments(lam: float) -> None:
    x = syn.poisson(np.full(400_000, lam, np.float32), np.random.default_rng(11))
    lam32 = float(np.float32(lam))
    se = np.sqrt(lam32 / x.size)
    assert abs(x.mean() - lam32) < 5 * se
    assert abs((x == 0).mean() - np.exp(-lam32)) < 5 * np.sqrt(np.exp(-lam32) / x.size) + 1e-4
    assert abs(x.var() - lam32) < 0.03 * lam32 + 5 * se


def test_patterns_sum_to_one_and_do_not_depend_on_blocks() -> None:
    iy = np.array([0, 3, 5])
    ix = np.array([4, 0, 2])
    p = syn.patterns(SMALL, iy, ix)
    assert p.shape == (3, 32, 24) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert (p >= 0).all()
    one = syn.patterns(replace(SMALL, block=(1, 1)), iy[1:2], ix[1:2])
    np.testing.assert_array_equal(one[0], p[1])


@pytest.mark.parametrize("target", [0.5, 0.75, 0.9])
def test_zero_fraction_target_is_hit(target: float) -> None:
    cube = open_cube({"shape": [16, 16, 128, 128], "zero_fraction": target, "seed": 2})
    x = cube.data.compute(scheduler="threads")
    assert x.dtype == np.uint16 and x.shape == (16, 16, 128, 128)
    assert abs((x == 0).mean() - target) < 0.01
    assert x.max() <= 4095
    assert cube.info.attrs["target_zero_fraction"] == target
    assert abs(cube.info.attrs["expected_zero_fraction"] - target) < 1e-3


def test_eels_zero_fraction_target_is_hit() -> None:
    cube = open_cube({"preset": "4d_eels", "shape": [4, 4, 64, 256], "zero_fraction": 0.8})
    x = cube.data.compute(scheduler="threads")
    assert abs((x == 0).mean() - 0.8) < 0.01


def test_dose_is_used_as_given() -> None:
    cube = open_cube({"preset": "4d_diff", "shape": [2, 2, 32, 32], "dose": 5000})
    assert cube.info.attrs["dose"] == 5000.0 and "target_zero_fraction" not in cube.info.attrs
    x = cube.data.compute(scheduler="sync").astype(np.int64)
    assert abs(x.sum(axis=(2, 3)).mean() - 5000) < 5 * np.sqrt(5000 / 4) + 1


def test_unreachable_zero_fraction() -> None:
    # a 256x256 detector has two hot pixels that are never zero: 99.999 % zeros is out of reach
    with pytest.raises(ConfigError, match=r"zero_fraction 0\.99999 is out of reach"):
        open_cube({"preset": "4d_diff", "shape": [2, 2, 256, 256], "zero_fraction": 0.99999})


# ---------------------------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------------------------

STUDY = {
    "4d_diff": ((256, 256, 256, 256), "uint16", 0.747353),
    "4d_diff_bin2": ((256, 256, 128, 128), "float32", 0.708912),
    "4d_diff_bin4": ((256, 256, 64, 64), "float32", 0.609100),
    "4d_eels": ((64, 64, 256, 1024), "uint16", 0.928317),
    "3d_eels": ((64, 64, 1, 1024), "uint16", 0.494717),
}


def test_presets_match_the_study_at_full_size_without_computing() -> None:
    assert list_presets() == list(STUDY)
    for name, (shape, dtype, zf) in STUDY.items():
        cube = open_cube(name)
        assert cube.data.shape == shape and cube.info.shape == shape
        assert cube.data.dtype == np.dtype(dtype) and cube.info.dtype == dtype
        assert cube.info.kind == "synthetic" and cube.info.name == name
        assert PRESETS[name].zero_fraction == zf
        # the model's expected zero fraction at full size (noiseless patterns of a sample of probe positions)
        assert abs(cube.info.attrs["expected_zero_fraction"] - zf) < 0.01, name
        for key in ("preset", "seed", "dose", "target_zero_fraction", "generator_block"):
            assert key in cube.info.attrs
        assert cube.info.to_dict()["dose"] == cube.info.attrs["dose"]


@pytest.mark.parametrize("name", list(STUDY))
def test_presets_zero_fraction_at_small_scale(name: str) -> None:
    scale = 0.0625
    cube = open_cube({"preset": name, "scale": scale})
    shape, dtype, zf = STUDY[name]
    assert cube.data.shape == (round(shape[0] * scale), round(shape[1] * scale), *shape[2:])
    x = cube.data.compute(scheduler="threads")
    assert x.dtype == np.dtype(dtype)
    assert abs((x == 0).mean() - zf) < 0.015, (name, (x == 0).mean())
    if dtype == "uint16":
        assert x.max() <= (65535 if name == "3d_eels" else 4095)


def test_3d_eels_is_the_momentum_sum_of_4d_eels() -> None:
    four = open_cube({"preset": "4d_eels", "scale": 0.03125, "seed": 5}).data.compute(scheduler="threads")
    three = open_cube({"preset": "3d_eels", "scale": 0.03125, "seed": 5}).data.compute(scheduler="threads")
    expected = np.minimum(four.sum(axis=2, keepdims=True, dtype=np.uint32), 65535).astype(np.uint16)
    assert three.tobytes() == expected.tobytes()
    assert four.max() == 4095  # the zero-loss peak saturates the 12-bit counter, as in the study


def test_binned_presets_are_mean_binned_4d_diff() -> None:
    base = open_cube({"preset": "4d_diff", "shape": [3, 3, 64, 64], "dose": 20000, "seed": 4})
    b2 = open_cube({"preset": "4d_diff_bin2", "shape": [3, 3, 32, 32], "dose": 20000, "seed": 4})
    b4 = open_cube({"preset": "4d_diff_bin4", "shape": [3, 3, 16, 16], "dose": 20000, "seed": 4})
    x = base.data.compute(scheduler="sync").astype(np.float64)
    for b, cube in ((2, b2), (4, b4)):
        y = cube.data.compute(scheduler="sync")
        assert y.dtype == np.float32
        ref = x.reshape(3, 3, 64 // b, b, 64 // b, b).mean(axis=(3, 5))
        np.testing.assert_array_equal(y, ref.astype(np.float32))


def test_scale_shrinks_scan_dims_only() -> None:
    params, _ = synthetic_params({"preset": "4d_eels", "scale": 0.1})
    assert params.shape == (6, 6, 256, 1024)
    params, _ = synthetic_params({"preset": "4d_diff", "scale": 1e-6})
    assert params.shape == (1, 1, 256, 256)


def test_default_names_are_distinct() -> None:
    names = {
        open_cube(spec).info.name
        for spec in (
            {"preset": "4d_eels", "scale": 0.0625},
            {"preset": "4d_eels", "scale": 0.0625, "seed": 1},
            {"preset": "4d_eels", "scale": 0.125},
            {"preset": "4d_eels", "scale": 0.0625, "zero_fraction": 0.9},
        )
    }
    assert len(names) == 4
    assert open_cube({"preset": "3d_eels", "name": "mine"}).info.name == "mine"


@pytest.mark.parametrize(
    ("spec", "culprit"),
    [
        ({"preset": "5d_diff"}, "5d_diff"),
        ({"preset": "4d_diff", "scale": 0}, "scale"),
        ({"preset": "4d_diff", "scale": -0.5}, "scale"),
        ({"preset": "4d_diff", "scale": 1.5}, "scale"),
        ({"preset": "4d_diff", "scale": "half"}, "scale"),
        ({"preset": "4d_diff", "scale": True}, "scale"),
        ({"preset": "4d_diff", "scale": float("nan")}, "scale"),
        ({"preset": "4d_diff", "zero_fraction": 0.0}, "zero_fraction"),
        ({"preset": "4d_diff", "zero_fraction": 1.0}, "zero_fraction"),
        ({"preset": "4d_diff", "zero_fraction": 1.3}, "zero_fraction"),
        ({"preset": "4d_diff", "zero_fraction": 0.7, "dose": 100}, "dose"),
        ({"preset": "4d_diff", "dose": -1}, "dose"),
        ({"preset": "4d_diff", "seed": -1}, "seed"),
        ({"preset": "4d_diff", "seed": 1.5}, "seed"),
        ({"shape": [16, 16, 64]}, "shape"),
        ({"shape": [16, 0, 64, 64]}, "shape"),
        ({"preset": "4d_diff", "dtype": "complex64"}, "complex64"),
        ({"preset": "4d_diff", "dtype": "bool"}, "bool"),
        ({"preset": "4d_diff_bin2", "dtype": "uint16"}, "float32"),
        ({"preset": "3d_eels", "shape": [4, 4, 2, 64]}, "shape"),
        ({"preset": "4d_diff", "chunks": 3}, "chunks"),
        ({"preset": 4}, "preset"),
    ],
)
def test_bad_synthetic_specs(spec: dict[str, object], culprit: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_cube(spec)
    msg = str(err.value)
    assert culprit in msg and "\n" not in msg


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        open_cube({"preset": "4D_diff"})
    assert all(name in str(err.value) for name in PRESETS)
