"""Experiments: a YAML file (or mapping) validated into frozen dataclasses.

Every key is checked: an unknown key, a wrong type or a bad value raises :class:`~cubebench.errors.ConfigError`
naming it, before any work starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cubebench.backends import BACKENDS, PIPELINES
from cubebench.chunking import chunk_name, parse_chunk
from cubebench.errors import ConfigError
from cubebench.patterns import PATTERNS
from cubebench.sources import SOURCE_KEYS
from cubebench.storage import LocalStorage, StorageSpec, parse_storage
from cubebench.sufficiency.config import SufficiencyOptions, parse_sufficiency

if TYPE_CHECKING:
    import os

JOBQUEUE_KINDS = ("slurm", "pbs")
CACHE_MODES = ("warm", "cold")
#: How cells read the staged source (see :attr:`Experiment.layout`).
LAYOUTS = ("auto", "chunked", "source")


@dataclass(frozen=True)
class ClusterSpec:
    """Where the work runs: a LocalCluster (default), an existing scheduler, or a dask-jobqueue cluster.

    ``codec_threads`` is the number of threads each codec may use inside one worker thread (Blosc's
    ``nthreads``); ``workers * threads_per_worker * codec_threads`` should not exceed the cores.
    ``processes``: a LocalCluster's workers are separate processes (Dask's default: a crash stays in its worker)
    or threads of the main process (no chunk crosses a process boundary: faster and lighter for codecs that
    release the GIL, see README "Threads or processes").
    """

    workers: int = 2
    threads_per_worker: int = 1
    codec_threads: int = 1
    processes: bool = True
    memory_limit: str | None = None
    address: str | None = None
    jobqueue: str | None = None
    cores: int = 1
    memory: str = "2GiB"
    walltime: str = "01:00:00"
    queue: str | None = None
    interface: str | None = None
    job_directives: tuple[str, ...] = ()
    local_directory: str | None = None
    log_directory: str | None = None
    timeout: float = 60.0

    @property
    def kind(self) -> str:
        """``local``, ``address`` or the jobqueue name."""
        if self.address:
            return "address"
        return self.jobqueue or "local"


@dataclass(frozen=True)
class ZarrSettings:
    """Zarr-specific choices, recorded in every result.

    ``write_empty_chunks`` defaults to True so Zarr stores every chunk as HDF5 does (a fair size comparison);
    ``shards`` stores each chunk strategy's shape as one shard of single-frame inner chunks.
    ``codec_pipeline`` runs the ``zarr`` backend through zarr-python's codec pipeline or the ``zarrs`` Rust one
    (ids: :data:`cubebench.backends.PIPELINES`).
    """

    write_empty_chunks: bool = True
    shards: bool = False
    concurrency: int = 2
    codec_pipeline: str = "zarr-python"


@dataclass(frozen=True)
class HDF5Settings:
    """HDF5-specific choices of the ``hdf5`` and ``hdf5_direct`` backends, recorded in every result.

    ``page_size`` (bytes; 0: off) writes cloud-optimised HDF5: paged aggregation (``fs_strategy="page"``), so the
    metadata sit together in pages of this size that a reader fetches whole, through a page buffer.
    """

    page_size: int = 0


@dataclass(frozen=True)
class Experiment:
    """A validated benchmark plan. Build with :func:`load_experiment` or :func:`parse_experiment`.

    ``scratch`` holds each cell's stored files (one cell at a time, removed after it); ``staging`` holds the
    uncompressed staged copy of every dataset for the whole run (default: inside ``scratch``). Both must be
    visible to every worker.
    """

    name: str
    datasets: tuple[Mapping[str, Any], ...]
    backends: tuple[str, ...] = ("hdf5", "zarr")
    codecs: tuple[str, ...] = ()
    chunks: tuple[str | tuple[int, ...], ...] = ("real_space", "balanced", "single_frame")
    runs: int = 3
    warmup: bool = True
    cache: str = "warm"
    max_cell_seconds: float | None = None
    access_patterns: tuple[str, ...] = ()
    scratch: str | None = None
    staging: str | None = None
    #: ``chunked``: stage a chunk-major copy per chunking whose chunks are scattered in the cube, so a write
    #: encodes each chunk straight from the page cache; ``source``: gather chunks from the staged cube;
    #: ``auto``: chunked where enough cells read the chunking to repay the copy (see :mod:`cubebench.runner`).
    layout: str = "auto"
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    zarr: ZarrSettings = field(default_factory=ZarrSettings)
    hdf5: HDF5Settings = field(default_factory=HDF5Settings)
    #: Inference sufficiency (:mod:`cubebench.sufficiency.config`): representations to score, targets, options.
    representations: tuple[str, ...] = ()
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sufficiency: SufficiencyOptions = field(default_factory=SufficiencyOptions)
    #: Paced acquisition (``cubebench acquire``): the raw ``acquisition:`` section, validated by
    #: :func:`cubebench.acquisition.config.parse_acquisition` (that package sits above this module's layer).
    acquisition: Mapping[str, Any] = field(default_factory=dict)
    #: Where cells store their bytes (:mod:`cubebench.storage`): one more dimension of the matrix.
    storage: tuple[StorageSpec, ...] = (LocalStorage(),)

    @property
    def chunk_labels(self) -> tuple[str, ...]:
        """Names of the chunk choices as they appear in results."""
        return tuple(chunk_name(c) for c in self.chunks)

    def to_dict(self) -> dict[str, Any]:
        """Plain form, for provenance and round trips through YAML."""
        return {**_listify(asdict(self)), "storage": [spec.to_dict() for spec in self.storage]}


def _listify(value: Any) -> Any:
    """Tuples to lists and mappings to dicts, recursively: the YAML-shaped form."""
    if isinstance(value, Mapping):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


_TOP_KEYS = (
    "name",
    "datasets",
    "backends",
    "codecs",
    "chunks",
    "runs",
    "warmup",
    "cache",
    "access_patterns",
    "max_cell_seconds",
    "scratch",
    "staging",
    "layout",
    "cluster",
    "zarr",
    "hdf5",
    "representations",
    "targets",
    "sufficiency",
    "acquisition",
    "storage",
)
_CLUSTER_KEYS = tuple(ClusterSpec.__dataclass_fields__)
_ZARR_KEYS = tuple(ZarrSettings.__dataclass_fields__)
_HDF5_KEYS = tuple(HDF5Settings.__dataclass_fields__)
#: HDF5's smallest file-space page, and the largest cubebench accepts (a page buffer holds several).
PAGE_SIZES = (512, 2**30)


def load_experiment(path: str | os.PathLike[str]) -> Experiment:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"experiment file not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: binary data, not an experiment (a YAML text file)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read experiment file {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: an experiment must be a YAML mapping with keys {', '.join(_TOP_KEYS)}")
    raw = dict(raw)
    raw.setdefault("name", path.stem)
    return parse_experiment(raw, origin=str(path))


def default_experiment_path() -> Path:
    """The quick experiment shipped inside the package (the default of ``cubebench run``)."""
    return Path(str(resources.files("cubebench") / "configs" / "quick.yaml"))


def override_experiment(
    exp: Experiment,
    *,
    codecs: str | Sequence[str] | None = None,
    backends: str | Sequence[str] | None = None,
    chunks: str | Sequence[str | Sequence[int]] | None = None,
    runs: int | None = None,
    origin: str = "run options",
) -> Experiment:
    """``exp`` with its codecs, backends, chunks or runs replaced, each validated as in an experiment file.

    Parameters
    ----------
    exp
        The experiment to change; None values leave its setting as it is.
    codecs, backends
        Ids (a list, or one id), or ``"study"``/``"all"`` for codecs and ``"all"`` for backends.
    chunks
        Strategy names or 4 positive integers each, as a sequence or as a string ``"sy,sx,dy,dx"``.
    runs
        Timed runs per cell.
    origin
        What error messages name as the place of a bad value.
    """
    changes: dict[str, Any] = {}
    if codecs is not None:
        changes["codecs"] = _parse_codecs(_one_keyword(codecs), origin)
    if backends is not None:
        changes["backends"] = _parse_names(_one_keyword(backends), "backends", tuple(BACKENDS), origin)
    if chunks is not None:
        changes["chunks"] = _parse_chunks([chunks] if isinstance(chunks, str) else list(chunks), origin)
    if runs is not None:
        changes["runs"] = _positive_int(runs, "runs", origin)
    return replace(exp, **changes) if changes else exp


def _one_keyword(value: str | Sequence[str]) -> str | list[str]:
    """``["study"]`` (one option word) as ``"study"``; other sequences as lists."""
    if isinstance(value, str):
        return value
    items = list(value)
    return items[0] if len(items) == 1 and items[0] in ("all", "study") else items


def parse_experiment(raw: Mapping[str, Any], origin: str = "experiment") -> Experiment:
    """Validate a mapping into an :class:`Experiment`; errors name ``origin`` and the key at fault."""
    _check_keys(raw, _TOP_KEYS, origin)
    name = raw.get("name", "experiment")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ConfigError(f"{origin}: 'name' must be a non-empty string without slashes, got {name!r}")
    datasets = parse_datasets(raw.get("datasets"), origin)
    backends = _parse_names(raw.get("backends", ["hdf5", "zarr"]), "backends", tuple(BACKENDS), origin)
    codecs = _parse_codecs(raw.get("codecs", "study"), origin)
    chunks = _parse_chunks(raw.get("chunks", ["real_space", "balanced", "single_frame"]), origin)
    runs = _positive_int(raw.get("runs", 3), "runs", origin)
    cache = raw.get("cache", "warm")
    if cache not in CACHE_MODES:
        raise ConfigError(f"{origin}: 'cache' must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
    budget = raw.get("max_cell_seconds")
    if budget is not None and (not isinstance(budget, (int, float)) or isinstance(budget, bool) or budget <= 0):
        raise ConfigError(f"{origin}: 'max_cell_seconds' must be a positive number, got {budget!r}")
    scratch, staging = raw.get("scratch"), raw.get("staging")
    for key, folder in (("scratch", scratch), ("staging", staging)):
        if folder is not None and (not isinstance(folder, str) or not folder):
            raise ConfigError(f"{origin}: {key!r} must be a folder path or null, got {folder!r}")
    layout = raw.get("layout", "auto")
    if layout not in LAYOUTS:
        raise ConfigError(f"{origin}: 'layout' must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    warmup = raw.get("warmup", True)
    if not isinstance(warmup, bool):
        raise ConfigError(f"{origin}: 'warmup' must be true or false, got {warmup!r}")
    representations, targets, sufficiency = parse_sufficiency(raw, origin)
    acquisition = raw.get("acquisition") or {}
    if not isinstance(acquisition, Mapping):
        raise ConfigError(f"{origin}: 'acquisition' must be a mapping of settings, got {acquisition!r}")
    return Experiment(
        name=name,
        datasets=datasets,
        backends=backends,
        codecs=codecs,
        chunks=chunks,
        runs=runs,
        warmup=warmup,
        cache=cache,
        max_cell_seconds=float(budget) if budget is not None else None,
        scratch=scratch,
        staging=staging,
        layout=layout,
        cluster=_parse_cluster(raw.get("cluster") or {}, origin),
        zarr=_parse_zarr(raw.get("zarr") or {}, origin),
        hdf5=_parse_hdf5(raw.get("hdf5") or {}, origin),
        access_patterns=_parse_patterns(raw.get("access_patterns") or [], origin),
        representations=representations,
        targets=targets,
        sufficiency=sufficiency,
        acquisition=dict(acquisition),
        storage=_parse_storages(raw.get("storage", ["local"]), origin),
    )


def _parse_storages(value: Any, origin: str) -> tuple[StorageSpec, ...]:
    """``storage:`` entries, each through :func:`cubebench.storage.parse_storage`; labels must differ."""
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{origin}: 'storage' must be a list of entries such as local or {{kind: s3}}, got {value!r}")
    specs = tuple(parse_storage(entry, f"{origin}: storage[{i}]") for i, entry in enumerate(value))
    labels = [spec.label for spec in specs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f"{origin}: 'storage' has two entries labelled {twice[0]!r}; they must differ")
    return specs


def _check_keys(raw: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(allowed)}")


def _positive_int(value: Any, key: str, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{origin}: {key!r} must be a positive integer, got {value!r}")
    return value


def parse_datasets(value: Any, origin: str) -> tuple[Mapping[str, Any], ...]:
    """Validate an experiment's ``datasets:`` entries (a preset name, a path, or a mapping each)."""
    if value is None:
        raise ConfigError(f"{origin}: 'datasets' is required (a list of presets or paths)")
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{origin}: 'datasets' must be a non-empty list, got {value!r}")
    out: list[Mapping[str, Any]] = []
    for i, entry in enumerate(value):
        where = f"{origin}: datasets[{i}]"
        if isinstance(entry, str):
            entry = {"path": entry} if any(c in entry for c in "/.\\") else {"preset": entry}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a mapping with 'preset' or 'path', got {entry!r}")
        _check_keys(entry, SOURCE_KEYS, where)
        if ("preset" in entry) == ("path" in entry):
            raise ConfigError(f"{where} needs exactly one of 'preset' or 'path'")
        out.append(dict(entry))
    return tuple(out)


def _parse_names(value: Any, key: str, valid: Sequence[str], origin: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = list(valid) if value == "all" else [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{origin}: {key!r} must be a non-empty list, got {value!r}")
    for item in value:
        if item not in valid:
            raise ConfigError(f"{origin}: unknown {key[:-1]} {item!r}; valid: {', '.join(valid)}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{origin}: {key!r} lists a name twice: {value!r}")
    return tuple(value)


def _parse_codecs(value: Any, origin: str) -> tuple[str, ...]:
    from cubebench.codecs import resolve_codecs

    if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
        raise ConfigError(f"{origin}: 'codecs' must be 'all', 'study' or a list of codec ids, got {value!r}")
    return tuple(spec.id for spec in resolve_codecs(value))


def _parse_chunks(value: Any, origin: str) -> tuple[str | tuple[int, ...], ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{origin}: 'chunks' must be a non-empty list, got {value!r}")
    out: list[str | tuple[int, ...]] = []
    for item in value:
        try:
            out.append(parse_chunk(item))
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    labels = [chunk_name(c) for c in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{origin}: 'chunks' lists a chunking twice: {value!r}")
    return tuple(out)


def _parse_patterns(value: Any, origin: str) -> tuple[str, ...]:
    """Access patterns to time after each full read (none by default, for speed)."""
    if isinstance(value, str):
        value = list(PATTERNS) if value == "all" else [value]
    if not isinstance(value, list):
        raise ConfigError(f"{origin}: 'access_patterns' must be a list of {', '.join(PATTERNS)}, got {value!r}")
    for item in value:
        if item not in PATTERNS:
            raise ConfigError(f"{origin}: unknown access pattern {item!r}; valid: {', '.join(PATTERNS)}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{origin}: 'access_patterns' lists a pattern twice: {value!r}")
    return tuple(value)


def _parse_cluster(value: Any, origin: str) -> ClusterSpec:
    where = f"{origin}: cluster"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    _check_keys(value, _CLUSTER_KEYS, where)
    kwargs = dict(value)
    for key in ("workers", "threads_per_worker", "codec_threads", "cores"):
        if key in kwargs:
            _positive_int(kwargs[key], f"cluster.{key}", origin)
    if kwargs.get("jobqueue") is not None and kwargs["jobqueue"] not in JOBQUEUE_KINDS:
        raise ConfigError(f"{where}.jobqueue must be one of {', '.join(JOBQUEUE_KINDS)}, got {kwargs['jobqueue']!r}")
    if kwargs.get("address") and kwargs.get("jobqueue"):
        raise ConfigError(f"{where}: 'address' and 'jobqueue' conflict; give one of them")
    if "processes" in kwargs:
        if not isinstance(kwargs["processes"], bool):
            raise ConfigError(f"{where}.processes must be true or false, got {kwargs['processes']!r}")
        if kwargs.get("address") or kwargs.get("jobqueue"):
            raise ConfigError(f"{where}.processes applies to the local cluster only, not with address or jobqueue")
    address = kwargs.get("address")
    if address is not None and (not isinstance(address, str) or "://" not in address):
        raise ConfigError(f"{where}.address must look like tcp://host:port, got {address!r}")
    if "job_directives" in kwargs:
        directives = kwargs["job_directives"]
        if not isinstance(directives, list) or not all(isinstance(d, str) for d in directives):
            raise ConfigError(f"{where}.job_directives must be a list of strings, got {directives!r}")
        kwargs["job_directives"] = tuple(directives)
    if "timeout" in kwargs and (not isinstance(kwargs["timeout"], (int, float)) or kwargs["timeout"] <= 0):
        raise ConfigError(f"{where}.timeout must be a positive number of seconds, got {kwargs['timeout']!r}")
    _check_jobqueue_values(kwargs, where)
    return ClusterSpec(**kwargs)


_WALLTIME = re.compile(r"(\d+-)?\d{1,3}(:\d{2}){0,2}")


def _check_jobqueue_values(kwargs: dict[str, Any], where: str) -> None:
    """Strings where strings belong, sizes and walltimes that a batch system takes; threads = cores for jobs."""
    from dask.utils import parse_bytes

    for key in ("memory_limit", "memory", "walltime", "queue", "interface", "local_directory", "log_directory"):
        if kwargs.get(key) is not None and (not isinstance(kwargs[key], str) or not kwargs[key]):
            raise ConfigError(f"{where}.{key} must be a non-empty string, got {kwargs[key]!r}")
    for key in ("memory", "memory_limit"):
        if isinstance(kwargs.get(key), str) and kwargs[key] != "auto":
            try:
                parse_bytes(kwargs[key])
            except (ValueError, TypeError):
                raise ConfigError(f"{where}.{key} must be a size like '4GiB', got {kwargs[key]!r}") from None
    if "walltime" in kwargs and not _WALLTIME.fullmatch(kwargs["walltime"]):
        raise ConfigError(f"{where}.walltime must look like HH:MM:SS (or D-HH:MM:SS), got {kwargs['walltime']!r}")
    if kwargs.get("jobqueue"):
        # each job runs one worker process with `cores` threads: threads_per_worker follows cores
        threads, cores = kwargs.get("threads_per_worker"), kwargs.get("cores", 1)
        if threads is not None and threads != cores:
            raise ConfigError(
                f"{where}: threads_per_worker ({threads}) and cores ({cores}) conflict with jobqueue: each job "
                f"runs one worker with `cores` threads; give cores only"
            )
        kwargs["threads_per_worker"] = cores


def _parse_zarr(value: Any, origin: str) -> ZarrSettings:
    where = f"{origin}: zarr"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    _check_keys(value, _ZARR_KEYS, where)
    for key in ("write_empty_chunks", "shards"):
        if key in value and not isinstance(value[key], bool):
            raise ConfigError(f"{where}.{key} must be true or false, got {value[key]!r}")
    if "concurrency" in value:
        _positive_int(value["concurrency"], "zarr.concurrency", origin)
    if "codec_pipeline" in value and value["codec_pipeline"] not in PIPELINES:
        raise ConfigError(
            f"{where}.codec_pipeline: unknown pipeline {value['codec_pipeline']!r}; valid: {', '.join(PIPELINES)}"
        )
    return ZarrSettings(**value)


def _parse_hdf5(value: Any, origin: str) -> HDF5Settings:
    """``hdf5: {page_size: 4MiB}``: the page size in bytes or as a size string; 0 (or absent) leaves paging off."""
    from dask.utils import parse_bytes

    where = f"{origin}: hdf5"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    _check_keys(value, _HDF5_KEYS, where)
    size = value.get("page_size", 0)
    try:
        if isinstance(size, bool) or not isinstance(size, (int, str)):
            raise TypeError
        pages = parse_bytes(size) if isinstance(size, str) else size
    except (ValueError, TypeError):
        raise ConfigError(f"{where}.page_size must be a size like '4MiB' or a number of bytes, got {size!r}") from None
    low, high = PAGE_SIZES
    if pages and not low <= pages <= high:
        raise ConfigError(f"{where}.page_size must be 0 (off) or between {low} bytes and 1GiB, got {size!r}")
    return HDF5Settings(page_size=int(pages))
