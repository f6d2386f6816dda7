"""``convert`` and ``generate``: any source to EMD 1.0 HDF5 or Zarr, verified, readable with plain h5py / zarr."""

from __future__ import annotations

from typing import TYPE_CHECKING

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for plain h5py reads)
import numpy as np
import pytest
import zarr
from tests.helpers import sparse_counts

from cubebench.backends.hdf5_filter import DATA_PATH
from cubebench.chunking import parse_chunk
from cubebench.cli import main
from cubebench.convert import convert, generate
from cubebench.errors import CodecUnavailableError, ConfigError, VerificationError
from cubebench.sources import open_cube

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client


@pytest.fixture
def npy(tmp_path: Path) -> tuple[Path, np.ndarray]:
    array = sparse_counts((6, 5, 24, 20))
    path = tmp_path / "scan.npy"
    np.save(path, array)
    return path, array


@pytest.mark.parametrize("suffix", [".h5", ".emd", ".zarr"])
def test_convert_npy_reads_back_with_plain_libraries(
    client: Client, tmp_path: Path, npy: tuple[Path, np.ndarray], suffix: str
) -> None:
    path, array = npy
    dest = convert(
        path,
        tmp_path / f"out{suffix}",
        codec="blosc-zstd",
        chunk="4,4,16,16",
        cluster=client,
        progress=suffix == ".h5",
    )
    if suffix == ".zarr":
        stored = zarr.open_array(str(dest), mode="r")
        assert stored.chunks == (4, 4, 16, 16)
        np.testing.assert_array_equal(stored[...], array)
    else:
        with h5py.File(dest, "r") as f:
            assert f.attrs["version_major"] == 1 and f[DATA_PATH].chunks == (4, 4, 16, 16)
            np.testing.assert_array_equal(f[DATA_PATH][...], array)
    assert not list(tmp_path.glob(".cubebench-convert-*"))  # scratch removed


def test_convert_stages_a_fortran_npy(client: Client, tmp_path: Path) -> None:
    array = np.asfortranarray(sparse_counts((4, 4, 8, 8), dtype="float32"))
    np.save(tmp_path / "f.npy", array)
    dest = convert(
        tmp_path / "f.npy",
        tmp_path / "f.h5",
        codec="gzip-1",
        chunk="balanced",
        cluster=client,
        progress=False,
    )
    with h5py.File(dest, "r") as f:
        np.testing.assert_array_equal(f[DATA_PATH][...], array)


def test_generate_preset_round_trips(client: Client, tmp_path: Path) -> None:
    dest = generate(
        "4d_diff",
        tmp_path / "g.zarr",
        scale=1 / 64,
        seed=2,
        codec="zstd",
        chunk="single_frame",
        cluster=client,
        progress=False,
    )
    expected = open_cube({"preset": "4d_diff", "scale": 1 / 64, "seed": 2}).data.compute()
    stored = zarr.open_array(str(dest), mode="r")
    assert stored.shape == (4, 4, 256, 256) and stored.chunks == (1, 1, 256, 256)
    np.testing.assert_array_equal(stored[...], expected)


def test_dest_is_never_overwritten(
    tmp_path: Path, npy: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = npy
    (tmp_path / "exists.h5").write_bytes(b"keep")
    with pytest.raises(ConfigError, match=r"already exists"):
        convert(path, tmp_path / "exists.h5")
    assert main(["convert", str(path), str(tmp_path / "exists.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    assert (tmp_path / "exists.h5").read_bytes() == b"keep"
    with pytest.raises(ConfigError, match=r"must end with"):
        convert(path, tmp_path / "out.tif")
    with pytest.raises(ConfigError, match=r"not a folder"):
        convert(path, tmp_path / "missing" / "out.h5")


def test_unavailable_codec_and_bad_chunk(client: Client, tmp_path: Path, npy: tuple[Path, np.ndarray]) -> None:
    path, _ = npy
    with pytest.raises(CodecUnavailableError, match=r"pcodec"):
        convert(path, tmp_path / "p.h5", codec="pcodec", cluster=client)
    with pytest.raises(ConfigError, match=r"4 comma-separated"):
        parse_chunk("4,x,1,1")
    assert parse_chunk("1,2,3,4") == (1, 2, 3, 4) and parse_chunk("balanced") == "balanced"
    assert not (tmp_path / "p.h5").exists()


def test_zarr_destination_falls_back_to_zarr_python_for_pcodec(
    client: Client, tmp_path: Path, npy: tuple[Path, np.ndarray]
) -> None:
    """``.zarr`` is written by ``zarr_direct``; a codec only zarr-python writes (pcodec) goes through ``zarr``."""
    from cubebench.backends import availability
    from cubebench.codecs import get_codec

    path, array = npy
    if availability(get_codec("pcodec"), array.dtype)["zarr"] is not None:
        pytest.skip("pcodec is not installed")
    dest = convert(path, tmp_path / "p.zarr", codec="pcodec", cluster=client, progress=False)
    stored = zarr.open_array(str(dest), mode="r")
    np.testing.assert_array_equal(stored[...], array)
    assert stored.metadata.to_dict()["codecs"][0]["name"] == "numcodecs.pcodec"


def test_failed_verification_removes_dest(
    client: Client, tmp_path: Path, npy: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cubebench.backends import ReadBack
    from cubebench.backends.zarr_direct import ZarrDirectBackend

    monkeypatch.setattr(ZarrDirectBackend, "read", lambda self, *args: ReadBack({(0, 0, 0, 0): 1}))
    path, _ = npy
    with pytest.raises(VerificationError, match=r"3 chunks missing from the read-back"):
        convert(path, tmp_path / "bad.zarr", codec="none", cluster=client, progress=False)
    assert not (tmp_path / "bad.zarr").exists()


def test_cli_convert_and_generate(
    tmp_path: Path, npy: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    path, array = npy
    dest = tmp_path / "cli.h5"
    assert main(["convert", str(path), str(dest), "--codec", "gzip-1", "--chunk", "3,5,24,20", "--no-progress"]) == 0
    assert "every chunk verified" in capsys.readouterr().out
    with h5py.File(dest, "r") as f:
        np.testing.assert_array_equal(f[DATA_PATH][...], array)
    assert main(["generate", "4d_diff_bin4", str(tmp_path / "g.emd"), "--scale", "0.015625", "--no-progress"]) == 0
    with h5py.File(tmp_path / "g.emd", "r") as f:
        assert f[DATA_PATH].shape == (4, 4, 64, 64) and f[DATA_PATH].dtype == np.float32
