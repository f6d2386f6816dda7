"""File sources (EMD/HDF5, Zarr, .npy, .mib): lazy round trips, chunking, and one-line errors for bad inputs."""

from __future__ import annotations

import os
import pickle
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pytest
import zarr
from tests.helpers import sparse_counts

from cubebench.errors import ConfigError, CubebenchError, DatasetError
from cubebench.sources import SOURCE_KEYS, open_cube
from cubebench.sources._common import CHUNK_BYTES, frame_chunks
from cubebench.sources.hdf5_ import EMD_PATH

BIG = 128 * 2**20  # the chunk-size limit these algorithm tests were written for

if TYPE_CHECKING:
    from pathlib import Path


def mib_header(index: int, width: int, height: int, kind: str = "U16") -> bytes:
    """A 384-byte Merlin frame header as the detector writes it (fields as rosettasciio parses them)."""
    fields = [
        "MQ1", f"{index:06d}", "00384", "01", f"{width:04d}", f"{height:04d}", kind, "   1x1", "01",
        "2020-05-18 16:51:49.971626", "0.000555", "0", "0", "0", "1.200000E+2", "5.110000E+2",
        *["0.000000E+0"] * 6, "3RX", "175", *["511"] * 8,
        "MQ1A", "2020-05-18T14:51:49.971626178Z", "555000ns", "12", "",
    ]  # fmt: skip
    text = ",".join(fields).encode("ascii")
    assert len(text) <= 384
    return text + b" " * (384 - len(text))


def write_mib(path: Path, frames: np.ndarray, kind: str = "U16") -> None:
    """Frames (n, h, w) as a .mib file: header + big-endian pixels per frame."""
    be = {"U16": ">u2", "U08": ">u1", "U32": ">u4"}[kind]
    with open(path, "wb") as fh:
        for i, frame in enumerate(frames):
            fh.write(mib_header(i + 1, frame.shape[1], frame.shape[0], kind))
            fh.write(np.ascontiguousarray(frame, dtype=be).tobytes())


def assert_one_line_error(exc: BaseException, *culprits: str) -> None:
    msg = str(exc)
    assert isinstance(exc, CubebenchError)
    assert "\n" not in msg, msg
    for c in culprits:
        assert c in msg, (c, msg)


# ---------------------------------------------------------------------------------------------------------------
# one shared round-trip suite, subclassed per source kind
# ---------------------------------------------------------------------------------------------------------------


class SourceRoundTrip:
    """Write ``EXPECTED`` in a format, open it with ``open_cube``, get the same values back lazily."""

    kind = ""
    shape: tuple[int, ...] = (5, 6, 16, 12)
    dtype = "uint16"

    def expected(self) -> np.ndarray:
        return sparse_counts(self.shape, seed=len(self.kind), dtype=self.dtype, zero_fraction=0.7, p=0.1)

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:  # returns the source given to open_cube
        raise NotImplementedError

    def values_read(self, array: np.ndarray) -> np.ndarray:
        """What the cube should hold for a written ``array`` (a format may reorient)."""
        return array.reshape(self.cube_shape())

    def cube_shape(self) -> tuple[int, ...]:
        return self.shape

    @pytest.fixture
    def written(self, tmp_path: Path) -> tuple[Any, np.ndarray]:
        array = self.expected()
        return self.write(tmp_path, array), array

    def test_round_trip(self, written: tuple[Any, np.ndarray]) -> None:
        source, array = written
        cube = open_cube(source)
        assert cube.info.kind == self.kind
        assert cube.info.shape == self.cube_shape() == cube.data.shape
        assert cube.data.ndim == 4
        assert cube.data.dtype == np.dtype(self.dtype).newbyteorder("=")
        assert cube.info.dtype == np.dtype(self.dtype).name
        got = cube.data.compute(scheduler="threads")
        np.testing.assert_array_equal(got, self.values_read(array))
        assert got.dtype.isnative

    def test_graph_pickles_without_data(self, written: tuple[Any, np.ndarray]) -> None:
        source, array = written
        cube = open_cube(source)
        blob = pickle.dumps(dict(cube.data.__dask_graph__()))
        assert len(blob) < 20_000 + array.nbytes // 4

    def test_on_distributed_workers(self, written: tuple[Any, np.ndarray], client: Any) -> None:
        source, array = written
        cube = open_cube(source)
        got = client.compute(cube.data).result()
        np.testing.assert_array_equal(got, self.values_read(array))

    def test_rechunked_blocks(self, written: tuple[Any, np.ndarray]) -> None:
        source, array = written
        data = open_cube(source).data.rechunk((2, 4, 7, 5), method="tasks")
        np.testing.assert_array_equal(data.blocks[1, 1, 1, 1].compute(scheduler="threads"),
                                      self.values_read(array)[2:4, 4:6, 7:14, 5:10])  # fmt: skip


class TestEMD(SourceRoundTrip):
    kind = "emd"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "scan.emd"
        with h5py.File(path, "w") as f:
            f.attrs["version_major"] = 1
            f.attrs["version_minor"] = 0
            ds = f.create_dataset(EMD_PATH, data=array, chunks=(2, 3, 16, 12), compression="gzip")
            ds.parent.attrs["emd_group_type"] = 1
            f["version_1/data/datacubes/datacube_000/dim1"] = np.arange(array.shape[0])
        return path


class TestHDF5(SourceRoundTrip):
    kind = "hdf5"
    dtype = "int32"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "scan.h5"
        with h5py.File(path, "w") as f:
            f["entry/instrument/detector/flatfield"] = np.ones((16, 12))
            f.create_dataset("entry/data/counts", data=array, dtype=">i4")  # big-endian, contiguous
        return str(path)


class TestHDF5FrameStack(SourceRoundTrip):
    kind = "hdf5"
    shape = (30, 16, 12)

    def cube_shape(self) -> tuple[int, ...]:
        return (5, 6, 16, 12)

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "frames.nxs"
        with h5py.File(path, "w") as f:
            f.create_dataset("entry/data", data=array, chunks=(4, 16, 12))
        return {"path": path, "scan_shape": [5, 6]}


class TestZarrArray(SourceRoundTrip):
    kind = "zarr"
    dtype = "float32"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "scan.zarr"
        z = zarr.create_array(str(path), shape=array.shape, chunks=(2, 2, 8, 12), dtype=array.dtype)
        z[...] = array
        return str(path)


class TestZarrGroup(SourceRoundTrip):
    kind = "zarr"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "experiment"  # a directory without .zarr suffix
        g = zarr.open_group(str(path), mode="w")
        g.create_array("meta/mask", shape=(16, 12), dtype="bool")
        a = g.create_array("raw/counts", shape=array.shape, chunks=(1, 6, 16, 12), dtype=array.dtype)
        a[...] = array
        return {"path": path, "name": "grouped"}


class TestZarrV2(SourceRoundTrip):
    kind = "zarr"
    dtype = "uint8"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "v2.zarr"
        z = zarr.create_array(str(path), shape=array.shape, chunks=(3, 3, 16, 12), dtype=array.dtype, zarr_format=2)
        z[...] = array
        return path


class TestNpy(SourceRoundTrip):
    kind = "npy"
    dtype = "float64"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "scan.npy"
        np.save(path, array)
        return path


class TestNpyFortranBigEndian(SourceRoundTrip):
    kind = "npy"
    dtype = "uint16"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "scan.npy"
        np.save(path, np.asfortranarray(array.astype(">u2")))
        return path


class TestNpyFrameStack(SourceRoundTrip):
    kind = "npy"
    shape = (30, 16, 12)

    def cube_shape(self) -> tuple[int, ...]:
        return (6, 5, 16, 12)

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "frames.npy"
        np.save(path, array)
        return {"path": str(path), "scan_shape": [6, 5]}


class TestMib(SourceRoundTrip):
    kind = "mib"
    shape = (30, 16, 12)

    def cube_shape(self) -> tuple[int, ...]:
        return (5, 6, 16, 12)

    def values_read(self, array: np.ndarray) -> np.ndarray:
        # rosettasciio's orientation: detector rows flipped with respect to the file
        return array.reshape(self.cube_shape())[..., ::-1, :]

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "scan.mib"
        write_mib(path, array)
        return {"path": path, "scan_shape": [5, 6]}


class TestMib8Bit(TestMib):
    dtype = "uint8"

    def write(self, tmp_path: Path, array: np.ndarray) -> Any:
        path = tmp_path / "scan8.mib"
        write_mib(path, array, kind="U08")
        return {"path": path, "scan_shape": [5, 6]}


# ---------------------------------------------------------------------------------------------------------------
# selection, chunking and metadata
# ---------------------------------------------------------------------------------------------------------------


def test_hdf5_with_two_4d_datasets_needs_dataset(tmp_path: Path) -> None:
    a, b = (
        sparse_counts((2, 3, 8, 8), seed=1, zero_fraction=0.7, p=0.1),
        sparse_counts((2, 2, 4, 4), seed=2, zero_fraction=0.7, p=0.1),
    )
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["scans/a"] = a
        f["scans/b"] = b
    with pytest.raises(DatasetError) as err:
        open_cube(path)
    assert_one_line_error(err.value, "two.h5", "/scans/a", "/scans/b", "dataset")
    cube = open_cube({"path": str(path), "dataset": "/scans/b"})
    np.testing.assert_array_equal(cube.data.compute(), b)
    assert cube.info.attrs["dataset"] == "/scans/b" and cube.info.kind == "hdf5"
    with pytest.raises(DatasetError) as err:
        open_cube({"path": path, "dataset": "scans/c"})
    assert_one_line_error(err.value, "/scans/c", "/scans/a", "/scans/b")


def test_emd_default_wins_over_other_4d_datasets(tmp_path: Path) -> None:
    path = tmp_path / "many.emd"
    a = sparse_counts((2, 2, 8, 8), seed=3, zero_fraction=0.7, p=0.1)
    with h5py.File(path, "w") as f:
        f[EMD_PATH] = a
        f["version_1/data/datacubes/datacube_001/data"] = sparse_counts((2, 2, 8, 8), seed=4, zero_fraction=0.7, p=0.1)
    cube = open_cube(path)
    assert cube.info.kind == "emd" and cube.info.attrs["dataset"] == "/" + EMD_PATH
    np.testing.assert_array_equal(cube.data.compute(), a)
    other = open_cube({"path": path, "dataset": "version_1/data/datacubes/datacube_001/data"})
    assert other.info.kind == "emd"


def test_zarr_group_with_two_4d_arrays(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("x", shape=(2, 2, 4, 4), dtype="uint16")
    g.create_array("y/z", shape=(2, 2, 4, 4), dtype="uint16")[...] = 7
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "g.zarr")
    assert_one_line_error(err.value, "g.zarr", "x", "y/z", "dataset")
    cube = open_cube({"path": tmp_path / "g.zarr", "dataset": "y/z"})
    assert (cube.data.compute() == 7).all() and cube.info.attrs["array"] == "y/z"
    with pytest.raises(DatasetError) as err:
        open_cube({"path": tmp_path / "g.zarr", "dataset": "nope"})
    assert_one_line_error(err.value, "nope", "y/z")


def test_hdf5_dask_chunks_are_whole_frames_aligned_to_file_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(64, 64, 128, 128), dtype="uint16", chunks=(8, 4, 128, 64))
    cube = open_cube(path)  # nothing written: reading would give zeros, but we only look at the layout
    cy, cx, dy, dx = cube.data.chunksize
    assert (dy, dx) == (128, 128)
    assert cy % 8 == 0 and cx % 4 == 0
    assert CHUNK_BYTES // 2 <= cy * cx * dy * dx * 2 <= CHUNK_BYTES
    assert cube.info.attrs["file_chunks"] == "8x4x128x64"


def test_frame_chunks_contiguous_prefers_whole_rows() -> None:
    assert frame_chunks((256, 256, 256, 256), 2) == (1, 256, 256, 256)  # default: 32 MiB of whole scan rows
    assert frame_chunks((256, 256, 256, 256), 2, limit=BIG) == (4, 256, 256, 256)  # 128 MiB of whole scan rows
    assert frame_chunks((4, 4, 8, 8), 2) == (4, 4, 8, 8)
    assert frame_chunks((2, 2, 8192, 8192), 4) == (1, 1, 8192, 8192)  # one frame above the limit still works
    # 128 MiB: one more doubling would be too big
    assert frame_chunks((256, 256, 256, 256), 2, (32, 32), limit=BIG) == (32, 32, 256, 256)
    assert frame_chunks((256, 256, 256, 256), 2, (16, 16), limit=BIG) == (32, 32, 256, 256)
    assert frame_chunks((256, 256, 256, 256), 2, (1, 1), limit=BIG) == (32, 32, 256, 256)
    assert frame_chunks((64, 64, 64, 64), 4, (7, 5), limit=BIG) == (64, 64, 64, 64)  # the whole cube fits
    assert frame_chunks((512, 512, 64, 64), 4, (7, 5), limit=BIG) == (56, 80, 64, 64)  # multiples of the file chunk
    assert frame_chunks((10, 10, 8192, 8192), 2, (3, 3)) == (3, 3, 8192, 8192)  # one file chunk above the limit


def test_npy_reader_copies_blocks(tmp_path: Path) -> None:
    array = sparse_counts((4, 4, 8, 8), zero_fraction=0.7, p=0.1)
    np.save(tmp_path / "a.npy", array)
    block = open_cube(tmp_path / "a.npy").data.blocks[0, 0, 0, 0].compute(scheduler="sync")
    assert not isinstance(block, np.memmap) and block.base is None


def test_open_cube_accepts_path_objects_and_names(tmp_path: Path) -> None:
    np.save(tmp_path / "cube.npy", sparse_counts((2, 2, 4, 4), zero_fraction=0.7, p=0.1))
    cube = open_cube({"path": tmp_path / "cube.npy", "name": "label"})
    assert cube.info.name == "label" and cube.info.source == str((tmp_path / "cube.npy").resolve())
    assert open_cube(tmp_path / "cube.npy").info.name == "cube"


def test_hdf5_signature_after_user_block(tmp_path: Path) -> None:
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["d"] = sparse_counts((2, 2, 4, 4), zero_fraction=0.7, p=0.1)
    with open(path, "r+b") as fh:
        fh.write(b"not hdf5 text in the user block")
    assert open_cube(path).data.shape == (2, 2, 4, 4)


# ---------------------------------------------------------------------------------------------------------------
# errors: one line, naming the culprit
# ---------------------------------------------------------------------------------------------------------------


def _h5(path: Path, **datasets: Any) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


def test_missing_file(tmp_path: Path) -> None:
    for src in (tmp_path / "absent.h5", str(tmp_path / "absent.npy"), {"path": tmp_path / "absent.mib"}):
        with pytest.raises(DatasetError) as err:
            open_cube(src)
        assert_one_line_error(err.value, "absent", "not found")


def test_not_a_file_and_not_a_preset() -> None:
    with pytest.raises(DatasetError) as err:
        open_cube("nope_preset")
    assert_one_line_error(err.value, "nope_preset", "4d_diff", "3d_eels")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _h5(tmp_path / "locked.h5", d=sparse_counts((2, 2, 4, 4), zero_fraction=0.7, p=0.1))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(path) else real(p, mode))
    with pytest.raises(DatasetError) as err:
        open_cube(path)
    assert_one_line_error(err.value, "locked.h5", "permission")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("hello, I am not HDF5\n" * 100)
    with pytest.raises(DatasetError) as err:
        open_cube(path)
    assert_one_line_error(err.value, "text.h5", "not an HDF5 file")


@pytest.mark.parametrize("keep", [600, 0.5, -40])
def test_truncated_hdf5(tmp_path: Path, keep: float) -> None:
    full = _h5(tmp_path / "full.h5", data=sparse_counts((4, 4, 16, 16), zero_fraction=0.7, p=0.1))
    raw = full.read_bytes()
    n = int(keep if keep >= 1 else len(raw) * keep) if keep > 0 else len(raw) + int(keep)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(raw[:n])
    with pytest.raises(DatasetError) as err:
        open_cube(cut)
    assert_one_line_error(err.value, "cut.h5", "HDF5")


def test_no_4d_dataset(tmp_path: Path) -> None:
    path = _h5(tmp_path / "flat.h5", x=np.zeros((4, 4)), y=np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(DatasetError) as err:
        open_cube(path)
    assert_one_line_error(err.value, "flat.h5", "no 4-D dataset", "/x (4, 4)", "/y (2, 3, 4, 5, 6)")


@pytest.mark.parametrize(
    ("array", "culprit"),
    [
        (np.zeros((4, 4)), "2-D"),
        (np.zeros((2, 2, 2, 2, 2)), "5-D"),
        (np.zeros((6, 4, 4)), "scan_shape"),
        (np.zeros((2, 2, 4, 4), np.complex64), "complex"),
        (np.zeros((2, 2, 4, 4), bool), "bool"),
        (np.zeros((2, 0, 4, 4), np.uint16), "empty"),
        (np.zeros((2, 2, 4, 4), "S3"), "dtype"),
    ],
)
def test_bad_arrays_in_every_format(tmp_path: Path, array: np.ndarray, culprit: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["d"] = array
    sources: list[Any] = [tmp_path / "bad.npy", {"path": tmp_path / "bad.h5", "dataset": "d"}]
    if array.dtype.kind != "S":
        z = zarr.create_array(str(tmp_path / "bad.zarr"), shape=array.shape, dtype=array.dtype)
        if array.size:
            z[...] = array
        sources.append(tmp_path / "bad.zarr")
    for src in sources:
        with pytest.raises(DatasetError) as err:
            open_cube(src)
        assert_one_line_error(err.value, "bad", culprit)


def test_object_npy(tmp_path: Path) -> None:
    arr = np.empty((2, 2, 2, 2), dtype=object)
    np.save(tmp_path / "obj.npy", arr, allow_pickle=True)
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "obj.npy")
    assert_one_line_error(err.value, "obj.npy", "object")


def test_truncated_and_fake_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "full.npy", sparse_counts((4, 4, 8, 8), zero_fraction=0.7, p=0.1))
    raw = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-100])
    (tmp_path / "fake.npy").write_bytes(b"PK\x03\x04 zip, not npy")
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "cut.npy")
    assert_one_line_error(err.value, "cut.npy", "truncated")
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "fake.npy")
    assert_one_line_error(err.value, "fake.npy", "not a .npy")


def test_3d_with_wrong_scan_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", sparse_counts((12, 4, 4), zero_fraction=0.7, p=0.1))
    with pytest.raises(DatasetError) as err:
        open_cube({"path": tmp_path / "f.npy", "scan_shape": [5, 5]})
    assert_one_line_error(err.value, "f.npy", "25 frames", "12")
    np.save(tmp_path / "g.npy", sparse_counts((3, 4, 4, 4), zero_fraction=0.7, p=0.1))
    with pytest.raises(DatasetError) as err:
        open_cube({"path": tmp_path / "g.npy", "scan_shape": [4, 3]})
    assert_one_line_error(err.value, "g.npy", "scan_shape")


def test_truncated_mib(tmp_path: Path) -> None:
    frames = sparse_counts((12, 8, 8), zero_fraction=0.7, p=0.1)
    write_mib(tmp_path / "full.mib", frames)
    raw = (tmp_path / "full.mib").read_bytes()
    frame_bytes = 384 + 8 * 8 * 2
    (tmp_path / "cut.mib").write_bytes(raw[: 11 * frame_bytes + 100])
    (tmp_path / "short.mib").write_bytes(raw[: 9 * frame_bytes])
    with pytest.raises(DatasetError) as err:
        open_cube({"path": tmp_path / "cut.mib", "scan_shape": [3, 4]})
    assert_one_line_error(err.value, "cut.mib", "truncated", "11 complete frames")
    with pytest.raises(DatasetError) as err:
        open_cube({"path": tmp_path / "short.mib", "scan_shape": [3, 4]})
    assert_one_line_error(err.value, "short.mib", "truncated", "9 complete frames", "needs 12")
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "cut.mib")
    assert_one_line_error(err.value, "cut.mib", "truncated")
    with pytest.raises(DatasetError) as err:
        open_cube({"path": tmp_path / "full.mib", "scan_shape": [2, 4]})
    assert_one_line_error(err.value, "full.mib", "12 frames", "needs 8")


def test_mib_needs_scan_shape(tmp_path: Path) -> None:
    write_mib(tmp_path / "s.mib", sparse_counts((6, 4, 4), zero_fraction=0.7, p=0.1))
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "s.mib")
    assert_one_line_error(err.value, "s.mib", "scan_shape", "6 frames")


def test_mib_scan_shape_from_hdr_file(tmp_path: Path) -> None:
    frames = sparse_counts((12, 8, 6), zero_fraction=0.7, p=0.1)
    write_mib(tmp_path / "acq.mib", frames)
    (tmp_path / "acq.hdr").write_text(
        "HDR,\t\nFrames in Acquisition (Number):\t12\nFrames per Trigger (Number):\t4\nEnd\t\n"
    )
    cube = open_cube(tmp_path / "acq.mib")
    assert cube.info.shape == (3, 4, 8, 6)
    np.testing.assert_array_equal(cube.data.compute(), frames.reshape(3, 4, 8, 6)[..., ::-1, :])


def test_not_a_mib(tmp_path: Path) -> None:
    (tmp_path / "x.mib").write_bytes(b"\x00" * 2000)
    with pytest.raises(DatasetError) as err:
        open_cube({"path": tmp_path / "x.mib", "scan_shape": [1, 1]})
    assert_one_line_error(err.value, "x.mib", "not a Quantum Detectors")


def test_directory_that_is_not_zarr(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "plain")
    assert_one_line_error(err.value, "plain", "not a Zarr store")
    (tmp_path / "broken.zarr").mkdir()
    (tmp_path / "broken.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "broken.zarr")
    assert_one_line_error(err.value, "broken.zarr", "Zarr")


def test_unknown_file_type(tmp_path: Path) -> None:
    (tmp_path / "scan.tif").write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(DatasetError) as err:
        open_cube(tmp_path / "scan.tif")
    assert_one_line_error(err.value, "scan.tif", ".tif", "supported")


def test_sniffs_format_without_extension(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", sparse_counts((2, 2, 4, 4), zero_fraction=0.7, p=0.1))
    os.rename(tmp_path / "a.npy", tmp_path / "a.bin")
    assert open_cube(tmp_path / "a.bin").info.kind == "npy"
    _h5(tmp_path / "b.h5", d=sparse_counts((2, 2, 4, 4), zero_fraction=0.7, p=0.1))
    os.rename(tmp_path / "b.h5", tmp_path / "b.dat")
    assert open_cube(tmp_path / "b.dat").info.kind == "hdf5"


@pytest.mark.parametrize(
    ("spec", "culprit"),
    [
        ({"path": "x.h5", "colour": "red"}, "colour"),
        ({"preset": "4d_diff", "path": "x.h5"}, "preset"),
        ({"path": "x.h5", "seed": 3}, "seed"),
        ({"preset": "4d_diff", "dataset": "/data"}, "dataset"),
        ({"preset": "4d_diff", "scan_shape": [2, 2]}, "scan_shape"),
        ({"path": "x.npy", "scan_shape": [2, 0]}, "scan_shape"),
        ({"path": "x.npy", "scan_shape": "2x2"}, "scan_shape"),
        ({"path": 5}, "path"),
        ({"name": "lonely"}, "preset"),
        ({"preset": "4d_diff", "name": 3}, "name"),
    ],
)
def test_bad_dataset_specs(spec: dict[str, Any], culprit: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_cube(spec)
    assert_one_line_error(err.value, culprit)


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as err:
        open_cube({"preset": "4d_diff", "datset": "/x"})
    assert_one_line_error(err.value, "datset", *SOURCE_KEYS)


def test_bad_source_type() -> None:
    with pytest.raises(ConfigError) as err:
        open_cube(42)  # type: ignore[arg-type]
    assert_one_line_error(err.value, "int")


def test_missing_hdf5_filter_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "z.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "d", data=sparse_counts((2, 2, 8, 8), zero_fraction=0.7, p=0.1), chunks=(1, 1, 8, 8), compression="gzip"
        )
    monkeypatch.setattr(h5py.h5z, "filter_avail", lambda fid: False)
    with pytest.raises(DatasetError) as err:
        open_cube(path)
    assert_one_line_error(err.value, "z.h5", "filter 1")
