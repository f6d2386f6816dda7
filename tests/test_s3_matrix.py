"""Storage as a dimension of the matrix, and the backends on a REAL S3 server (SeaweedFS on loopback, no mocks).

The server starts once for this module; each test writes under its own prefix. Without the server binary the S3
tests skip, unless ``CUBEBENCH_REQUIRE_S3=1`` (CI), where they fail instead. Cubes are tiny (4 x 4 scans of
32 x 32 frames).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.helpers import DIFF, experiment, sparse_counts, stage_array

from cubebench.backends import BACKENDS, S3_FACES, S3Target, WriteSettings, get_backend
from cubebench.codecs import get_codec
from cubebench.cube import block_grid, checksum
from cubebench.errors import BackendError, ConfigError, DatasetError, ResultsError, StorageError
from cubebench.experiment import parse_experiment
from cubebench.patterns import PATTERNS
from cubebench.results import CellResult, load_results, records_to_dataset
from cubebench.runner.cells import plan_cells
from cubebench.staging import source_pattern
from cubebench.storage import (
    LocalStorage,
    PacedStore,
    RangedFile,
    S3Storage,
    get_object,
    list_keys,
    local_s3_server,
    parse_storage,
    put,
    take,
    zarr_store,
)
from cubebench.storage.client import obstore_unavailable
from cubebench.storage.server import DEFAULT_SERVER, server_unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from distributed import Client

    from cubebench.storage import S3Endpoint

SHAPE = (4, 4, 32, 32)
CHUNKS = (2, 2, 16, 16)
#: (backend, sharded): every backend with an S3 face, Zarr sharded and not.
S3_CASES = [("hdf5", False), ("hdf5_direct", False), ("zarr", False), ("zarr", True), ("zarr_direct", False)]
S3_CASES += [("zarr_direct", True)]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One real server for this module."""
    why = server_unavailable(DEFAULT_SERVER) or obstore_unavailable()
    if why:
        if os.environ.get("CUBEBENCH_REQUIRE_S3") == "1":
            pytest.fail(f"CUBEBENCH_REQUIRE_S3=1 but {why}")
        pytest.skip(why)
    with local_s3_server(tmp_path_factory.mktemp("s3matrix")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Any]:
    array = sparse_counts(SHAPE)
    return array, stage_array(array, tmp_path_factory.mktemp("staged"))


# -- the experiment and the results ---------------------------------------------------------------------------------


def test_storage_is_a_dimension_of_the_plan() -> None:
    exp = parse_experiment(experiment(storage=["local", {"kind": "s3", "server": "local", "latency_ms": 20}]))
    assert [s.label for s in exp.storage] == ["local", "s3-20ms"]
    assert parse_experiment(experiment()).storage == (LocalStorage(),)
    cells = plan_cells(exp, ["diff"])
    assert {c.storage for c in cells} == {"local", "s3-20ms"} and len(cells) == 2 * len(plan_cells(
        parse_experiment(experiment()), ["diff"]))  # fmt: skip
    local = next(c for c in cells if c.storage == "local")
    assert "local" not in local.label  # local cells keep their labels (and scratch names)
    again = parse_experiment(exp.to_dict())
    assert again.storage == exp.storage


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (["local", "local"], "two entries labelled 'local'"),
        ([{"kind": "s3", "server": "local", "latency_ms": -1}], "latency_ms"),
        ([{"kind": "s3", "server": "local", "bandwidth_MBps": 0}], "bandwidth_MBps"),
        ([{"kind": "s3", "bucket": "Bad_Bucket"}], "not a valid S3 bucket"),
        ("nowhere", "unknown storage 'nowhere'"),
    ],
)
def test_bad_storage_entries_are_one_line(entry: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_experiment(experiment(storage=entry))
    assert "\n" not in str(info.value)


def test_backends_say_whether_they_run_on_s3() -> None:
    s3 = S3Storage(server="local")
    for name in BACKENDS:
        backend = get_backend(name)
        backend.check_storage(LocalStorage())
        if name in S3_FACES:
            backend.check_storage(s3)
        else:
            with pytest.raises(BackendError, match=f"{name} on s3: .*S3"):
                backend.check_storage(s3)


def _cell(storage: str, run: int = 0, **kw: Any) -> CellResult:
    values: dict[str, Any] = {"source_bytes": 100, "stored_bytes": 50, "write_seconds": 1.0, "read_seconds": 1.0}
    return CellResult("d", "zarr", "blosc-lz4", "balanced", run, status="ok", verified=True, storage=storage,
                      **{**values, **kw})  # fmt: skip


def test_results_have_a_storage_dimension_and_old_ones_load(tmp_path: Path) -> None:
    ds = records_to_dataset([_cell("local"), _cell("s3", requests=12.0, objects=3)])
    assert ds.sizes["storage"] == 2 and ds.attrs["schema_version"] == 2
    assert float(ds["requests"].sel(storage="s3", run=0).squeeze()) == 12.0
    assert np.isnan(float(ds["requests"].sel(storage="local", run=0).squeeze()))
    old = records_to_dataset([_cell("local")]).isel(storage=0, drop=True)
    old.attrs["schema_version"] = 1
    old.to_netcdf(tmp_path / "results.nc", engine="h5netcdf")  # as schema 1 wrote it: no storage dimension
    loaded = load_results(tmp_path / "results.nc")
    assert list(loaded["storage"].values) == ["local"] and loaded["ratio"].dims[-2:] == ("storage", "run")


def test_recommend_needs_a_storage_when_there_are_several() -> None:
    from cubebench.recommend import recommend

    ds = records_to_dataset([_cell("local"), _cell("s3", write_seconds=2.0)])
    with pytest.raises(ResultsError, match="choose one with --storage"):
        recommend(ds, "write")
    assert recommend(ds, "write", storage="s3").write_GiBps == pytest.approx(100 / 2**30 / 2)
    with pytest.raises(ResultsError, match="no storage gcs"):
        recommend(ds, "write", storage="gcs")


# -- the link model -------------------------------------------------------------------------------------------------


def test_latency_delays_every_request_client_side(s3: S3Endpoint) -> None:
    slow = s3.storage("latency", spec=parse_storage({"kind": "s3", "server": "local", "latency_ms": 150}))
    fast = s3.storage("latency")
    assert slow.label == "s3-150ms" and fast.label == "s3"
    put(fast, "k", b"x" * 1000)  # the server's first write allocates a volume: not part of the comparison

    def pair(spec: S3Storage) -> float:
        start = time.perf_counter()
        put(spec, "k", b"x" * 1000)
        assert get_object(spec, "k") == b"x" * 1000
        return time.perf_counter() - start

    assert pair(slow) - pair(fast) >= 0.25  # two requests, 150 ms each, whatever the server took
    assert isinstance(zarr_store(slow, "a.zarr"), PacedStore)


# -- every backend on S3 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "sharded"), S3_CASES)
def test_backend_round_trip_on_s3(
    s3: S3Endpoint, client: Client, cube: tuple[np.ndarray, Any], tmp_path: Path, name: str, sharded: bool
) -> None:
    array, staged = cube
    outside = s3.storage("outside")
    put(outside, "keep/me", b"precious")  # an object beside the run's prefix: never touched
    cell = s3.storage(f"runs/{name}-{sharded}")
    tally = f"test-{name}-{sharded}"
    key = "store.h5" if name.startswith("hdf5") else "store.zarr"
    target = S3Target(cell, key, tmp_path / "local.h5", tally)
    settings = WriteSettings(True, sharded)
    face = S3_FACES[name]
    extra = face.write(client, staged, get_codec("blosc-zstd"), CHUNKS, target, settings)
    back = face.read(client, target, CHUNKS, settings)
    assert back.checksums == {i: checksum(array[b]) for i, b in block_grid(SHAPE, CHUNKS)}
    for name_ in PATTERNS:  # partial reads: only the chunks (or inner chunks of shards) they overlap
        pattern = face.read_pattern(client, target, name_, CHUNKS, settings)
        assert pattern.checksum == source_pattern(client, staged, name_).checksum, name_
    counts = [take(tally), *client.run(take, tally).values()]
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    keys = list_keys(cell)
    assert total["puts"] >= 1 and total["gets"] >= 1 and total["bytes_in"] > 0 and total["bytes_out"] > 0
    if name.startswith("hdf5"):
        assert keys == [key] and set(extra) == {"local_write_seconds", "upload_seconds"}
        assert not target.local.exists()  # the local copy went after the upload
        _check_with_plain_h5py(cell, key, array)
    else:
        assert len(keys) == 1 + len(block_grid(SHAPE, CHUNKS))  # zarr.json + one object per chunk (or shard)
        _check_with_plain_zarr(cell, key, array)
    assert get_object(outside, "keep/me") == b"precious"


def _plain_store(cell: S3Storage, key: str) -> Any:
    """An obstore S3 store at ``key`` under the cell's prefix, built from the endpoint alone."""
    from obstore.store import S3Store

    return S3Store(
        cell.bucket,
        prefix=f"{cell.prefix}/{key}".rstrip("/"),
        config={"endpoint": cell.endpoint, "access_key_id": cell.access_key_id,
                "secret_access_key": cell.secret_access_key, "region": cell.region,
                "virtual_hosted_style_request": False},
        client_options={"allow_http": True},
    )  # fmt: skip


def _check_with_plain_zarr(cell: S3Storage, key: str, array: np.ndarray) -> None:
    import zarr
    from zarr.storage import ObjectStore

    store = ObjectStore(_plain_store(cell, key), read_only=True)
    np.testing.assert_array_equal(zarr.open_array(store=store, mode="r")[...], array)


def _check_with_plain_h5py(cell: S3Storage, key: str, array: np.ndarray) -> None:
    """h5py over obstore's own buffered file reader: an S3 reader cubebench did not write."""
    import h5py
    import hdf5plugin  # noqa: F401
    import obstore

    class Reader:  # obstore's reader returns its own Bytes; h5py's file driver wants bytes
        def __init__(self) -> None:
            self.inner = obstore.open_reader(_plain_store(cell, ""), key)
            self.seek, self.tell = self.inner.seek, self.inner.tell

        def read(self, size: int = -1) -> bytes:
            return bytes(self.inner.read(size))

    with h5py.File(Reader(), "r") as f:
        np.testing.assert_array_equal(f["version_1/data/datacubes/datacube_000/data"][...], array)


# -- the runner -----------------------------------------------------------------------------------------------------


def test_unreachable_endpoint_is_one_line_naming_it(tmp_path: Path) -> None:
    from cubebench.runner import run

    entry = {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "cubes"}
    start = time.perf_counter()
    with pytest.raises(StorageError, match=r"http://127\.0\.0\.1:9 .*unreachable") as info:
        run(experiment(storage=[entry], backends=["zarr"], codecs=["none"]), tmp_path / "out", progress=False)
    assert "\n" not in str(info.value) and time.perf_counter() - start < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_run_on_local_and_s3_storage(s3: S3Endpoint, tmp_path: Path) -> None:
    from cubebench.runner import run

    exp = experiment(
        backends=["hdf5", "hdf5_direct", "zarr", "zarr_direct", "npy_gzip"],
        codecs=["blosc-lz4"],
        storage=["local", {"kind": "s3", "server": "local"}],
        access_patterns=["frame"],
        datasets=[{**DIFF, "scale": 0.015625}],
    )
    ds = run(exp, tmp_path / "res", progress=False)
    status = ds["status"].sel(codec="blosc-lz4", run=0).squeeze()
    assert (status.sel(backend=["hdf5", "hdf5_direct", "zarr", "zarr_direct"]) == "ok").all()
    assert str(status.sel(backend="npy_gzip", storage="local").values) in ("ok", "unavailable")
    assert str(status.sel(backend="npy_gzip", storage="s3").values) == "unavailable"
    s3_cells = ds.sel(storage="s3", backend=["hdf5", "zarr_direct"]).squeeze()
    assert (s3_cells["requests"] > 0).all() and (s3_cells["objects"] > 0).all()
    assert (ds["objects"].sel(storage="local", backend="zarr").squeeze() > 1).all()
    assert bool(ds["verified"].sel(storage="s3", backend="zarr").squeeze())
    assert "upload_seconds" in ds and "read_frame_requests" in ds
    assert load_results(tmp_path / "res").sizes["storage"] == 2


def test_storages_side_by_side_in_the_summary_and_the_report_table() -> None:
    from cubebench.cli import summary_table
    from cubebench.report.storage import storage_table

    ds = records_to_dataset([_cell("local", objects=2), _cell("s3", requests=40.0, objects=2)])
    text = summary_table(ds)
    assert "storage" in text.splitlines()[0] and len(text.splitlines()) == 3
    frame = storage_table(ds).frame
    assert list(frame["storage"]) == ["local", "s3"]
    assert np.isnan(frame["requests / cell"][0]) and frame["requests / cell"][1] == 40


# -- sources on S3 --------------------------------------------------------------------------------------------------


def test_sources_open_from_s3_urls(s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import h5py
    import zarr

    from cubebench.sources import open_cube, source_kind
    from cubebench.storage import multipart_upload

    array = sparse_counts(SHAPE, seed=3)
    where = s3.storage("sources")
    z = zarr.create_array(store=zarr_store(where, "scan.zarr"), shape=SHAPE, chunks=CHUNKS, dtype=array.dtype)
    z[...] = array
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f.create_dataset("entry/data", data=array, chunks=CHUNKS)
    multipart_upload(where, "scan.h5", tmp_path / "scan.h5")
    put(where, "plain", b"neither")
    for name, value in (
        ("AWS_ENDPOINT_URL", s3.url),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key),
        ("AWS_REGION", s3.region),
    ):
        monkeypatch.setenv(name, value)
    base = f"s3://{s3.bucket}/{where.prefix}"
    for key in ("scan.zarr", "scan.h5"):
        cube = open_cube({"path": f"{base}/{key}"})
        assert cube.info.shape == SHAPE and cube.info.name == "scan"
        np.testing.assert_array_equal(cube.data.compute(scheduler="threads"), array)
    assert source_kind(f"{base}/scan.zarr") == "zarr" and source_kind(f"{base}/scan.h5") == "hdf5"
    with pytest.raises(DatasetError, match="no HDF5 object and no Zarr store"):
        open_cube({"path": f"{base}/plain"})
    with pytest.raises(ConfigError, match="not an s3://bucket/key URL"):
        open_cube({"path": "s3://bucket-only"})


@pytest.mark.slow
def test_a_run_on_an_endpoint_removes_only_what_it_wrote(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cubebench.runner import run

    for name, value in (("AWS_ACCESS_KEY_ID", s3.access_key_id), ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)):
        monkeypatch.setenv(name, value)  # an endpoint cubebench did not start: credentials from the environment
    shared = s3.storage("shared")
    put(shared, "runs/keep.bin", b"someone else's")
    entry = {"kind": "s3", "endpoint": s3.url, "bucket": s3.bucket, "prefix": "shared/runs", "latency_ms": 5}
    exp = experiment(backends=["hdf5_direct", "zarr_direct"], codecs=["blosc-lz4"], storage=[entry])
    ds = run(exp, tmp_path / "res", progress=False)
    assert list(ds["storage"].values) == ["s3-5ms"]
    assert (ds["status"] == "ok").all() and (ds["latency_ms"] == 5).all()
    assert list_keys(shared) == ["runs/keep.bin"]  # the run's own prefix is gone, the rest untouched


def test_plan_lists_each_storage_and_what_cannot_run_there() -> None:
    from cubebench.runner import plan
    from cubebench.runner.planning import format_plan

    exp = experiment(backends=["zarr", "csr"], codecs=["none"], storage=["local", {"kind": "s3", "server": "local"}])
    planned = plan(exp)
    by = {(c.backend, c.storage): c for c in planned.cells}
    assert by[("zarr", "s3")].status == "run" and by[("csr", "local")].status == "run"
    assert by[("csr", "s3")].status == "unavailable" and "csr on s3" in by[("csr", "s3")].reason
    assert "zarr on s3" in format_plan(planned)


def test_convert_writes_verified_stores_to_s3(s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cubebench.cluster import open_client
    from cubebench.experiment import ClusterSpec

    for name, value in (
        ("AWS_ENDPOINT_URL", s3.url),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key),
    ):
        monkeypatch.setenv(name, value)
    array = sparse_counts(SHAPE, seed=5)
    np.save(tmp_path / "scan.npy", array)
    base = f"s3://{s3.bucket}/converted"
    with open_client(ClusterSpec(workers=1)) as client:  # workers started after the environment is set
        _convert_both(base, tmp_path, array, client)


def _convert_both(base: str, tmp_path: Path, array: np.ndarray, client: Client) -> None:
    from cubebench.convert import convert
    from cubebench.sources import open_cube

    for key in ("scan.zarr", "scan.h5"):
        url = f"{base}/{key}"
        assert convert(str(tmp_path / "scan.npy"), url, chunk="2,2,16,16", cluster=client, progress=False) == url
        np.testing.assert_array_equal(open_cube(url).data.compute(scheduler="threads"), array)
        with pytest.raises(ConfigError, match="already exists"):
            convert(str(tmp_path / "scan.npy"), url, cluster=client, progress=False)
    with pytest.raises(ConfigError, match="DEST must end with"):
        convert(str(tmp_path / "scan.npy"), f"{base}/scan.txt", cluster=client, progress=False)


def test_wrong_credentials_and_a_missing_bucket_are_one_line_with_the_servers_error(s3: S3Endpoint) -> None:
    from dataclasses import replace

    from cubebench.storage import check_reachable

    good = s3.storage("checks")
    check_reachable(good)
    with pytest.raises(StorageError, match=f"{s3.url} .*refused the request: SignatureDoesNotMatch") as info:
        check_reachable(replace(good, secret_access_key="not-the-secret"))
    assert "\n" not in str(info.value)
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket'.*no such bucket; create it first"):
        check_reachable(replace(good, bucket="no-such-bucket"))


def test_hdf5_direct_reads_adjacent_chunks_in_one_ranged_get(
    s3: S3Endpoint, client: Client, cube: tuple[np.ndarray, Any], tmp_path: Path
) -> None:
    array, staged = cube
    cell = s3.storage("runs/coalesced")
    target = S3Target(cell, "store.h5", tmp_path / "local.h5", "test-coalesced")
    face = S3_FACES["hdf5_direct"]
    settings = WriteSettings(True, False)
    face.write(client, staged, get_codec("blosc-zstd"), CHUNKS, target, settings)
    [take(target.tally), *client.run(take, target.tally).values()]  # forget the write's requests
    back = face.read(client, target, CHUNKS, settings)
    assert back.checksums == {i: checksum(array[b]) for i, b in block_grid(SHAPE, CHUNKS)}
    counts = [take(target.tally), *client.run(take, target.tally).values()]
    gets = sum(c["gets"] for c in counts)
    # 16 chunks written back to back by one writer: a few GETs for the metadata and one per task's run of chunks
    assert gets < len(block_grid(SHAPE, CHUNKS)), gets


# -- paged (cloud-optimised) HDF5 -----------------------------------------------------------------------------------

PAGE = 256 * 2**10


def test_hdf5_page_size_is_a_validated_recorded_setting() -> None:
    from cubebench.runner.cells import write_settings

    exp = parse_experiment(experiment(hdf5={"page_size": "4MiB"}))
    assert exp.hdf5.page_size == 4 * 2**20 and parse_experiment(exp.to_dict()).hdf5 == exp.hdf5
    settings = write_settings(exp)
    assert [get_backend(b).page_size(settings) for b in ("hdf5", "hdf5_direct", "hdf5_vds", "zarr")] == [
        4 * 2**20, 4 * 2**20, 0, 0]  # fmt: skip
    assert write_settings(parse_experiment(experiment())).hdf5_page_size == 0
    for entry, match in (
        ({"page_size": "big"}, "hdf5.page_size must be a size like '4MiB'"),
        ({"page_size": 100}, "hdf5.page_size must be 0 .* between 512 bytes and 1GiB, got 100"),
        ({"page_size": True}, "hdf5.page_size must be a size"),
        ({"pages": 1}, "pages"),
        ("4MiB", "hdf5 must be a mapping"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            parse_experiment(experiment(hdf5=entry))
        assert "\n" not in str(info.value)
    ds = records_to_dataset([_cell("s3", hdf5_page_size=PAGE), _cell("local")])
    assert ds["hdf5_page_size"].attrs["units"] == "bytes"
    assert int(ds["hdf5_page_size"].sel(storage="s3", run=0).squeeze()) == PAGE


@pytest.mark.parametrize("name", ["hdf5", "hdf5_direct"])
def test_paged_hdf5_on_local_disk_is_plain_hdf5(
    client: Client, cube: tuple[np.ndarray, Any], tmp_path: Path, name: str
) -> None:
    import h5py
    import hdf5plugin  # noqa: F401

    from cubebench.backends.hdf5_paging import page_size_of

    array, staged = cube
    backend, target, settings = get_backend(name), tmp_path / "paged.h5", WriteSettings(hdf5_page_size=PAGE)
    backend.write(client, staged, get_codec("blosc-zstd"), CHUNKS, target, settings)
    assert backend.read(client, target, CHUNKS, settings).checksums == {
        i: checksum(array[b]) for i, b in block_grid(SHAPE, CHUNKS)}  # fmt: skip
    with h5py.File(target, "r") as f:  # plain h5py, no page buffer
        assert f.id.get_create_plist().get_file_space_strategy()[0] == h5py.h5f.FSPACE_STRATEGY_PAGE
        assert page_size_of(f) == PAGE
        np.testing.assert_array_equal(f["version_1/data/datacubes/datacube_000/data"][...], array)


@pytest.mark.parametrize("name", ["hdf5", "hdf5_direct"])
def test_paged_hdf5_on_s3_reads_a_frame_in_no_more_requests(
    s3: S3Endpoint, client: Client, tmp_path: Path, name: str
) -> None:
    import h5py

    from cubebench.backends.hdf5_paging import page_size_of

    shape, chunks = (16, 16, 64, 64), (1, 1, 64, 64)  # 256 chunks: unpaged, the index spreads over the file
    array = sparse_counts(shape, seed=7)
    staged = stage_array(array, tmp_path)
    face, frame_requests = S3_FACES[name], {}
    for page_size in (0, PAGE):
        cell, tally = s3.storage(f"paged/{name}-{page_size}"), f"paged-{name}-{page_size}"
        target = S3Target(cell, "store.h5", tmp_path / "local.h5", tally)
        settings = WriteSettings(hdf5_page_size=page_size)
        face.write(client, staged, get_codec("none"), chunks, target, settings)
        back = face.read(client, target, chunks, settings)
        assert back.checksums == {i: checksum(array[b]) for i, b in block_grid(shape, chunks)}
        for _ in (take(tally), client.run(take, tally)):  # the write's and the full read's requests
            pass
        frame = face.read_pattern(client, target, "frame", chunks, settings)
        assert frame.checksum == source_pattern(client, staged, "frame").checksum
        counts = [take(tally), *client.run(take, tally).values()]
        frame_requests[page_size] = sum(c["gets"] + c["heads"] for c in counts)
        with h5py.File(RangedFile(cell, "store.h5"), "r") as f:
            assert page_size_of(f) == page_size
        _check_with_plain_h5py(cell, "store.h5", array)
    assert 1 <= frame_requests[PAGE] <= frame_requests[0], frame_requests


# -- tensorstore on S3 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sharded", [False, True])
def test_tensorstore_round_trip_on_s3_through_its_own_driver(
    s3: S3Endpoint, client: Client, cube: tuple[np.ndarray, Any], tmp_path: Path, sharded: bool
) -> None:
    pytest.importorskip("tensorstore")
    array, staged = cube
    cell = s3.storage(f"runs/tensorstore-{sharded}")
    target = S3Target(cell, "store.zarr", tmp_path / "local.zarr", f"test-tensorstore-{sharded}")
    settings, face = WriteSettings(True, sharded), S3_FACES["tensorstore"]
    face.write(client, staged, get_codec("blosc-zstd"), CHUNKS, target, settings)
    back = face.read(client, target, CHUNKS, settings)
    assert back.checksums == {i: checksum(array[b]) for i, b in block_grid(SHAPE, CHUNKS)}
    for name_ in PATTERNS:
        pattern = face.read_pattern(client, target, name_, CHUNKS, settings)
        assert pattern.checksum == source_pattern(client, staged, name_).checksum, name_
    assert face.stored_shape(target) == SHAPE
    assert len(list_keys(cell)) == 1 + len(block_grid(SHAPE, CHUNKS))  # zarr.json + one object per chunk (or shard)
    _check_with_plain_zarr(cell, "store.zarr", array)
    assert list(tmp_path.iterdir()) == []  # the credentials files went with the write and the read
    assert "cannot count" in face.uncounted


def test_tensorstore_refuses_the_link_model_and_its_cells_record_no_request_counts() -> None:
    from cubebench.runner.remote import count_fields
    from cubebench.storage import RequestCounts

    backend = get_backend("tensorstore")
    backend.check_storage(S3Storage(server="local"))
    with pytest.raises(BackendError, match=r"tensorstore on s3-20ms: the link model .* cannot be applied inside"):
        backend.check_storage(S3Storage(server="local", latency_ms=20))
    with pytest.raises(BackendError, match=r"hdf5_vds on s3: .*no HDF5 S3 driver"):
        get_backend("hdf5_vds").check_storage(S3Storage(server="local"))
    counts = RequestCounts(gets=3, puts=2, objects_written=5, bytes_out=10)
    fields = count_fields(counts, counts, counts, S3Storage(server="local"), counted=False)
    assert np.isnan(fields["requests"]) and np.isnan(fields["get_requests"]) and np.isnan(fields["bytes_read"])
    assert fields["objects"] == 5 and fields["bytes_written"] == 10


@pytest.mark.slow
def test_run_tensorstore_on_s3_records_requests_as_not_counted(s3: S3Endpoint, tmp_path: Path) -> None:
    from cubebench.runner import run

    pytest.importorskip("tensorstore")
    slow = {"kind": "s3", "server": "local", "latency_ms": 20}
    exp = experiment(backends=["tensorstore"], codecs=["blosc-lz4"], storage=["s3", slow], access_patterns=["frame"])
    ds = run(exp, tmp_path / "res", progress=False).sel(backend="tensorstore", codec="blosc-lz4", run=0).squeeze()
    assert str(ds["status"].sel(storage="s3").values) == "ok" and bool(ds["verified"].sel(storage="s3"))
    assert np.isnan(float(ds["requests"].sel(storage="s3"))) and np.isnan(float(ds["read_frame_requests"].sel(
        storage="s3")))  # fmt: skip
    assert int(ds["objects"].sel(storage="s3")) > 1
    assert str(ds["status"].sel(storage="s3-20ms").values) == "unavailable"
    assert "link model" in str(ds["reason"].sel(storage="s3-20ms").values)
