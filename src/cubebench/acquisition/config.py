"""The ``acquisition:`` section of an experiment, validated into a frozen :class:`AcquisitionOptions`.

::

    acquisition:
      frame_rate: 4000          # Hz (a number or a list); or data_rate: 2GB/s (bytes per second, or a list)
      buffer_limit: 512MiB      # the detector computer's buffer: frames (an integer) or bytes ("512MiB")
      duration: 10              # seconds of acquisition at most (default: the whole scan once)
      frames: null              # or a number of frames at most
      backends: [hdf5_direct, zarr_direct]
      codecs: [blosc-lz4]
      chunks: [single_frame, real_space]
      representations: [events, bin2-sum]   # also stored on the fly, each with every codec (default: none)
      drain_seconds: 1.0        # kept up = the backlog drains within this after the last frame (and is bounded)
      sync_interval: 0.05       # hdf5_direct: the writer commits durability (flush + fsync) at most this often
      tick: 0.005               # the pacer's release step, seconds (frames due are released together)
      dispatch: stream          # stream: one long task per worker thread follows the pacer (default);
                                # tasks: a cluster task per batch of completed chunks
      task_seconds: 0.02        # tasks dispatch: completed chunks wait at most this long to share one task
      workers: [1, 2]           # run every cell with each worker count (default: the cluster's); checks the
                                # model's linear scaling in cores (cubebench feasibility reports it)
      trials: 7                 # --find-max: at most this many paced trials per cell
      min_seconds: 2.0          # --find-max: a trial lasts at least this long when the source has the frames

Every mistake is one :class:`~cubebench.errors.ConfigError` naming the key and the value. Checks that need the
cube (a ``buffer_limit`` smaller than one chunk's buffer) are made by :mod:`cubebench.acquisition.run` before
any work starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cubebench.backends import BACKENDS
from cubebench.chunking import chunk_name, parse_chunk
from cubebench.codecs import get_codec
from cubebench.errors import CodecUnavailableError, ConfigError

__all__ = ["ACQUISITION_BACKENDS", "DISPATCHES", "AcquisitionOptions", "parse_acquisition", "parse_bytes"]

#: How completed chunks reach the workers: ``stream`` (one long-running task per worker thread follows the pacer,
#: :mod:`cubebench.acquisition.stream`) or ``tasks`` (a cluster task per batch of completed chunks).
DISPATCHES = ("stream", "tasks")

#: Backends with a paced writer (:mod:`cubebench.acquisition.writers`).
ACQUISITION_BACKENDS = ("hdf5_direct", "zarr_direct")

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: Any, key: str, per_second: bool = False) -> float:
    """``"2GB/s"``, ``"512MiB"`` or a plain number as bytes (per second with ``per_second``).

    Examples
    --------
    >>> parse_bytes("2GB/s", "data_rate", per_second=True), parse_bytes("1KiB", "buffer_limit")
    (2000000000.0, 1024.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if per_second:
            if not text.lower().endswith("/s"):
                raise ConfigError(f"acquisition.{key} must be a rate like '2GB/s', got {value!r}")
            text = text[:-2]
        match = _SIZE.match(text)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ConfigError(f"acquisition.{key} must be a size like '512MiB' or '2GB', got {value!r}")
        number = float(match.group(1)) * _UNITS[unit]
    else:
        raise ConfigError(f"acquisition.{key} must be a number or a size like '2GB', got {value!r}")
    if not number > 0:
        raise ConfigError(f"acquisition.{key} must be greater than 0, got {value!r}")
    return number


@dataclass(frozen=True)
class AcquisitionOptions:
    """How frames are released and stored in a paced acquisition (see the module docstring for each key)."""

    #: Requested frame rates (Hz); empty when the rates are given as data rates.
    frame_rates: tuple[float, ...] = ()
    #: Requested data rates (bytes per second of raw frames); converted with the cube's frame size.
    data_rates: tuple[float, ...] = ()
    #: The buffer limit and its unit (``"frames"`` or ``"bytes"``), or None for no limit.
    buffer_limit: float | None = None
    buffer_unit: str = "frames"
    duration: float | None = None
    frames: int | None = None
    backends: tuple[str, ...] = ACQUISITION_BACKENDS
    codecs: tuple[str, ...] = ("blosc-lz4",)
    chunks: tuple[str | tuple[int, ...], ...] = ("single_frame",)
    representations: tuple[str, ...] = ()
    drain_seconds: float = 1.0
    sync_interval: float = 0.05
    tick: float = 0.005
    task_seconds: float = 0.02
    #: How completed chunks reach the workers: ``stream`` or ``tasks`` (see :data:`DISPATCHES`).
    dispatch: str = "stream"
    trials: int = 7
    min_seconds: float = 2.0
    #: Worker counts to run every cell with (empty: the cluster's own).
    workers: tuple[int, ...] = ()

    @property
    def chunk_labels(self) -> tuple[str, ...]:
        """The chunk choices as results name them."""
        return tuple(chunk_name(c) for c in self.chunks)

    def rates_hz(self, frame_bytes: int) -> tuple[float, ...]:
        """Every requested rate as frames per second, for frames of ``frame_bytes``."""
        return self.frame_rates or tuple(rate / frame_bytes for rate in self.data_rates)

    def buffer_frames(self, frame_bytes: int) -> float | None:
        """The buffer limit in frames (bytes are divided by the frame size, rounded down)."""
        if self.buffer_limit is None:
            return None
        return self.buffer_limit if self.buffer_unit == "frames" else float(self.buffer_limit // frame_bytes)


_KEYS = (
    "frame_rate",
    "data_rate",
    "buffer_limit",
    "duration",
    "frames",
    "backends",
    "codecs",
    "chunks",
    "representations",
    "drain_seconds",
    "sync_interval",
    "tick",
    "task_seconds",
    "dispatch",
    "trials",
    "min_seconds",
    "workers",
)


def parse_acquisition(raw: Mapping[str, Any] | None) -> AcquisitionOptions:
    """Validate an ``acquisition:`` mapping; a missing section is an error (there is nothing to acquire)."""
    if not raw:
        raise ConfigError("the experiment has no 'acquisition:' section (frame_rate or data_rate, backends, ...)")
    for key in raw:
        if key not in _KEYS:
            raise ConfigError(f"acquisition: unknown key {key!r}; valid keys: {', '.join(_KEYS)}")
    if ("frame_rate" in raw) == ("data_rate" in raw):
        raise ConfigError("acquisition: give exactly one of 'frame_rate' (Hz) or 'data_rate' (e.g. '2GB/s')")
    frame_rates = tuple(_positive(v, "frame_rate") for v in _items(raw.get("frame_rate", [])))
    data_rates = tuple(parse_bytes(v, "data_rate", per_second=True) for v in _items(raw.get("data_rate", [])))
    if not frame_rates and not data_rates:
        raise ConfigError("acquisition: the list of rates is empty")
    limit, unit = _buffer_limit(raw.get("buffer_limit"))
    duration = raw.get("duration")
    frames = raw.get("frames")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ConfigError(f"acquisition.frames must be a positive integer, got {frames!r}")
    trials = raw.get("trials", 7)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 2:
        raise ConfigError(f"acquisition.trials must be an integer of at least 2, got {trials!r}")
    return AcquisitionOptions(
        frame_rates=frame_rates,
        data_rates=data_rates,
        buffer_limit=limit,
        buffer_unit=unit,
        duration=_positive(duration, "duration") if duration is not None else None,
        frames=frames,
        backends=_backends(raw.get("backends", list(ACQUISITION_BACKENDS))),
        codecs=_codecs(raw.get("codecs", ["blosc-lz4"])),
        chunks=tuple(parse_chunk(c) for c in _items(raw.get("chunks", ["single_frame"]))),
        representations=_representations(raw.get("representations", [])),
        drain_seconds=_positive(raw.get("drain_seconds", 1.0), "drain_seconds"),
        sync_interval=_positive(raw.get("sync_interval", 0.05), "sync_interval"),
        tick=_positive(raw.get("tick", 0.005), "tick"),
        task_seconds=_positive(raw.get("task_seconds", 0.02), "task_seconds"),
        dispatch=_dispatch(raw.get("dispatch", "stream")),
        trials=trials,
        min_seconds=_positive(raw.get("min_seconds", 2.0), "min_seconds"),
        workers=_workers(raw.get("workers", [])),
    )


def _dispatch(value: Any) -> str:
    if value not in DISPATCHES:
        raise ConfigError(f"acquisition.dispatch must be one of {', '.join(DISPATCHES)}, got {value!r}")
    return str(value)


def _workers(value: Any) -> tuple[int, ...]:
    counts = tuple(_items(value))
    for n in counts:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"acquisition.workers must be positive integers (worker counts), got {n!r}")
    if len(set(counts)) != len(counts):
        raise ConfigError(f"acquisition.workers lists a count twice: {list(counts)}")
    return counts


def _items(value: Any) -> list[Any]:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    return [value]


def _positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"acquisition.{key} must be a number greater than 0, got {value!r}")
    return float(value)


def _buffer_limit(value: Any) -> tuple[float | None, str]:
    if value is None:
        return None, "frames"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"acquisition.buffer_limit must be a positive number of frames, got {value!r}")
        return float(value), "frames"
    return parse_bytes(value, "buffer_limit"), "bytes"


def _backends(value: Any) -> tuple[str, ...]:
    names = tuple(_items(value))
    for name in names:
        if name not in BACKENDS:
            raise ConfigError(
                f"acquisition.backends: unknown backend {name!r}; valid: {', '.join(ACQUISITION_BACKENDS)}"
            )
        if name not in ACQUISITION_BACKENDS:
            raise ConfigError(
                f"acquisition.backends: {name!r} has no paced writer; valid: {', '.join(ACQUISITION_BACKENDS)}"
            )
    if not names:
        raise ConfigError("acquisition.backends is empty")
    return names


def _codecs(value: Any) -> tuple[str, ...]:
    names = tuple(_items(value))
    for name in names:
        try:
            get_codec(name)
        except CodecUnavailableError as exc:
            raise ConfigError(f"acquisition.codecs: {exc}") from None
    if not names:
        raise ConfigError("acquisition.codecs is empty")
    return names


def _representations(value: Any) -> tuple[str, ...]:
    """Reduced representations run as pipelines: ``bin<k>-sum``, ``bin<k>-mean``, ``events``."""
    from cubebench.sufficiency.representations import get_representation

    names = tuple(_items(value))
    for name in names:
        try:
            family = get_representation(name).family
        except ConfigError as exc:
            raise ConfigError(f"acquisition.representations: {exc}") from None
        if family not in ("bin", "events"):
            raise ConfigError(
                f"acquisition.representations: {name!r} is not a pipeline; valid: events, bin<k>-sum, bin<k>-mean"
            )
    return names
