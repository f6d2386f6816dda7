"""The experiment keys of the inference-sufficiency study: ``representations``, ``targets`` and ``sufficiency``.

::

    representations: [blosc-zstd, events, bin2-sum, bin4-mean, crop-0.5, uint8-sat, zfp-acc-4, sz3-abs-4]
    targets: {bf: {outer: 20}, adf: {inner: 40, outer: 100}, com: {}, mean_pattern: {}}
    sufficiency:
      codec: blosc-zstd       # the lossless codec that stores reduced forms (bin, crop, uint8, events)
      mrad_per_pixel: null    # detector calibration, needed when a target gives radii in mrad
      chunk: null             # [cy, cx] probe positions per stored chunk (default: about 8 MiB of frames)
      target: bf              # the question the report answers: smallest representation keeping
      tolerance: 0.01         #   this target's error within this tolerance,
      metric: rel_l2          #   measured with this metric (psnr: the tolerance is a minimum, in dB)

Validation names the culprit of every mistake (:class:`~cubebench.errors.ConfigError`), before any work starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cubebench.errors import ConfigError
from cubebench.sufficiency.representations import DEFAULT_STORAGE_CODEC, resolve_representations
from cubebench.sufficiency.targets import METRICS, TARGETS, parse_targets

__all__ = ["SUFFICIENCY_KEYS", "SufficiencyOptions", "parse_sufficiency"]


@dataclass(frozen=True)
class SufficiencyOptions:
    """How representations are stored and which question the report answers (see the module docstring)."""

    codec: str = DEFAULT_STORAGE_CODEC
    mrad_per_pixel: float | None = None
    chunk: tuple[int, int] | None = None
    target: str | None = None
    tolerance: float = 0.01
    metric: str = "rel_l2"


SUFFICIENCY_KEYS = tuple(SufficiencyOptions.__dataclass_fields__)


def parse_sufficiency(
    raw: Mapping[str, Any], origin: str = "experiment"
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]], SufficiencyOptions]:
    """Validate the ``representations``, ``targets`` and ``sufficiency`` keys of an experiment mapping.

    Returns ``(representation ids, targets by name, options)``; no representations means no sufficiency study.
    Given representations without targets, every target is computed with its defaults.
    """
    reps_raw = raw.get("representations")
    empty = reps_raw is None or (isinstance(reps_raw, list) and not reps_raw)
    reps: tuple[str, ...] = () if empty else resolve_representations(reps_raw or (), f"{origin}: representations")
    targets = parse_targets(raw.get("targets"), origin)
    opts_raw = raw.get("sufficiency") or {}
    if not reps and targets:
        raise ConfigError(f"{origin}: 'targets' needs 'representations' (the list of representations to score)")
    if reps and not targets:
        targets = {name: {} for name in TARGETS}
    options = _parse_options(opts_raw, targets, origin)
    if options.mrad_per_pixel is None:
        in_mrad = [name for name, params in targets.items() if params.get("units") == "mrad"]
        if in_mrad:
            raise ConfigError(f"{origin}: targets.{in_mrad[0]} gives radii in mrad; set sufficiency.mrad_per_pixel")
    return reps, targets, options


def _parse_options(value: Any, targets: Mapping[str, Any], origin: str) -> SufficiencyOptions:
    where = f"{origin}: sufficiency"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    for key in value:
        if key not in SUFFICIENCY_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(SUFFICIENCY_KEYS)}")
    kwargs = dict(value)
    if "codec" in kwargs:
        from cubebench.codecs import get_codec

        if not isinstance(kwargs["codec"], str):
            raise ConfigError(f"{where}.codec must be a codec id, got {kwargs['codec']!r}")
        get_codec(kwargs["codec"])
    scale = kwargs.get("mrad_per_pixel")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0):
        raise ConfigError(f"{where}.mrad_per_pixel must be a positive number or null, got {scale!r}")
    chunk = kwargs.get("chunk")
    if chunk is not None:
        if (
            not isinstance(chunk, (list, tuple))
            or len(chunk) != 2
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in chunk)
        ):
            raise ConfigError(f"{where}.chunk must be [cy, cx], two positive integers (probe positions), got {chunk!r}")
        kwargs["chunk"] = (int(chunk[0]), int(chunk[1]))
    target = kwargs.get("target")
    if target is not None and target not in targets:
        raise ConfigError(f"{where}.target {target!r} is not among the targets: {', '.join(targets) or 'none'}")
    tolerance = kwargs.get("tolerance", 0.01)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ConfigError(f"{where}.tolerance must be a non-negative number, got {tolerance!r}")
    kwargs["tolerance"] = float(tolerance)
    if kwargs.get("metric", "rel_l2") not in METRICS:
        raise ConfigError(f"{where}.metric: unknown metric {kwargs['metric']!r}; valid: {', '.join(METRICS)}")
    return SufficiencyOptions(**kwargs)
