"""Provenance recorded with every result: library versions, HDF5 build, CPU, threads, cluster, experiment."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
from importlib import metadata
from typing import TYPE_CHECKING, Any

from cubebench.backends import BACKENDS
from cubebench.codecs import get_codec

if TYPE_CHECKING:
    from distributed import Client

    from cubebench.experiment import Experiment

LIBRARIES = (
    "cubebench",
    "numpy",
    "dask",
    "distributed",
    "zarr",
    "numcodecs",
    "h5py",
    "hdf5plugin",
    "xarray",
    "imagecodecs",
    "bitshuffle",
    "blosc2",
    "pcodec",
    "dask-jobqueue",
    "rosettasciio",
    "tensorstore",
    "zarrs",
)


def library_versions() -> dict[str, str]:
    """Installed version of each library that shapes the results (``"missing"`` when absent)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    try:
        import h5py

        versions["hdf5"] = ".".join(str(v) for v in h5py.version.hdf5_version_tuple)
    except ImportError:
        pass
    return versions


def cpu_description() -> dict[str, Any]:
    """CPU model, core count and the SIMD flags that codecs use."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1]
    except OSError:
        pass
    wanted = (
        "sse2",
        "ssse3",
        "sse4_1",
        "sse4_2",
        "avx",
        "avx2",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "bmi2",
        "asimd",
        "sve",
    )
    return {
        "model": model,
        "cores": os.cpu_count(),
        "simd": [flag for flag in wanted if f" {flag} " in f" {flags} "],
    }


def hdf5plugin_config() -> dict[str, Any]:
    """``hdf5plugin.get_config()`` as plain data (build flags decide filter speed)."""
    try:
        import hdf5plugin

        config = hdf5plugin.get_config()
        return {
            "build_config": dict(config.build_config._asdict()),
            "registered_filters": sorted(config.registered_filters),
        }
    except Exception as exc:  # an odd build must not stop a run
        return {"error": str(exc)}


#: Environment variables that set codec and BLAS threads or Zarr's pool, as the workers see them.
THREAD_VARIABLES = (
    "BLOSC_NTHREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ZARR_ASYNC__CONCURRENCY",
    "ZARR_THREADING__MAX_WORKERS",
)


def worker_facts() -> dict[str, Any]:
    """What one worker process runs on: host, CPU, library versions, thread settings (run on each worker)."""
    return {
        "host": socket.gethostname(),
        "cpu": cpu_description(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "threads": {name: os.environ.get(name, "") for name in THREAD_VARIABLES},
    }


def node_facts(client: Client) -> list[dict[str, Any]]:
    """:func:`worker_facts` of every worker, each distinct set once (a batch job may land on other CPUs)."""
    try:
        facts = client.run(worker_facts)
    except Exception as exc:  # provenance must not stop a run
        return [{"error": str(exc)}]
    distinct: list[dict[str, Any]] = []
    for address in sorted(facts):
        entry = dict(facts[address])
        same = next((d for d in distinct if {k: v for k, v in d.items() if k != "workers"} == entry), None)
        if same is None:
            distinct.append({**entry, "workers": 1})
        else:
            same["workers"] += 1
    return distinct


def provenance(exp: Experiment, cluster: dict[str, Any]) -> dict[str, Any]:
    """All attributes stored on a results Dataset."""
    return {
        "title": f"cubebench results: {exp.name}",
        "experiment": exp.to_dict(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_description(),
        "libraries": library_versions(),
        "hdf5plugin": hdf5plugin_config(),
        "cluster": cluster,
        "cache": exp.cache,
        "timing": {
            "warmup": exp.warmup,
            "runs": exp.runs,
            "order": "interleaved: run k of every cell before run k+1 of any",
            "write": "wall time of the write, flush and fsync of every stored file included",
            "source": {
                "auto": "chunk-major staged copy where the chunking scatters chunks and enough cells read it "
                "(per cell: chunk_major), else gathered from the C-ordered staged cube inside the timed write",
                "chunked": "chunks encoded straight from a chunk-major staged copy where the chunking scatters them",
                "source": "chunks gathered from the C-ordered staged cube inside the timed write",
            }[exp.layout],
            "read": "wall time of a full read into memory, decoded, per-chunk checksum included",
            "cache": exp.cache,
            "cold_cache": "posix_fadvise(DONTNEED) on every stored file after fsync, before each read",
        },
        "threads": {
            "threads_per_worker": exp.cluster.threads_per_worker,
            "codec_threads": exp.cluster.codec_threads,
            "BLOSC_NTHREADS": str(exp.cluster.codec_threads),
        },
        "zarr_settings": {
            "write_empty_chunks": exp.zarr.write_empty_chunks,
            "shards": exp.zarr.shards,
            "concurrency": exp.zarr.concurrency,
            "codec_pipeline": exp.zarr.codec_pipeline,
        },
        "tensorstore": {  # its thread pools, per task (backends/tensorstore_.py)
            "data_copy_concurrency": exp.cluster.codec_threads,
            "file_io_concurrency": exp.zarr.concurrency,
        },
        "codecs": {cid: get_codec(cid).to_dict() for cid in exp.codecs},
        "backend_scaling": {
            name: {"writes": BACKENDS[name].writes, "reads": BACKENDS[name].reads} for name in exp.backends
        },
    }
