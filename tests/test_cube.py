"""The staged cube reads any block exactly, and the chunk grid covers a cube once, whatever the shapes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers import stage_array

from cubebench.cube import StagedCube, block_grid, checksum, checksum_stream, is_contiguous
from cubebench.parallel import batches
from cubebench.staging import needs_layout, stage_layout

if TYPE_CHECKING:
    from distributed import Client

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
    # the same blocks in a pass: copies land in one reused per-thread buffer, edge blocks in a prefix of it
    blocks = [block for _, block in block_grid(shape, chunks)]
    for block, data in zip(blocks, staged.iter_blocks(blocks), strict=True):
        np.testing.assert_array_equal(data, array[block])
    groups = batches(shape, chunks, 2)
    assert sum(len(g) for g in groups) == len(block_grid(shape, chunks))


def test_thread_buffer_is_reused_per_capacity_and_thread() -> None:
    import threading

    from cubebench.cube import thread_buffer

    full = thread_buffer((4, 8), "<u2")
    edge = thread_buffer((2, 3), "<u2", capacity=full.nbytes)  # an edge block of the same pass: same memory
    assert np.shares_memory(full, edge) and edge.shape == (2, 3) and edge.flags.c_contiguous
    assert np.shares_memory(full, thread_buffer((4, 4), "<f4"))  # a decode of the same chunk size
    other = thread_buffer((2, 2), "<u2")  # another chunk size: the buffer follows it
    assert not np.shares_memory(full, other) and other.nbytes == 8
    elsewhere: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: elsewhere.append(thread_buffer((2, 2), "<u2")))
    worker.start()
    worker.join()
    assert not np.shares_memory(other, elsewhere[0])


def test_streamed_hash_equals_one_shot() -> None:
    array = np.arange(1000, dtype="<u2").reshape(10, 100)
    hasher = checksum_stream()
    for row in array:
        hasher.update(row)
    assert hasher.intdigest() == checksum(array)
    changed = array.copy()
    changed[3, 3] += 1
    assert checksum(changed) != checksum(array)


@settings(max_examples=60, deadline=None)
@given(shape=dims, start=dims, size=dims)
def test_contiguity_agrees_with_numpy(shape: tuple[int, ...], start: tuple[int, ...], size: tuple[int, ...]) -> None:
    block = tuple(slice(min(a, s - 1), min(a, s - 1) + n) for a, n, s in zip(start, size, shape, strict=True))
    block = tuple(slice(b.start, min(b.stop, s)) for b, s in zip(block, shape, strict=True))
    expected = np.empty(shape, dtype="u1")[block].flags.c_contiguous
    assert is_contiguous(block, shape) == expected


@settings(max_examples=25, deadline=None)
@given(shape=dims, chunks=dims, seed=st.integers(0, 2**16))
def test_chunk_major_layout_yields_every_block_exactly(
    client: Client, tmp_path_factory: object, shape: tuple[int, ...], chunks: tuple[int, ...], seed: int
) -> None:
    """stage_layout on a real cluster, then iter_blocks: views for layout blocks, copies for the rest."""
    folder = Path(tmp_path_factory.mktemp("layout"))  # type: ignore[attr-defined]
    array = np.random.default_rng(seed).integers(0, 4096, size=shape).astype("<u2")
    staged = stage_array(array, folder)
    chunks = tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))
    chunked = stage_layout(client, staged, chunks, folder)
    assert chunked.layout is not None and chunked.layout.stat().st_size >= array.nbytes
    blocks = [block for _, block in block_grid(shape, chunks)]
    for block, got in zip(blocks, chunked.iter_blocks(blocks), strict=True):
        np.testing.assert_array_equal(got, array[block])
    # blocks off the layout's grid (a whole-frame tile) come from the C-ordered copy
    tiles = [block for _, block in block_grid(shape, (1, 1, shape[2], shape[3]))]
    for block, got in zip(tiles, chunked.iter_blocks(tiles), strict=True):
        np.testing.assert_array_equal(got, array[block])


def test_needs_layout_only_for_scattered_chunks() -> None:
    shape = (8, 8, 16, 16)
    assert not needs_layout(shape, (1, 1, 16, 16))  # one frame: one run already
    assert not needs_layout(shape, (2, 8, 16, 16))  # whole scan rows
    assert needs_layout(shape, (2, 2, 16, 16))  # frames from several rows
    assert needs_layout(shape, (1, 1, 8, 8))  # a detector tile


def test_iterating_blocks_keeps_resident_memory_bounded(tmp_path: Path) -> None:
    """Mapped pages count as resident memory: a pass over a whole cube must not map all of it at once."""
    import psutil

    shape = (160, 32, 128, 128)  # 160 MiB of single frames, well over REMAP_BYTES
    array = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype="<u2", shape=shape)
    array[:] = 1
    array.flush()
    del array
    staged = StagedCube(tmp_path / "big.npy", shape, "<u2", "big")
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    frames = [block for _, block in block_grid(shape, (1, 1, 128, 128))]
    for view in staged.iter_blocks(frames):
        assert int(view[0, 0, 0, 0]) == 1
        peak = max(peak, process.memory_info().rss)
    assert peak - before < 96 * 2**20, f"{(peak - before) / 2**20:.0f} MiB mapped at once"


def test_npy_map_reads_like_np_load_and_follows_a_rewritten_file(tmp_path: Path) -> None:
    from cubebench.cube import data_offset, npy_map

    c_order = np.arange(24, dtype="<u2").reshape(2, 3, 4)
    f_order = np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3))
    for name, array in (("c", c_order), ("f", f_order)):
        np.save(tmp_path / f"{name}.npy", array)
        mapped = npy_map(tmp_path / f"{name}.npy")
        np.testing.assert_array_equal(mapped, array)
        assert mapped.dtype == array.dtype and mapped.flags.f_contiguous == array.flags.f_contiguous
    path = tmp_path / "c.npy"
    with open(path, "wb") as fh:  # version 2.0 header, another shape: the cached header must not be reused
        np.lib.format.write_array(fh, np.ones((5, 2), dtype="<i8"), version=(2, 0))
    np.testing.assert_array_equal(npy_map(path), np.ones((5, 2), dtype="<i8"))
    assert data_offset(path) == np.load(path, mmap_mode="r").offset


def test_npy_maps_open_from_many_threads_at_once(tmp_path: Path) -> None:
    """Headers are parsed one at a time: concurrent ``np.load`` failed here on CPython 3.11 ("AST constructor
    recursion depth mismatch") while thread workers hashed blocks."""
    from concurrent.futures import ThreadPoolExecutor

    from cubebench.cube import npy_map

    paths = []
    for i in range(64):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], np.full((2, 2), i, dtype="<u2"))
    with ThreadPoolExecutor(8) as pool:
        firsts = list(pool.map(lambda p: int(npy_map(p)[0, 0]), paths * 4))
    assert firsts == list(range(64)) * 4


def test_scan_batches_are_few_but_keep_every_worker_thread_busy(client: Client) -> None:
    from cubebench.parallel import SCAN_BATCH_BYTES, scan_batches

    mib = 2**20
    threads = sum(client.nthreads().values())
    small = scan_batches(client, (64, 64, 256, 256), (16, 16, 128, 256), 2)
    assert len(small) == 2 * threads  # 1 GiB in 16 MiB chunks: two batches per thread, not 128 MiB ones
    big = scan_batches(client, (512, 256, 256, 256), (16, 16, 128, 256), 2)
    assert max(len(group) for group in big) * 16 * mib <= SCAN_BATCH_BYTES
    assert sum(len(group) for group in big) == 32 * 16 * 2
    assert len(scan_batches(client, (1, 1, 256, 256), (1, 1, 256, 256), 2)) == 1
