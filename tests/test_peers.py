"""The peers users pick instead of zarr-python: the ``tensorstore`` backend and the ``zarrs`` codec pipeline.

tensorstore keeps the backend contract (tests/contracts.py); then: its chunk files are zarr-python's bytes for the
same codec, its thread-pool limits are recorded per cell, and ``zarr: {codec_pipeline: zarrs}`` runs the ``zarr``
backend through the Rust pipeline, verified, with the codecs zarrs cannot run unavailable at check time.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
from tests import contracts
from tests.contracts import BackendContract
from tests.helpers import DIFF, experiment, sparse_counts, stage_array

import cubebench
from cubebench.backends import WriteSettings, get_backend
from cubebench.codecs import CODECS
from cubebench.errors import CodecUnavailableError, ConfigError
from cubebench.experiment import parse_experiment
from cubebench.staging import source_checksums

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytest.importorskip("tensorstore")
pytest.importorskip("zarrs")

SHAPE, CHUNKS = contracts.SHAPE, contracts.CHUNKS
ZARRS = WriteSettings(codec_pipeline="zarrs")


class TestTensorstore(BackendContract):
    backend = "tensorstore"
    codec_it_cannot_run = ("lzf", "uint16", r"tensorstore's zarr3 driver has no cubebench.hdf5_chunk codec")

    def read_back_plainly(
        self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...]
    ) -> np.ndarray:
        stored = zarr.open_array(str(path), mode="r")  # plain zarr-python reads tensorstore's store
        assert stored.chunks == chunks and stored.attrs["cubebench_codec"]
        return np.asarray(stored[...])


def test_tensorstore_runs_the_zarr_codecs_it_has_and_says_why_not_the_others() -> None:
    backend = get_backend("tensorstore")
    runs = contracts.runnable("tensorstore", "uint16")
    assert {"none", "gzip-1", "zstd", "blosc-zstd", "blosc-lz4", "blosc-zstd-bitshuffle"} <= set(runs)
    with pytest.raises(CodecUnavailableError, match=r"^pcodec: tensorstore has no PCodec"):
        backend.check(CODECS["pcodec"], np.dtype("uint16"))


def inner_chunks(shard: bytes, n: int) -> list[bytes]:
    """The stored bytes of each of the ``n`` inner chunks of a shard file (index at the end, with a CRC-32C)."""
    index = np.frombuffer(shard[len(shard) - 16 * n - 4 : len(shard) - 4], dtype="<u8").reshape(n, 2)
    return [b"" if off == 2**64 - 1 else shard[int(off) : int(off + size)] for off, size in index]


@pytest.mark.parametrize("shards", [False, True])
@pytest.mark.parametrize("codec_id", ["blosc-zstd", "none"])
def test_tensorstore_stores_zarr_pythons_chunk_bytes(
    client: Client, tmp_path: Path, codec_id: str, shards: bool
) -> None:
    """Unsharded, every chunk file is byte for byte zarr-python's; sharded, every inner chunk is (tensorstore orders
    inner chunks in a shard file differently, so the files differ; the index maps each)."""
    array = sparse_counts(SHAPE)
    staged = stage_array(array, tmp_path)
    settings = WriteSettings(shards=shards)
    chunks = (2, 2, 24, 20) if shards else CHUNKS
    targets = {}
    for name in ("zarr", "tensorstore"):
        targets[name] = tmp_path / f"{name}.zarr"
        get_backend(name).write(client, staged, CODECS[codec_id], chunks, targets[name], settings)
    files = sorted(p.relative_to(targets["zarr"]) for p in targets["zarr"].rglob("c/**/*") if p.is_file())
    ts_files = sorted(
        p.relative_to(targets["tensorstore"]) for p in targets["tensorstore"].rglob("c/**/*") if p.is_file()
    )
    assert files == ts_files and files
    for rel in files:
        ours, theirs = (targets[n].joinpath(rel).read_bytes() for n in ("zarr", "tensorstore"))
        if shards:
            assert inner_chunks(ours, 4) == inner_chunks(theirs, 4), rel
        else:
            assert ours == theirs, rel


@pytest.mark.parametrize(("codec_id", "tolerance"), [("gzip-1", 0.005), ("gzip-6", 0.02)])
def test_tensorstore_gzip_is_another_deflate_build(
    client: Client, tmp_path: Path, codec_id: str, tolerance: float
) -> None:
    """gzip is not byte-identical: another header (mtime 0, OS Unix) and tensorstore's own deflate build at the
    same level. Measured on these 16 frames of the 4d_diff preset: gzip-1 0.03 %, gzip-6 1.1 %, gzip-9 0.6 %
    smaller than zarr-python's (on ``sparse_counts``, 2.4 % and 3.4 %: the difference depends on the data)."""
    from cubebench.sources import open_cube

    array = np.asarray(open_cube(DIFF).data[:4, :4])
    staged = stage_array(array, tmp_path)
    sizes = {}
    for name in ("zarr", "tensorstore"):
        target = tmp_path / f"{name}.zarr"
        get_backend(name).write(client, staged, CODECS[codec_id], (2, 2, 256, 256), target, WriteSettings())
        sizes[name] = sum(p.stat().st_size for p in target.rglob("c/**/*") if p.is_file())
    assert abs(sizes["tensorstore"] - sizes["zarr"]) <= tolerance * sizes["zarr"], sizes


def test_missing_peers_are_unavailable_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from cubebench.backends import _pipelines

    for name in ("tensorstore", "zarrs", "zarrs.pipeline"):
        monkeypatch.setitem(sys.modules, name, None)  # "import ..." now raises ImportError
    _pipelines._refusal.cache_clear()
    try:
        with pytest.raises(
            CodecUnavailableError, match=r"^none: tensorstore is not installed \(pip install 'cubebench\[peers\]'\)$"
        ):
            get_backend("tensorstore").check(CODECS["none"], np.dtype("uint16"))
        with pytest.raises(
            CodecUnavailableError, match=r"^none: zarrs is not installed \(pip install 'cubebench\[peers\]'\)$"
        ):
            get_backend("zarr").check_settings(CODECS["none"], np.dtype("uint16"), ZARRS)
        get_backend("zarr").check_settings(CODECS["none"], np.dtype("uint16"), WriteSettings())
    finally:
        _pipelines._refusal.cache_clear()


def test_tensorstore_records_its_thread_pools() -> None:
    settings = WriteSettings(codec_threads=2, io_concurrency=3)
    assert get_backend("tensorstore").recorded(settings) == {"data_copy_concurrency": 2, "file_io_concurrency": 3}
    assert get_backend("tensorstore").codec_pipeline(settings) == ""


# --- zarrs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("write_empty", [True, False])
@pytest.mark.parametrize("shards", [False, True])
@pytest.mark.parametrize("codec_id", ["blosc-zstd", "none"])
def test_zarrs_pipeline_round_trip(
    client: Client, tmp_path: Path, codec_id: str, shards: bool, write_empty: bool
) -> None:
    array = sparse_counts(SHAPE)
    array[:2, :3] = 0  # a chunk (and, sharded, a shard) equal to the fill value
    staged = stage_array(array, tmp_path)
    settings = WriteSettings(shards=shards, codec_pipeline="zarrs", write_empty_chunks=write_empty)
    chunks = (2, 2, 24, 20) if shards else CHUNKS
    backend = get_backend("zarr")
    backend.check_settings(CODECS[codec_id], array.dtype, settings)
    target = tmp_path / "z.zarr"
    backend.write(client, staged, CODECS[codec_id], chunks, target, settings)
    back = backend.read(client, target, chunks, settings)
    expected, _ = source_checksums(client, staged, backend.storage_block(chunks, settings))
    assert back.checksums == expected
    np.testing.assert_array_equal(zarr.open_array(str(target), mode="r")[...], array)  # plain zarr-python
    # zarrs 0.2 stores no chunk equal to the fill value, whatever write_empty_chunks says; the cell records it
    assert not (target / "c/0/0/0/0").exists()
    assert not backend.stores_empty_chunks(settings)


def test_zarrs_pipeline_is_what_the_workers_ran(tmp_path: Path) -> None:
    from cubebench.backends._pipelines import open_array

    zarr.create_array(store=str(tmp_path / "a.zarr"), shape=(4, 4), chunks=(2, 2), dtype="uint16")
    assert type(open_array(str(tmp_path / "a.zarr"), "r", "zarrs")._async_array.codec_pipeline).__name__ == (
        "ZarrsCodecPipeline"
    )
    assert "zarrs" not in type(open_array(str(tmp_path / "a.zarr"), "r")._async_array.codec_pipeline).__name__.lower()


@pytest.mark.parametrize(
    ("codec_id", "why"),
    [
        ("lzf", r"^lzf: the zarrs pipeline cannot run it \(codec cubebench.hdf5_chunk is not supported\)$"),
        ("bitshuffle-lz4", r"cubebench.hdf5_chunk is not supported"),
    ],
)
def test_zarrs_refuses_what_it_cannot_run_at_check_time(codec_id: str, why: str) -> None:
    backend = get_backend("zarr")
    backend.check(CODECS[codec_id], np.dtype("uint16"))  # zarr-python runs it
    with pytest.raises(CodecUnavailableError, match=why):
        backend.check_settings(CODECS[codec_id], np.dtype("uint16"), ZARRS)
    get_backend("zarr_direct").check_settings(CODECS["blosc-zstd"], np.dtype("uint16"), ZARRS)


def test_codec_pipeline_is_validated_against_the_registry() -> None:
    with pytest.raises(ConfigError, match=r"zarr.codec_pipeline: unknown pipeline 'rust'; valid: zarr-python, zarrs"):
        parse_experiment(experiment(zarr={"codec_pipeline": "rust"}))


@pytest.mark.slow  # a whole run of three backends: 15-20 s on 2 shared cores
def test_run_records_the_pipeline_and_tensorstore_threads(tmp_path: Path) -> None:
    """``cubebench run`` with both peers: cells verified, zarrs' refusal a reason, the settings per cell."""
    exp = experiment(
        datasets=[DIFF],
        backends=["zarr", "zarr_direct", "tensorstore"],
        codecs=["blosc-lz4", "lzf"],
        zarr={"codec_pipeline": "zarrs"},
        access_patterns=["frame", "region", "virtual_detector"],
    )
    ds = cubebench.run(exp, out=tmp_path / "res", progress=False)
    ok = ds.sel(codec="blosc-lz4")
    assert (ok["status"] == "ok").all() and ok["verified"].all()  # access patterns verified too
    assert (ok["read_virtual_detector_seconds"] > 0).all()
    assert ok["codec_pipeline"].sel(backend="zarr").item() == "zarrs"
    assert ok["codec_pipeline"].sel(backend="zarr_direct").item() == ""
    assert not ok["write_empty_chunks"].sel(backend="zarr").item()  # zarrs stores no empty chunk (see above)
    assert ok["write_empty_chunks"].sel(backend="tensorstore").item()
    assert ok["data_copy_concurrency"].sel(backend="tensorstore").item() == 1
    assert ok["file_io_concurrency"].sel(backend="tensorstore").item() == 2
    assert np.isnan(ok["data_copy_concurrency"].sel(backend="zarr").item())
    lzf = ds.sel(codec="lzf")
    assert lzf["status"].sel(backend="zarr").item() == "unavailable"
    assert "zarrs pipeline cannot run it" in lzf["reason"].sel(backend="zarr").item()
    assert lzf["status"].sel(backend="zarr_direct").item() == "ok"
    assert "codec_pipeline" in ds.attrs["experiment"] or "zarrs" in str(ds.attrs)


def test_zarrs_and_tensorstore_on_s3_are_unavailable_with_the_reason() -> None:
    """The zarr S3 path goes through zarr-python and obstore: a zarrs cell there would not be what it says;
    tensorstore runs on S3 through its own driver, but not under the link model (its waits cannot be applied)."""
    from cubebench.backends import get_backend
    from cubebench.codecs import get_codec
    from cubebench.experiment import parse_experiment
    from cubebench.runner.cells import not_run
    from cubebench.storage import parse_storage

    s3 = parse_storage({"kind": "s3", "server": "local"})
    raw = {"datasets": ["4d_diff"], "backends": ["zarr", "tensorstore"], "zarr": {"codec_pipeline": "zarrs"}}
    exp = parse_experiment(raw)
    codec = get_codec("blosc-zstd")
    zarrs = not_run(exp, get_backend("zarr"), codec, "uint16", "balanced", 1.0, s3)
    assert zarrs is not None and zarrs[0] == "unavailable" and "zarrs pipeline runs on local stores" in zarrs[1]
    assert not_run(exp, get_backend("tensorstore"), codec, "uint16", "balanced", 1.0, s3) is None
    slow = parse_storage({"kind": "s3", "server": "local", "latency_ms": 20})
    tensorstore = not_run(exp, get_backend("tensorstore"), codec, "uint16", "balanced", 1.0, slow)
    assert tensorstore is not None and tensorstore[0] == "unavailable" and "link model" in tensorstore[1]
    assert not_run(exp, get_backend("zarr"), codec, "uint16", "balanced", 1.0, parse_storage("local")) is None
