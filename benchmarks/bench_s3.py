"""HDF5 against Zarr on S3 object storage: the issue-21 benchmark, on a real S3 server started on loopback.

    python benchmarks/bench_s3.py [--scale 0.125] [--runs 3] [--latencies 0 20] [--codecs blosc-zstd blosc-lz4]
                                  [--chunks balanced single_frame] [--backends hdf5 hdf5_direct zarr zarr_direct]
                                  [--hdf5-page-size 4MiB]

1. The ceiling: the server's own PUT and GET throughput with cubebench's client (obstore), no codec: 4 MiB objects
   PUT and GET four at a time, and 1 MiB ranged GETs of one 128 MiB object four at a time.
2. The matrix through ``cubebench.run`` (every chunk verified): each backend x codec x chunking on S3, at each
   client-side latency (the link model, ``latency_ms``), Zarr also sharded and HDF5 also paged (cloud-optimised,
   ``hdf5: {page_size: ...}``); single-frame reads (``frame`` access pattern) for the request counts of a partial
   read. Medians over ``--runs`` runs.

Prints markdown tables (for docs/storage.md) and the command that made them. ``--scale`` scales each scan axis of the
8 GiB ``4d_diff`` preset (256 x 256 frames of 128 KiB): 0.125 is a 32 x 32 scan (128 MiB), 0.03125 an 8 x 8 scan
(8 MiB); ``--scale 0.004`` checks that it runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIB = 2**20


def ceiling(scratch: Path, objects: int = 16, large_mib: int = 128, reps: int = 3) -> dict[str, float]:
    """The server's PUT / GET / ranged-GET throughput (GiB/s, median of ``reps``) with four requests in flight."""
    from cubebench.storage import get_object, get_range, local_s3_server, put

    data = np.random.default_rng(0).integers(0, 255, 4 * MIB, dtype=np.uint8).tobytes()
    large = np.random.default_rng(1).integers(0, 255, large_mib * MIB, dtype=np.uint8).tobytes()
    out: dict[str, list[float]] = {"PUT 4 MiB": [], "GET 4 MiB": [], "ranged GET 1 MiB": []}
    with local_s3_server(scratch / "ceiling") as server, ThreadPoolExecutor(4) as pool:
        spec = server.storage("ceiling")
        put(spec, "warm", data)  # the first write allocates a volume
        put(spec, "large", large)
        for rep in range(reps):
            start = time.perf_counter()
            keys = [f"o{rep}/{i}" for i in range(objects)]
            list(pool.map(lambda key: put(spec, key, data), keys))
            out["PUT 4 MiB"].append(objects * 4 * MIB / (time.perf_counter() - start) / 2**30)
            start = time.perf_counter()
            list(pool.map(lambda key: get_object(spec, key), keys))
            out["GET 4 MiB"].append(objects * 4 * MIB / (time.perf_counter() - start) / 2**30)
            start = time.perf_counter()
            list(pool.map(lambda i: get_range(spec, "large", i * MIB, MIB), range(large_mib)))
            out["ranged GET 1 MiB"].append(large_mib * MIB / (time.perf_counter() - start) / 2**30)
    return {k: statistics.median(v) for k, v in out.items()}


def sample_chunks(data: Any, shape: tuple[int, ...], nbytes: int) -> list[np.ndarray]:
    """About ``nbytes`` of whole chunks of ``shape`` from the start of the scan: one slab of the lazy cube is
    computed (only the source blocks it needs), then cut into chunks."""
    import itertools

    per_chunk = int(np.prod(shape)) * data.dtype.itemsize
    want = max(1, nbytes // per_chunk)
    grid = [-(-n // c) for n, c in zip(data.shape, shape, strict=True)]
    tiles = grid[2] * grid[3]  # chunks per scan block (detector tiles)
    cols = min(grid[1], max(1, -(-want // tiles)))
    rows = min(grid[0], max(1, -(-want // (tiles * cols))))
    slab = np.asarray(data[: rows * shape[0], : cols * shape[1]].compute())
    out = []
    for index in itertools.product(range(rows), range(cols), range(grid[2]), range(grid[3])):
        block = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, shape, strict=True))
        piece = slab[block]
        if piece.shape == tuple(shape):
            out.append(np.ascontiguousarray(piece))
    return out[:want] or [np.ascontiguousarray(slab[tuple(slice(0, c) for c in shape)])]


@dataclass(frozen=True)
class Sample:
    """One codec x chunking of the benchmark's cube: a sample of its chunks, raw and encoded, and how many the cube
    holds."""

    raw: list[np.ndarray]
    encoded: list[Any]
    count: int
    dtype: str


def encoded_samples(args: argparse.Namespace, sample_mib: int = 48) -> dict[tuple[str, str], Sample]:
    """Whole chunks from the start of the scan (up to ``sample_mib`` MiB per chunking), cut once and encoded by
    each codec's HDF5 encoder (the same bytes every path stores)."""
    from cubebench.backends.base import encoder_for
    from cubebench.chunking import Chunking
    from cubebench.codecs import set_codec_threads
    from cubebench.cube import block_grid
    from cubebench.sources import open_cube

    set_codec_threads(1)
    cube = open_cube({"preset": "4d_diff", "scale": args.scale, "name": "diff"})
    dtype = cube.data.dtype.str
    out: dict[tuple[str, str], Sample] = {}
    for chunk in args.chunks:
        shape = Chunking.resolve(chunk, cube.data.shape).shape
        raws = sample_chunks(cube.data, shape, sample_mib * MIB)
        count = len(block_grid(cube.data.shape, shape))
        for codec in args.codecs:
            encoder = encoder_for(codec, dtype)
            out[codec, chunk] = Sample(raws, [encoder.encode(r) for r in raws], count, dtype)
    return out


def decode_rates(samples: dict[tuple[str, str], Sample]) -> dict[tuple[str, str], float]:
    """One core's decode speed (GiB/s of raw data) per codec x chunking: the sample decoded into one buffer,
    single-threaded, best of three passes."""
    from cubebench.backends.base import encoder_for

    out: dict[tuple[str, str], float] = {}
    for (codec, chunk), sample in samples.items():
        encoder = encoder_for(codec, sample.dtype)
        buffer = np.empty_like(sample.raw[0])
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for data in sample.encoded:
                encoder.decode(data, buffer)
            best = min(best, time.perf_counter() - start)
        out[codec, chunk] = sum(r.nbytes for r in sample.raw) / best / 2**30
    return out


def _warm(_: int) -> None:
    """Import what a bare reader needs, so that process start-up is not timed."""
    import xxhash  # noqa: F401

    from cubebench.backends.base import encoder_for  # noqa: F401
    from cubebench.storage import get_object  # noqa: F401


def _bare_reader(spec: Any, keys: list[str], codec: str, dtype: str, shape: tuple[int, ...]) -> int:
    """GET ``keys`` (4 in flight), decode each into one buffer and hash it: the read with no framework."""
    import xxhash

    from cubebench.backends.base import encoder_for
    from cubebench.codecs import set_codec_threads
    from cubebench.storage import get_object

    set_codec_threads(1)
    encoder = encoder_for(codec, dtype)
    out = np.empty(shape, dtype)
    with ThreadPoolExecutor(4) as pool:
        for data in pool.map(lambda key: get_object(spec, key), keys):
            encoder.decode(data, out)
            xxhash.xxh3_64_intdigest(out)
    return len(keys)


def bare_reads(samples: dict[tuple[str, str], Sample], scratch: Path, reps: int = 3) -> dict[Any, float]:
    """This machine's own limit for a full read from S3: the cube's chunks (the sample repeated to the cube's
    count) as objects on a fresh local server, read by two plain processes (half the objects each, 4 GETs in
    flight, decode + XXH3 as cubebench verifies), no Dask, no framework. GiB/s of raw data, median of ``reps``."""
    from cubebench.storage import local_s3_server, put

    out: dict[Any, float] = {}
    context = multiprocessing.get_context("spawn")
    with local_s3_server(scratch / "bare") as server, ProcessPoolExecutor(2, mp_context=context) as procs:
        spec = server.storage("bare")
        list(procs.map(_warm, range(2)))
        for (codec, chunk), sample in samples.items():
            keys = [f"{codec}/{chunk}/{i}" for i in range(sample.count)]
            bodies = (sample.encoded[i % len(sample.encoded)] for i in range(sample.count))
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda key, body: put(spec, key, body), keys, bodies))
            rates = []
            for _ in range(reps):
                start = time.perf_counter()
                list(procs.map(_bare_reader, [spec] * 2, [keys[0::2], keys[1::2]], [codec] * 2,
                               [sample.dtype] * 2, [sample.raw[0].shape] * 2))  # fmt: skip
                rates.append(sample.count * sample.raw[0].nbytes / (time.perf_counter() - start) / 2**30)
            out[codec, chunk] = statistics.median(rates)
    return out


def targets(
    datasets: list[tuple[str, Any]],
    top: dict[str, float],
    decode: dict[tuple[str, str], float],
    bare: dict[Any, float] | None = None,
) -> list[list[str]]:
    """The issue's read targets, per codec x chunking: ``zarr_direct`` / ``hdf5_direct`` read GiB/s at 0 ms against
    0.7 x min(server ceiling x compression ratio, 2 x one-core decode), and ``hdf5_direct`` against h5py's own read
    at 20 ms (>= 3x)."""
    out = []
    for variant, ds in datasets:
        shards = variant == "sharded"
        if variant == "paged":
            continue
        storages = [str(s) for s in ds["storage"].values]
        for backend in ("hdf5_direct", "zarr_direct"):
            if backend not in ds["backend"].values or (shards and backend.startswith("hdf5")):
                continue
            for codec in ds["codec"].values:
                for chunk in ds["chunk"].values:

                    def med(
                        name: str, storage: str, b: str = backend, ds: Any = ds, codec: Any = codec, chunk: Any = chunk
                    ) -> float:
                        cell = ds.sel(dataset="diff", backend=b, codec=codec, chunk=chunk, storage=storage)
                        return float(np.nanmedian(cell[name].where(cell["status"] == "ok").values))

                    ceiling_key = "ranged GET 1 MiB" if backend == "hdf5_direct" else "GET 4 MiB"
                    name = f"{backend}{' sharded' if shards else ''}"
                    if "s3" in storages:
                        read, ratio = med("read_GiBps", "s3"), med("ratio", "s3")
                        server = top[ceiling_key] * ratio
                        two_cores = 2 * decode[str(codec), str(chunk)]
                        bound = min(server, two_cores)
                        out.append([name, str(codec), str(chunk), "read at 0 ms", f"{read:.3f}",
                                    f"0.7 x min({server:.2f}, {two_cores:.2f}) = {0.7 * bound:.3f}",
                                    f"{read / bound:.2f}", "yes" if read >= 0.7 * bound else "no"])  # fmt: skip
                        if bare and (str(codec), str(chunk)) in bare:
                            limit = bare[str(codec), str(chunk)]
                            out.append([name, str(codec), str(chunk), "read at 0 ms vs the bare pipeline",
                                        f"{read:.3f}", f"0.7 x {limit:.3f} = {0.7 * limit:.3f}",
                                        f"{read / limit:.2f}", "yes" if read >= 0.7 * limit else "no"])  # fmt: skip
                    if backend == "hdf5_direct" and "s3-20ms" in storages and "hdf5" in ds["backend"].values:
                        mine, h5py_own = med("read_GiBps", "s3-20ms"), med("read_GiBps", "s3-20ms", "hdf5")
                        out.append([name, str(codec), str(chunk), "read at 20 ms vs hdf5", f"{mine:.3f}",
                                    f">= 3 x {h5py_own:.3f}", f"{mine / h5py_own:.2f} x",
                                    "yes" if mine >= 3 * h5py_own else "no"])  # fmt: skip
                    if "s3-20ms" in storages and (shards or backend == "hdf5_direct") and chunk == "single_frame":
                        requests = med("read_frame_requests", "s3-20ms")
                        out.append([name, str(codec), str(chunk), "frame read requests at 20 ms", f"{requests:.0f}",
                                    "<= 3", "", "yes" if requests <= 3 else "no"])  # fmt: skip
    return out


#: The passes of the matrix: (name, which backends, experiment settings).
VARIANTS = ("plain", "sharded", "paged")


def matrix(args: argparse.Namespace, variant: str, scratch: Path) -> Any:
    """One ``cubebench.run`` of the matrix on S3 (every latency as a storage entry); its results Dataset.

    ``variant``: ``plain``, ``sharded`` (the Zarr backends, ``zarr: {shards: true}``) or ``paged`` (the HDF5
    backends, ``hdf5: {page_size: --hdf5-page-size}``).
    """
    from cubebench.runner import run

    shards = variant == "sharded"
    family = {"sharded": "zarr", "paged": "hdf5"}.get(variant, "")
    backends = [b for b in args.backends if b.startswith(family)]
    storage = [{"kind": "s3", "server": "local", **({"latency_ms": ms} if ms else {})} for ms in args.latencies]
    experiment = {
        "name": f"bench-s3{'' if variant == 'plain' else '-' + variant}",
        "datasets": [{"preset": "4d_diff", "scale": args.scale, "name": "diff"}],
        "backends": backends,
        "codecs": args.codecs,
        "chunks": args.chunks,
        "storage": storage,
        "access_patterns": ["frame"],
        "runs": args.runs,
        "zarr": {"shards": shards},
        "hdf5": {"page_size": args.hdf5_page_size if variant == "paged" else 0},
        "cluster": {"workers": 2, "threads_per_worker": 1, "codec_threads": 1},
        "scratch": str(scratch),
    }
    return run(experiment, scratch / experiment["name"], progress=False)


def label(cell: Any, backend: str) -> str:
    """A row's backend label from what the cells recorded: ``zarr sharded``, ``hdf5 paged 4MiB``."""
    from dask.utils import format_bytes

    name = backend
    if bool(cell["sharded"].any()):
        name += " sharded"
    page = int(cell["hdf5_page_size"].max()) if "hdf5_page_size" in cell else 0
    return f"{name} paged {format_bytes(page).replace(' ', '').replace('.00', '')}" if page else name


def rows(ds: Any) -> list[list[str]]:
    """Table rows: medians over the ok runs of each backend x codec x chunking x storage."""
    out = []
    for backend in ds["backend"].values:
        for codec in ds["codec"].values:
            for chunk in ds["chunk"].values:
                for storage in ds["storage"].values:
                    cell = ds.sel(dataset="diff", backend=backend, codec=codec, chunk=chunk, storage=storage)
                    ok = cell["status"] == "ok"
                    if not bool(ok.any()):
                        out.append([str(backend), str(codec), str(chunk), str(storage), *["-"] * 7])
                        continue

                    def med(name: str, scale: float = 1.0, cell: Any = cell, ok: Any = ok) -> float:
                        if name not in cell:
                            return float("nan")
                        return float(np.nanmedian(cell[name].where(ok).values)) * scale

                    name = label(cell, str(backend))
                    out.append(
                        [
                            name,
                            str(codec),
                            str(chunk),
                            str(storage),
                            f"{med('write_GiBps'):.3f}",
                            f"{med('read_GiBps'):.3f}",
                            f"{med('requests'):.0f}",
                            f"{med('objects'):.0f}",
                            f"{med('read_frame_seconds', 1000):.1f}",
                            f"{med('read_frame_requests'):.0f}",
                            f"{med('peak_memory_bytes', 1 / 2**30):.2f}",
                        ]
                    )
    return out


def markdown(header: list[str], body: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=0.125, help="of each scan axis of the 8 GiB 4d_diff preset (0.125: 128 MiB)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0, 20], help="client-side ms per request")
    parser.add_argument("--codecs", nargs="+", default=["blosc-zstd", "blosc-lz4"])
    parser.add_argument("--chunks", nargs="+", default=["balanced", "single_frame"])
    parser.add_argument("--backends", nargs="+", default=["hdf5", "hdf5_direct", "zarr", "zarr_direct"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="passes to run")
    parser.add_argument("--hdf5-page-size", default="4MiB", help="page size of the paged HDF5 pass")
    parser.add_argument("--bare", action="store_true", help="also measure the bare pipeline's full read (the limit)")
    parser.add_argument("--scratch", type=Path, default=None, help="scratch folder (default: the temp folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        scratch = Path(tmp)
        top = ceiling(scratch)
        print("Server ceiling (SeaweedFS on loopback, obstore, 4 requests in flight, no codec), GiB/s:\n")
        print(markdown(list(top), [[f"{v:.3f}" for v in top.values()]]))
        header = ["backend", "codec", "chunk", "storage", "write GiB/s", "read GiB/s", "requests", "objects"]
        header += ["frame read ms", "frame read requests", "peak memory GiB"]
        samples = encoded_samples(args)
        decode = decode_rates(samples)
        bare = bare_reads(samples, scratch) if args.bare else None
        if bare:
            print(
                "\nThe bare pipeline (two plain processes GET their half of the objects, 4 in flight, decode, "
                "hash), GiB/s:\n"
            )
            print(markdown(["codec", "chunk", "GiB/s"], [[c, k, f"{v:.2f}"] for (c, k), v in bare.items()]))
        print("\nOne core's decode speed on this cube's chunks, GiB/s:\n")
        print(markdown(["codec", "chunk", "GiB/s"], [[c, k, f"{v:.2f}"] for (c, k), v in decode.items()]))
        body: list[list[str]] = []
        results = []
        for variant in args.variants:
            results.append((variant, matrix(args, variant, scratch)))
            body += rows(results[-1][1])
        print(f"\nEach backend on S3 (medians of {args.runs} runs; storage s3-Nms: N ms added per request;")
        print("peak memory: all processes, the S3 server included):\n")
        print(markdown(header, body))
        print("\nTargets (medians):\n")
        print(markdown(["backend", "codec", "chunk", "target", "measured", "needed", "fraction", "met"],
                       targets(results, top, decode, bare)))  # fmt: skip
    print(f"\nCommand: python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:] if argv is None else argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
