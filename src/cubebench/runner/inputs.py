"""What a user hands ``run`` and ``plan``: an experiment (a file, a mapping, an object), or a data file or store.

A data file gets the quick experiment's matrix (``cubebench run scan.emd``); a path is an experiment when its
suffix says so (``.yaml``, ``.yml``) or when it is a small text file no source recognises, and a data source when
the sources' registry recognises it (:func:`cubebench.sources.source_kind`). Anything else is one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cubebench.errors import ConfigError
from cubebench.experiment import (
    Experiment,
    default_experiment_path,
    load_experiment,
    override_experiment,
    parse_datasets,
    parse_experiment,
)
from cubebench.sources import source_kind

#: Suffixes of experiment files; any other path given to ``run`` or ``plan`` is first tried as a data source.
EXPERIMENT_SUFFIXES = (".yaml", ".yml")
#: What a data source may be, for messages.
SOURCE_DESCRIPTION = "a data file (EMD/HDF5, a Zarr store, .npy, or .mib with a scan shape)"


def coerce_experiment(
    experiment: Experiment | Mapping[str, Any] | str | os.PathLike[str] | None,
    *,
    dataset: str | None = None,
    scan_shape: Sequence[int] | None = None,
    **overrides: Any,
) -> Experiment:
    """Accept an Experiment, a mapping, a YAML path, a data file or store (the quick experiment's matrix on it), or
    None (the shipped quick experiment); ``overrides`` (codecs, backends, chunks, runs) replace its values and
    ``dataset``/``scan_shape`` describe a data file (see :func:`cubebench.experiment.experiment_from_path`)."""
    if isinstance(experiment, (str, os.PathLike)):
        return experiment_from_path(experiment, dataset=dataset, scan_shape=scan_shape, **overrides)
    check_no_source_options("the quick experiment" if experiment is None else "the experiment", dataset, scan_shape)
    if experiment is None:
        exp = load_experiment(default_experiment_path())
    elif isinstance(experiment, Mapping):
        exp = parse_experiment(experiment)
    else:
        exp = experiment
    return override_experiment(exp, **overrides)


def experiment_for_source(
    path: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    scan_shape: Sequence[int] | None = None,
    template: Experiment | None = None,
    **overrides: Any,
) -> Experiment:
    """The quick experiment's matrix (or ``template``'s) on one data file or store: ``datasets: [{path: ...}]``.

    Parameters
    ----------
    path
        An EMD/HDF5 file, a Zarr store, a ``.npy`` or a ``.mib`` file; opened only when the experiment runs.
    dataset, scan_shape
        The in-file path of the array (HDF5/Zarr with several), the scan shape of a 3-D frame stack (``.mib``).
    template
        Backends, codecs, chunks, runs and cluster to use (default: the shipped quick experiment).
    **overrides
        ``codecs``, ``backends``, ``chunks``, ``runs``: see :func:`override_experiment`.

    Returns
    -------
    Experiment
        Named after the file's stem, so that its results go to ``results/<stem>`` by default.
    """
    base = template if template is not None else load_experiment(default_experiment_path())
    entry: dict[str, Any] = {"path": os.fspath(path)}
    if dataset is not None:
        entry["dataset"] = dataset
    if scan_shape is not None:
        try:
            entry["scan_shape"] = [int(v) for v in scan_shape]
        except (TypeError, ValueError):
            where = os.fspath(path)
            raise ConfigError(f"{where}: scan_shape must be two positive integers, got {scan_shape!r}") from None
    stem = Path(os.fspath(path).rstrip("/")).stem
    exp = replace(base, name=stem or "data", datasets=parse_datasets([entry], os.fspath(path)))
    return override_experiment(exp, **overrides)


def experiment_from_path(
    path: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    scan_shape: Sequence[int] | None = None,
    **overrides: Any,
) -> Experiment:
    """An experiment file, or the quick matrix on a data file, as the path shows; overrides applied.

    Parameters
    ----------
    path
        A ``.yaml``/``.yml`` experiment, or a data file or store; a text file with another suffix that no source
        recognises is read as an experiment too.
    dataset, scan_shape
        For a data file: see :func:`experiment_for_source`.
    **overrides
        ``codecs``, ``backends``, ``chunks``, ``runs``: see :func:`override_experiment`.

    Raises
    ------
    ConfigError
        ``path`` is neither an experiment nor a data source, or a value is bad (the message names it).
    """
    if os.fspath(path).startswith("s3://"):  # an object on S3 (cubebench.sources.s3): never a Path
        return experiment_for_source(path, dataset=dataset, scan_shape=scan_shape, **overrides)
    p = Path(os.fspath(path))
    if p.suffix.lower() not in EXPERIMENT_SUFFIXES:
        if source_kind(p) is not None:  # what open_cube would open it as, from the sources' registry
            return experiment_for_source(p, dataset=dataset, scan_shape=scan_shape, **overrides)
        if not p.exists():
            raise ConfigError(f"{p}: file not found; expected an experiment (.yaml) or {SOURCE_DESCRIPTION}")
        if p.is_dir():
            raise ConfigError(f"{p}: a directory that is not a Zarr store; expected {SOURCE_DESCRIPTION}")
        if not _is_text(p):
            raise ConfigError(f"{p}: not a data file cubebench reads; expected {SOURCE_DESCRIPTION} or an experiment")
    check_no_source_options(p, dataset, scan_shape)
    return override_experiment(load_experiment(p), **overrides)


def check_no_source_options(where: str | os.PathLike[str], dataset: Any, scan_shape: Any) -> None:
    """Raise :class:`ConfigError` if ``dataset`` or ``scan_shape`` is given for an experiment (not a data file)."""
    given = [key for key, value in (("dataset", dataset), ("scan_shape", scan_shape)) if value is not None]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(
            f"{os.fspath(where)}: {' and '.join(given)} {verb} to a data file, not to an experiment; "
            f"set {'it' if len(given) == 1 else 'them'} in the experiment's datasets entries"
        )


def _is_text(path: Path) -> bool:
    """False for a file over 1 MiB or one that is not UTF-8 text: no experiment; True if it cannot be read (the
    experiment reader then says why)."""
    try:
        if path.stat().st_size > 2**20:
            return False
        data = path.read_bytes()
    except OSError:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data
