"""Inference targets: the quantities scientists compute from a 4D-STEM cube, and how far a representation moves them.

A representation (see :mod:`cubebench.sufficiency.representations`) is judged by the science it still supports,
not by its bytes alone. Four targets are computed frame by frame, out-of-core, on the source and on every
representation:

- ``bf``: virtual bright-field image, the sum over a detector disk ``inner <= r <= outer`` (inner 0);
- ``adf``: annular dark-field image, the sum over an annulus ``inner <= r <= outer``;
- ``com``: centre-of-mass shift maps (DPC), both components ``(y, x)``, in source detector pixels from the centre;
- ``mean_pattern``: the mean diffraction pattern, in source detector pixels and counts per pixel.

Radii are in source detector pixels (``units: px``, the default) or in mrad (``units: mrad``, with a
``mrad_per_pixel`` calibration). Defaults follow the detector size and fit the synthetic ``4d_diff`` preset
(central disk radius ``d/16``, aperture radius ``0.412 d``, ``d`` the smaller detector side): ``bf`` outer
``0.078 d`` (disk plus descan margin), ``adf`` ``0.156 d`` to ``0.39 d`` (inside the aperture), ``com`` within
the same disk as ``bf`` (the BF disk's shift, as DPC on a pixelated detector measures it; the whole detector
would let a few hot pixels dominate); a larger ``outer`` widens it (YAML ``.inf``: the whole detector).

A representation that bins or crops the detector is evaluated in *its own* detector geometry
(:class:`DetectorGeometry`): pixel centres are mapped to source pixel coordinates, so radii scale by the bin
factor and the centre moves with the crop, and its intensities are rescaled to counts (mean binning: times the
bin area). The mean pattern is spread back onto the source pixels (evenly over each bin), so its error also
shows the lost detector resolution.

Error metrics against the source quantity: ``rel_l2`` (``||q - q0|| / ||q0||``), ``max_abs`` (in the target's
units) and ``psnr`` (dB, peak = the source quantity's range; higher is better).

Examples
--------
>>> geometry = DetectorGeometry.identity((8, 8))
>>> targets = resolve_targets({"bf": {"outer": 2.2}}, (8, 8))
>>> frames = np.ones((1, 1, 8, 8))
>>> q = block_quantities(frames, geometry, targets)
>>> float(q["bf"][0, 0])   # the central 4 x 4 pixels
16.0
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cubebench.errors import ConfigError

__all__ = [
    "METRICS",
    "TARGETS",
    "DetectorGeometry",
    "Target",
    "block_quantities",
    "error_metrics",
    "finish_quantities",
    "parse_targets",
    "resolve_targets",
]

#: Target name -> one line saying what it is (the keys are the valid names).
TARGETS: dict[str, str] = {
    "bf": "virtual bright-field image: counts summed over a detector disk (inner 0 to outer)",
    "adf": "annular dark-field image: counts summed over a detector annulus (inner to outer)",
    "com": "centre-of-mass shift maps (DPC), both components, in source detector pixels",
    "mean_pattern": "mean diffraction pattern over all probe positions, counts per source detector pixel",
}

#: Metric name -> (one line, True if larger is better).
METRICS: dict[str, tuple[str, bool]] = {
    "rel_l2": ("relative L2 error ||q - q0|| / ||q0|| (0 = exact)", False),
    "max_abs": ("maximum absolute error, in the target's units", False),
    "psnr": ("peak signal-to-noise ratio in dB, peak = range of the source quantity (inf = exact)", True),
}

#: Parameters each target accepts.
_TARGET_KEYS: dict[str, tuple[str, ...]] = {
    "bf": ("inner", "outer", "units", "center"),
    "adf": ("inner", "outer", "units", "center"),
    "com": ("outer", "units", "center"),
    "mean_pattern": (),
}

#: Default radii as fractions of the smaller detector side (see the module docstring).
_DEFAULT_FRACTIONS: dict[str, dict[str, float]] = {
    "bf": {"inner": 0.0, "outer": 0.078},
    "adf": {"inner": 0.156, "outer": 0.39},
    "com": {"inner": 0.0, "outer": 0.078},
}

UNITS = ("px", "mrad")


# ----------------------------------------------------------------------------------------------------------------
# configuration


def parse_targets(raw: Any, origin: str = "experiment") -> dict[str, dict[str, Any]]:
    """Validate a ``targets:`` mapping (name -> parameters or null); return it as plain dicts.

    Only names and parameter types are checked here; detector-dependent defaults are filled in by
    :func:`resolve_targets` once the detector is known.

    Raises
    ------
    ConfigError
        An unknown target or parameter (the message names it and lists the valid ones), or a bad value.
    """
    if raw is None:
        return {}
    if isinstance(raw, str):
        raw = list(TARGETS) if raw == "all" else [raw]
    if isinstance(raw, list):
        raw = dict.fromkeys(raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: 'targets' must be a mapping of target names to parameters, got {raw!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, params in raw.items():
        if name not in TARGETS:
            raise ConfigError(f"{origin}: unknown target {name!r}; valid: {', '.join(TARGETS)}")
        params = {} if params is None else params
        where = f"{origin}: targets.{name}"
        if not isinstance(params, Mapping):
            raise ConfigError(f"{where} must be a mapping of parameters, got {params!r}")
        for key in params:
            if key not in _TARGET_KEYS[name]:
                valid = ", ".join(_TARGET_KEYS[name]) or "none"
                raise ConfigError(f"{where}: unknown parameter {key!r}; valid: {valid}")
        clean = dict(params)
        for key in ("inner", "outer"):
            value = clean.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"{where}.{key} must be a non-negative number, got {value!r}")
        if "inner" in clean and "outer" in clean and clean["outer"] < clean["inner"]:
            raise ConfigError(f"{where}: outer {clean['outer']} is smaller than inner {clean['inner']}")
        if clean.get("units", "px") not in UNITS:
            raise ConfigError(f"{where}.units must be one of {', '.join(UNITS)}, got {clean['units']!r}")
        center = clean.get("center")
        if center is not None and (
            not isinstance(center, (list, tuple))
            or len(center) != 2
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in center)
        ):
            raise ConfigError(f"{where}.center must be [cy, cx] in source detector pixels, got {center!r}")
        if center is not None:
            clean["center"] = [float(c) for c in center]
        out[str(name)] = clean
    return out


@dataclass(frozen=True)
class Target:
    """One target with every parameter resolved for a detector: radii in source pixels, centre in source pixels."""

    name: str
    inner: float = 0.0
    outer: float = math.inf
    center: tuple[float, float] = (0.0, 0.0)
    #: The parameters as given (units and all), for provenance.
    given: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the results' provenance: resolved radii (px), centre, and what was given."""
        return {
            "inner_px": self.inner,
            "outer_px": None if math.isinf(self.outer) else self.outer,
            "center_px": list(self.center),
            "given": dict(self.given),
            "description": TARGETS[self.name],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as one JSON string."""
        return json.dumps(self.to_dict())


def resolve_targets(
    targets: Mapping[str, Mapping[str, Any]] | Sequence[str],
    detector: tuple[int, int],
    mrad_per_pixel: float | None = None,
) -> tuple[Target, ...]:
    """Fill in detector-dependent defaults and convert mrad to source pixels.

    Parameters
    ----------
    targets
        Validated parameters by target name (from :func:`parse_targets`), or just names (all defaults).
    detector
        The source detector shape ``(det_y, det_x)``.
    mrad_per_pixel
        Calibration of the source detector; required when a target gives ``units: mrad``.
    """
    if not isinstance(targets, Mapping):
        targets = {name: {} for name in targets}
    targets = parse_targets(dict(targets), "targets")
    dy, dx = (int(d) for d in detector)
    side = min(dy, dx)
    out = []
    for name, params in targets.items():
        scale = 1.0
        if params.get("units", "px") == "mrad":
            if mrad_per_pixel is None or not mrad_per_pixel > 0:
                raise ConfigError(f"target {name!r} gives radii in mrad: set sufficiency.mrad_per_pixel (> 0)")
            scale = 1.0 / float(mrad_per_pixel)
        center = params.get("center") or ((dy - 1) / 2, (dx - 1) / 2)
        defaults = _DEFAULT_FRACTIONS.get(name, {})
        inner = params.get("inner")
        outer = params.get("outer")
        inner_px = float(inner) * scale if inner is not None else defaults.get("inner", 0.0) * side
        outer_px = float(outer) * scale if outer is not None else defaults.get("outer", math.inf) * side
        given = tuple(sorted((k, v) for k, v in params.items()))
        out.append(Target(name, inner_px, outer_px, (float(center[0]), float(center[1])), given))
    return tuple(out)


# ----------------------------------------------------------------------------------------------------------------
# geometry


@dataclass(frozen=True)
class DetectorGeometry:
    """Where a stored detector's pixels sit on the source detector, and what one stored unit is in counts.

    Stored pixel ``(j, i)`` covers source pixels ``offset + bin * (j, i)`` to ``offset + bin * (j, i) + bin - 1``
    and its centre is at source coordinate ``offset + bin * (j, i) + (bin - 1) / 2``. ``scale`` converts stored
    values to counts (a mean-binned pixel holds ``counts / bin**2``, so ``scale = bin**2``).
    """

    shape: tuple[int, int]
    source_shape: tuple[int, int]
    bin: int = 1
    offset: tuple[int, int] = (0, 0)
    scale: float = 1.0

    @classmethod
    def identity(cls, detector: tuple[int, int]) -> DetectorGeometry:
        """The source detector itself."""
        shape = (int(detector[0]), int(detector[1]))
        return cls(shape, shape)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Source-pixel coordinates of the stored pixel centres, ``(ys, xs)`` (1-D each)."""
        half = (self.bin - 1) / 2
        ys = self.offset[0] + self.bin * np.arange(self.shape[0], dtype=np.float64) + half
        xs = self.offset[1] + self.bin * np.arange(self.shape[1], dtype=np.float64) + half
        return ys, xs

    def to_source(self, pattern: np.ndarray) -> np.ndarray:
        """A pattern in this geometry (stored units) as counts on the source detector (spread evenly per bin)."""
        counts = np.asarray(pattern, dtype=np.float64) * (self.scale / self.bin**2)
        if self.bin > 1:
            counts = np.repeat(np.repeat(counts, self.bin, axis=-2), self.bin, axis=-1)
        out = np.zeros((*counts.shape[:-2], *self.source_shape), dtype=np.float64)
        oy, ox = self.offset
        h = min(counts.shape[-2], self.source_shape[0] - oy)
        w = min(counts.shape[-1], self.source_shape[1] - ox)
        out[..., oy : oy + h, ox : ox + w] = counts[..., :h, :w]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain form for provenance."""
        return {
            "shape": list(self.shape),
            "source_shape": list(self.source_shape),
            "bin": self.bin,
            "offset": list(self.offset),
            "scale": self.scale,
        }


# ----------------------------------------------------------------------------------------------------------------
# computing targets


def _weights(geometry: DetectorGeometry, targets: Sequence[Target]) -> tuple[np.ndarray, dict[str, slice]]:
    """Columns of one weight matrix (stored pixels x k) giving every frame-wise target by one product."""
    ys, xs = geometry.coordinates()
    columns: list[np.ndarray] = []
    where: dict[str, slice] = {}
    for target in targets:
        if target.name == "mean_pattern":
            continue
        dy = ys[:, None] - target.center[0]
        dx = xs[None, :] - target.center[1]
        r = np.hypot(dy, dx)
        mask = ((r >= target.inner) & (r <= target.outer)).astype(np.float64)
        start = len(columns)
        if target.name == "com":
            columns += [mask * dy, mask * dx, mask]
        else:
            columns.append(mask)
        where[target.name] = slice(start, len(columns))
    if not columns:
        return np.zeros((geometry.shape[0] * geometry.shape[1], 0)), where
    return np.stack([c.ravel() for c in columns], axis=1), where


def block_quantities(block: np.ndarray, geometry: DetectorGeometry, targets: Sequence[Target]) -> dict[str, np.ndarray]:
    """Frame-wise partial results of every target for one block ``(ny, nx, h, w)`` in ``geometry``.

    Returns ``bf`` / ``adf`` images ``(ny, nx)`` in counts, ``com`` as ``(ny, nx, 3)`` (weighted sums of the
    y and x offsets and the total, in counts; :func:`finish_quantities` divides), and ``mean_pattern`` as the sum
    of the block's frames ``(h, w)`` in stored units. Computed in float64.
    """
    if block.ndim != 4 or tuple(block.shape[2:]) != tuple(geometry.shape):
        raise ValueError(f"block of shape {block.shape} does not match the detector geometry {geometry.shape}")
    ny, nx, h, w = block.shape
    frames = np.asarray(block, dtype=np.float64).reshape(ny * nx, h * w)
    weights, where = _weights(geometry, targets)
    products = frames @ weights * geometry.scale if weights.shape[1] else np.zeros((ny * nx, 0))
    out: dict[str, np.ndarray] = {}
    for target in targets:
        if target.name == "mean_pattern":
            out["mean_pattern"] = frames.sum(axis=0).reshape(h, w)
        elif target.name == "com":
            out["com"] = products[:, where["com"]].reshape(ny, nx, 3)
        else:
            out[target.name] = products[:, where[target.name]].reshape(ny, nx)
    return out


def finish_quantities(
    partials: Mapping[str, np.ndarray], geometry: DetectorGeometry, n_frames: int
) -> dict[str, np.ndarray]:
    """Turn assembled partial results into the targets: COM divided by the total (0 where a frame is empty),
    the mean pattern averaged and spread onto the source detector."""
    out: dict[str, np.ndarray] = {}
    for name, value in partials.items():
        if name == "com":
            total = value[..., 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                com = value[..., :2] / total[..., None]
            out[name] = np.where(total[..., None] != 0, com, 0.0)
        elif name == "mean_pattern":
            out[name] = geometry.to_source(value / max(1, n_frames))
        else:
            out[name] = np.asarray(value, dtype=np.float64)
    return out


def error_metrics(value: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """``rel_l2``, ``max_abs`` and ``psnr`` of ``value`` against ``reference`` (same shape).

    Exact agreement gives 0, 0 and ``inf``. ``rel_l2`` is ``inf`` when the reference is all zeros and the value
    is not; ``psnr`` is NaN when the reference is constant and the value differs.
    """
    a = np.asarray(value, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"quantity of shape {a.shape} cannot be compared with the reference's {b.shape}")
    diff = a - b
    norm_diff = float(np.sqrt(np.sum(diff * diff)))
    norm_ref = float(np.sqrt(np.sum(b * b)))
    if norm_diff == 0:
        return {"rel_l2": 0.0, "max_abs": 0.0, "psnr": math.inf}
    rel = norm_diff / norm_ref if norm_ref > 0 else math.inf
    rmse = norm_diff / math.sqrt(diff.size)
    peak = float(b.max() - b.min()) if b.size else 0.0
    psnr = 20 * math.log10(peak / rmse) if peak > 0 else math.nan
    return {"rel_l2": rel, "max_abs": float(np.abs(diff).max()), "psnr": psnr}
