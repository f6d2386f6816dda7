"""The staged cube reads any block exactly, and the chunk grid covers a cube once, whatever the shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cubebench.cube import StagedCube, block_grid, checksum, checksum_stream
from cubebench.parallel import batches

dims = st.tuples(*(st.integers(1, 6) for _ in range(4)))


@settings(max_examples=40, deadline=None)
@given(shape=dims, chunks=dims, seed=st.integers(0, 2**16))
def test_block_grid_and_staged_reads(
    tmp_path_factory: object, shape: tuple[int, ...], chunks: tuple[int, ...], seed: int
) -> None:
    folder = Path(tmp_path_factory.mktemp("staged"))  # type: ignore[attr-defined]
    array = np.random.default_rng(seed).integers(0, 4096, size=shape).astype("<u2")
    np.save(folder / "c.npy", array)
    staged = StagedCube(folder / "c.npy", shape, "<u2", "c")
    covered = np.zeros(shape, dtype=int)
    for _, block in block_grid(shape, chunks):
        covered[block] += 1
        np.testing.assert_array_equal(staged.read_block(block), array[block])
    assert (covered == 1).all()
    groups = batches(shape, chunks, 2)
    assert sum(len(g) for g in groups) == len(block_grid(shape, chunks))


def test_streamed_hash_equals_one_shot() -> None:
    array = np.arange(1000, dtype="<u2").reshape(10, 100)
    hasher = checksum_stream()
    for row in array:
        hasher.update(row)
    assert hasher.intdigest() == checksum(array)
    changed = array.copy()
    changed[3, 3] += 1
    assert checksum(changed) != checksum(array)
