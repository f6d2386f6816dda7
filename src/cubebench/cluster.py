"""One context manager that yields a ``distributed.Client`` for an experiment's ``cluster:`` section.

A LocalCluster of worker processes by default (or of threads in this process); an existing scheduler by
address; or an HPC batch system through dask-jobqueue (``jobqueue: slurm`` or ``pbs``). Codec-internal threads
are set on every worker before any codec runs, so workers x threads never oversubscribes the cores by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import weakref
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.comm.core import CommClosedError
from distributed.core import Status

from cubebench.errors import ClusterError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cubebench.experiment import ClusterSpec


#: glibc malloc settings for workers. distributed's default ``MALLOC_TRIM_THRESHOLD_=65536`` turns off glibc's
#: adaptive mmap threshold, so every chunk-sized buffer becomes a fresh ``mmap`` whose pages fault in one by one:
#: measured here, it halves Blosc-zstd encoding on a worker (0.16 vs 0.31 GB/s). Buffers up to 64 MiB are reused
#: from the heap instead; the heap's high-water mark stays bounded by chunk size x tasks in flight.
MALLOC_ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(256 * 2**20), "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}


def worker_environment(spec: ClusterSpec, zarr_concurrency: int = 2) -> dict[str, str]:
    """Environment variables every worker gets: codec and BLAS threads, Zarr's thread pool, malloc tuning."""
    threads = str(spec.codec_threads)
    return {
        **MALLOC_ENVIRONMENT,
        "BLOSC_NTHREADS": threads,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "ZARR_ASYNC__CONCURRENCY": str(zarr_concurrency),
        "ZARR_THREADING__MAX_WORKERS": str(max(1, zarr_concurrency)),
    }


class CodecThreads(WorkerPlugin):
    """Set Blosc's internal threads (and the environment) on each worker when it starts."""

    name = "cubebench-codec-threads"

    def __init__(self, environment: dict[str, str], codec_threads: int) -> None:
        self.environment = environment
        self.codec_threads = codec_threads

    def setup(self, worker: Any) -> None:
        """Apply the settings inside the worker process; import dask.array there without xarray."""
        os.environ.update(self.environment)
        from cubebench.codecs import set_codec_threads
        from cubebench.lazy_dask import import_dask_array

        set_codec_threads(self.codec_threads)
        import_dask_array()  # before the first task that unpickles a dask.array function imports it with xarray


class WorkerMemory(WorkerPlugin):
    """Each worker samples its own peak resident memory between :func:`reset_worker_peaks` and
    :func:`worker_peaks_outside`: workers that are not descendants of the main process (batch jobs, another
    machine) are invisible to its process-tree sampler."""

    name = "cubebench-worker-memory"

    def __init__(self) -> None:
        self.sampler: Any = None

    def start(self) -> None:
        """Begin a new peak (stopping the previous sampler)."""
        from cubebench.memory import PeakMemory

        self.stop()
        self.sampler = PeakMemory().__enter__()

    def stop(self) -> int | None:
        """Stop sampling; the peak since :meth:`start` (None when not started)."""
        sampler, self.sampler = self.sampler, None
        if sampler is None:
            return None
        sampler.__exit__(None, None, None)
        return int(sampler.peak)

    def teardown(self, worker: Any) -> None:
        """Stop the sampling thread with the worker."""
        self.stop()


def _start_peak(dask_worker: Any) -> None:
    plugin = dask_worker.plugins.get(WorkerMemory.name)
    if plugin is not None:
        plugin.start()


def _stop_peak(dask_worker: Any) -> tuple[str, int, int | None]:
    plugin = dask_worker.plugins.get(WorkerMemory.name)
    return socket.gethostname(), os.getpid(), plugin.stop() if plugin is not None else None


def reset_worker_peaks(client: Client) -> None:
    """Start a new peak-memory sample in every worker."""
    client.run(_start_peak, on_error="ignore")


def worker_peaks_outside(client: Client, counted: set[int]) -> int:
    """Summed peak resident bytes since :func:`reset_worker_peaks` of the workers not among ``counted``.

    ``counted``: process ids on this host already sampled here (a LocalCluster's workers). Each worker's own
    maximum, so their sum bounds the workers' peak together from above.
    """
    host = socket.gethostname()
    total = 0
    for worker_host, pid, peak in client.run(_stop_peak, on_error="ignore").values():
        if peak is not None and (worker_host != host or pid not in counted):
            total += peak
    return total


#: distributed's words when a worker's heartbeat call fails (logged at ERROR with a traceback), and its logger.
HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"
WORKER_LOGGER = "distributed.worker"
#: Worker states in which a heartbeat cut off under the worker is its own doing.
_CLOSING = frozenset({Status.closing, Status.closing_gracefully, Status.closed})


class HeartbeatCutByClose(logging.Filter):
    """Drop distributed's report of a heartbeat cut off by its own worker's shutdown.

    A worker that closes while a heartbeat call is in flight closes that call's connection under it, and
    distributed logs the broken call as an error with a traceback (dask/distributed#7105): at the end of a run that
    went well. Measured here in 1 of 15-30 LocalCluster shutdowns, every time with the worker already closing and
    the connection closed (``CommClosedError``). Any other heartbeat failure, or one of a running worker, still
    shows.
    """

    def __init__(self) -> None:
        super().__init__()
        #: The workers of this process (weakly held: a finished cluster's workers go away).
        self.workers: weakref.WeakSet[Any] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for a heartbeat cut off while a worker of this process is closing."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, CommClosedError) or not str(record.msg).startswith(HEARTBEAT_FAILED):
            return True
        return not any(worker.status in _CLOSING for worker in list(self.workers))


#: distributed's words when a task raises on a worker (logged at ERROR with the task's traceback).
TASK_FAILED = "Compute Failed"


class FailureReportedByCubebench(logging.Filter):
    """Drop distributed's report of a task that raised, on the workers of a LocalCluster cubebench started.

    Each such failure reaches cubebench as the task's exception, and cubebench reports it once: as the failed
    cell's reason (in the results, below the run's summary, and in ``report``), or as a one-line error naming the
    input at fault (a source file that cannot be read). distributed's report repeated it above the summary, a
    traceback per failed task: three cells failing on a full scratch disk printed 12 kB in 4 reports. The workers
    of a cluster cubebench connects to, or starts as batch jobs, log to their own files and keep their reports.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for distributed's report of a failed task."""
        return not str(record.msg).startswith(TASK_FAILED)


#: One of each filter per process, on distributed's worker logger.
_HEARTBEAT_FILTER = HeartbeatCutByClose()
_FAILURE_FILTER = FailureReportedByCubebench()


class QuietWorkers(WorkerPlugin):
    """Let workers end without noise, and leave failures to cubebench to report.

    Worker processes ignore SIGINT: Ctrl-C reaches the whole process group, and the main process alone decides how
    the workers end (it closes the cluster), so they print no tracebacks and lose no cleanup. A heartbeat cut off
    by the worker's own close is not reported as an error (:class:`HeartbeatCutByClose`). And with ``local``, the
    workers of a LocalCluster do not report failed tasks on the terminal: cubebench does
    (:class:`FailureReportedByCubebench`).
    """

    name = "cubebench-quiet-workers"

    def __init__(self, local: bool) -> None:
        self.local = local

    def setup(self, worker: Any) -> None:
        """Ignore SIGINT in this worker process (a no-op for thread workers, which cannot set handlers); filter
        distributed's worker log."""
        with contextlib.suppress(ValueError):  # not the main thread of its process
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        _HEARTBEAT_FILTER.workers.add(worker)
        logger = logging.getLogger(WORKER_LOGGER)
        for quiet in [_HEARTBEAT_FILTER, *([_FAILURE_FILTER] if self.local else [])]:
            if quiet not in logger.filters:
                logger.addFilter(quiet)


def _forget_thread_workers() -> None:
    """Take the filters off this process's worker log once its cluster is closed, so that nothing of a finished
    run (thread workers live in this process) filters a later cluster's log."""
    logger = logging.getLogger(WORKER_LOGGER)
    logger.removeFilter(_HEARTBEAT_FILTER)
    logger.removeFilter(_FAILURE_FILTER)
    _HEARTBEAT_FILTER.workers.clear()


@contextlib.contextmanager
def open_client(spec: ClusterSpec, zarr_concurrency: int = 2) -> Iterator[Client]:
    """Start (or connect to) the cluster described by ``spec`` and yield a Client; shut it down on exit.

    Raises
    ------
    ClusterError
        When the scheduler cannot be reached within ``spec.timeout`` seconds or the cluster cannot start.
    """
    env = worker_environment(spec, zarr_concurrency)
    with contextlib.ExitStack() as stack:
        stack.callback(_forget_thread_workers)  # last, after the cluster has closed
        if spec.address:
            client = _connect(spec.address, spec.timeout)
        elif spec.jobqueue:
            cluster = stack.enter_context(jobqueue_cluster(spec, env))
            preflight(cluster, spec)
            client = Client(cluster, timeout=f"{spec.timeout}s")
            cluster.scale(spec.workers)
            try:
                client.wait_for_workers(spec.workers, timeout=spec.timeout)
            except TimeoutError:
                client.close()
                raise ClusterError(
                    f"{spec.jobqueue} cluster: {spec.workers} workers did not start within {spec.timeout:g} s "
                    f"(check the queue {spec.queue!r} and the job logs in {spec.log_directory or '.'})"
                ) from None
        else:
            client = _local_client(spec, env, stack)
        stack.callback(client.close)
        client.register_plugin(QuietWorkers(local=spec.kind == "local"))
        if spec.kind != "local":  # a LocalCluster's workers are this process or its children: sampled here
            client.register_plugin(WorkerMemory())
        client.register_plugin(CodecThreads(env, spec.codec_threads))
        yield client


#: Dask settings of a LocalCluster. Its workers' statistical profiler (a thread that walks every thread's stack
#: 100 times a second, holding the GIL, for the dashboard cubebench does not start) is off: hdf5_direct blosc-lz4
#: reads on thread workers took 0.217 s per GiB without it against 0.234 s with it (mean of 6 each).
LOCAL_DASK_CONFIG = {"distributed.worker.profile.enabled": False}


def _local_client(spec: ClusterSpec, env: dict[str, str], stack: contextlib.ExitStack) -> Client:
    """A LocalCluster of worker processes (or threads of this process, ``processes: false``) and its Client."""
    stack.enter_context(dask.config.set(LOCAL_DASK_CONFIG))
    if spec.processes:
        # malloc reads its settings when a process starts: they must be in the environment before the spawn
        spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **MALLOC_ENVIRONMENT}
        stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}))
        where: dict[str, Any] = {"env": env}
    else:  # thread workers share this process: its environment (restored on exit) and its heap
        stack.enter_context(environment(env))
        tune_malloc_here()
        if "zarr" in sys.modules:  # imported already: its configuration read the environment before
            import zarr

            stack.enter_context(
                zarr.config.set(
                    {
                        "async.concurrency": int(env["ZARR_ASYNC__CONCURRENCY"]),
                        "threading.max_workers": int(env["ZARR_THREADING__MAX_WORKERS"]),
                    }
                )
            )
        where = {}
    cluster = LocalCluster(
        n_workers=spec.workers,
        threads_per_worker=spec.threads_per_worker,
        processes=spec.processes,
        memory_limit=spec.memory_limit or "auto",
        # no dashboard, and the scheduler's small HTTP server on a free port: with None it tries 8787 and
        # warns when another cluster holds it (two test sessions at once)
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
        silence_logs=logging.ERROR,
        local_directory=spec.local_directory,
        **where,
    )
    stack.callback(cluster.close)
    # results straight from the workers: relayed through the scheduler (distributed's default), which lives in
    # this process too, an hdf5_direct write's encoded bytes crossed TCP twice in the process that stores them
    # (per GiB of blosc-lz4, main-process CPU 0.21-0.50 core-s relayed, 0.18-0.27 direct). Remote and batch
    # clusters keep the relay: a login node may not reach the workers' ports.
    return Client(cluster, direct_to_workers=True)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables in this process for the block; restore the previous values after it."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: glibc ``mallopt`` parameter numbers of the :data:`MALLOC_ENVIRONMENT` settings.
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}


def tune_malloc_here() -> bool:
    """Apply :data:`MALLOC_ENVIRONMENT` to this running process through glibc's ``mallopt``.

    Thread workers allocate from the main process's heap, which started without those variables. Returns False
    where the C library has no ``mallopt`` (not glibc): the defaults then stay.
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(_MALLOPT[key], int(value)) == 1 for key, value in MALLOC_ENVIRONMENT.items())


def _connect(address: str, timeout: float) -> Client:
    try:
        return Client(address, timeout=f"{min(timeout, 10.0)}s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach Dask scheduler at {address}: {exc.__class__.__name__}") from None


def jobqueue_kwargs(spec: ClusterSpec, env: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue cluster class for ``spec``: one worker process per job.

    Workers spill into ``local_directory`` (default: the node's temporary folder, never the submit folder);
    job logs go to ``log_directory`` (dask-jobqueue passes ``--output``/``-o``), else where the batch system
    puts them. The dashboard takes a free port, so two runs on one login node do not collide.
    """
    kwargs: dict[str, Any] = {
        "cores": spec.cores,
        "processes": 1,
        "memory": spec.memory,
        "walltime": spec.walltime,
        "job_script_prologue": [f"export {k}={v}" for k, v in env.items()],
        "job_extra_directives": list(spec.job_directives),
        "local_directory": spec.local_directory or tempfile.gettempdir(),
        "scheduler_options": {"dashboard_address": ":0"},
    }
    for key in ("queue", "interface", "log_directory"):
        value = getattr(spec, key)
        if value is not None:
            kwargs[key] = value
    return kwargs


@contextlib.contextmanager
def jobqueue_cluster(spec: ClusterSpec, env: dict[str, str]) -> Iterator[Any]:
    """A dask-jobqueue ``SLURMCluster`` or ``PBSCluster`` for ``spec`` (no job submitted yet); closed on exit.

    ``cluster.job_script()`` shows the batch script each worker job will run.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        from dask_jobqueue.pbs import PBSCluster
        from dask_jobqueue.slurm import SLURMCluster
    except ImportError:
        raise ClusterError("cluster.jobqueue needs dask-jobqueue: pip install 'cubebench[hpc]'") from None
    finally:
        # importing dask_jobqueue (its runner module) makes Ctrl-C a silent sys.exit(): keep KeyboardInterrupt
        if signal.getsignal(signal.SIGINT) is not handler and handler is not None:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGINT, handler)
    cls = {"slurm": SLURMCluster, "pbs": PBSCluster}[str(spec.jobqueue)]
    kwargs = jobqueue_kwargs(spec, env)
    try:
        cluster = cls(**kwargs)
    except Exception as exc:  # dask-jobqueue raises many kinds for a bad setup
        raise ClusterError(f"cannot start {spec.jobqueue} cluster: {' '.join(str(exc).split())}") from None
    try:
        yield cluster
    finally:
        _close_jobs(cluster)


def preflight(cluster: Any, spec: ClusterSpec) -> None:
    """Ask Slurm whether it would take the worker job (``sbatch --test-only``, nothing is submitted).

    A wrong queue, walltime or memory request then fails at once, in Slurm's words, instead of as a timeout
    ``spec.timeout`` seconds later. PBS has no such dry run: there, a rejected job shows as that timeout.
    """
    sbatch = shutil.which("sbatch")
    if spec.jobqueue != "slurm" or sbatch is None:
        return
    with tempfile.NamedTemporaryFile("w", prefix="cubebench-job-", suffix=".sh") as script:
        script.write(cluster.job_script())
        script.flush()
        try:
            done = subprocess.run([sbatch, "--test-only", script.name], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"slurm: sbatch --test-only did not answer: {exc}") from None
    if done.returncode != 0:
        lines = [line.replace("sbatch: error: ", "") for line in done.stderr.splitlines() if line.strip()]
        raise ClusterError(
            f"slurm rejects the worker job (queue {spec.queue!r}, {spec.cores} cores, {spec.memory}, walltime "
            f"{spec.walltime}): {'; '.join(lines) or f'sbatch exit code {done.returncode}'}"
        )


def _close_jobs(cluster: Any) -> None:
    """Close a jobqueue cluster; if that fails (jobs that never started), cancel every submitted job directly."""
    try:
        cluster.close()
    except Exception:
        ids = [str(job.job_id) for job in list(cluster.workers.values()) if getattr(job, "job_id", None)]
        if ids:
            subprocess.run([cluster.job_cls.cancel_command, *ids], capture_output=True, check=False, timeout=60)


def cluster_description(client: Client, spec: ClusterSpec) -> dict[str, Any]:
    """Provenance of the cluster: kind, workers, threads, codec threads."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    return {
        "kind": spec.kind,
        "processes": spec.processes if spec.kind == "local" else True,
        "workers": len(workers),
        "threads_per_worker": spec.threads_per_worker,
        "codec_threads": spec.codec_threads,
        "total_threads": sum(int(w.get("nthreads", 0)) for w in workers.values()),
    }
