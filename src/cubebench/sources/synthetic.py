"""Seeded synthetic 4D-STEM cubes, generated block by block so that any worker can regenerate any block.

Two physical models, both giving *expected counts per pixel* ``lambda = dose * pattern`` followed by Poisson
counting noise and clipping to the detector's range (12-bit, 4095, by default):

* :class:`DiffractionModel`, a 4D diffraction scan: a bright central (BF) disk of radius ``det/16`` (edge 0.3 px
  wide), Bragg disks of the same radius on a hexagonal or square lattice (one per grain, spacing about
  ``det/5``) whose intensities follow the sample's thickness and its local tilt (bend contours), a faint diffuse
  background ``1/(1+(q/q0)^2)``, all seen through a circular aperture (e.g. the hole of the ADF detector, radius
  ``0.41 det``) beyond which the camera is dark, a small descan of the pattern centre, and two hot pixels (the
  study's maximum, 4016, is a single hot pixel). The dark outer detector, bright disks and faint background are
  what make 2x2 / 4x4 mean binning keep 70.4 % / 61.0 % zeros of 74.7 % (study: 70.9 % / 60.9 %).
* :class:`EELSModel`, momentum-resolved EELS on a ``(momentum, energy)`` detector: zero-loss peak (it saturates
  the 12-bit counter, as in the study), first and second plasmons (Poisson statistics of the thickness
  ``t/lambda``), a power-law background and two core-loss edges (sawtooth shape, strengths set by the grain's
  composition), spread along the momentum axis (the ZLP as the projected BF disk, inelastic signal as
  Lorentzians) within the spectrometer's entrance aperture, vignetted beyond mid-detector along the energy axis
  (the study's 3D_EELS has half its channels empty), with a slow energy drift across the scan.

Every scan-dependent quantity (grains, thickness, tilt, descan, drift, composition) is an analytic function of the
*global* probe position in normalised scan coordinates ``((iy + 0.5)/sy, (ix + 0.5)/sx)``, so blocks join
seamlessly and the statistics do not depend on the scan size. The cube is produced on a fixed generator grid of
``(g, g)`` probe positions (``g`` <= 16, about 32 MiB of counts per block); block ``(by, bx)`` draws its noise
from ``np.random.default_rng([seed, by, bx])``, so its bytes do not depend on how the Dask array is chunked,
rechunked or scheduled.

The dose is either given (expected electrons per pattern) or calibrated so that the cube's zero fraction hits a
target: a Poisson pixel is zero with probability ``exp(-lambda)``, so the expected zero fraction at dose ``d`` is
the mean of ``exp(-d * pattern)`` over the noiseless patterns of a deterministic sample of probe positions,
solved for ``d`` with :func:`scipy.optimize.brentq`. No noise is drawn to calibrate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.errors import ConfigError
from cubebench.lazy_dask import import_dask_array

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Bumped whenever a change makes the generator produce different bytes for the same parameters.
GENERATOR_VERSION = 1
#: Expected counts of one generator block (before binning / summing) are kept near this size.
GENERATOR_BLOCK_BYTES = 32 * 2**20
#: Largest side (probe positions) of a generator block.
MAX_GENERATOR_SIDE = 16
#: Dask chunks are whole generator blocks, grown (doubling) while they stay at most this size.
CHUNK_TARGET_BYTES = 64 * 2**20
MAX_BLOCKS_PER_CHUNK = 4
#: Probe positions sampled (at most) to calibrate the dose; fewer for large detectors.
CALIBRATION_POSITIONS = 64
CALIBRATION_PIXELS = 2**23

#: From this expected count up the sampler calls ``rng.poisson`` directly; below, the arrival-time method.
_SMALL_LAMBDA = 1.0
#: Mixed into the sample-constant seed so it can never equal a block seed ``[seed, by, bx]``.
_FIELD_TAG = (0x5EED, 0xF1E1D5)
_N_GRAINS = 6


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffractionModel:
    """Shape parameters of the 4D diffraction model (lengths as fractions of the smaller detector side ``d``).

    The defaults are tuned so that a 256x256 detector calibrated to 74.7 % zeros (the study's 4D_Diff) keeps
    about 70.9 % zeros after 2x2 mean binning and 60.9 % after 4x4 (the study's binned datasets).
    """

    disk_radius: float = 1 / 16
    disk_edge_px: float = 0.3
    hex_spacing: float = 0.2019
    square_spacing: float = 0.182
    #: 1/e radius of the Gaussian envelope of the Bragg disk intensities.
    bragg_envelope: float = 1.0
    #: Disks further out than this (fraction of ``d``) are not drawn.
    bragg_extent: float = 0.75
    #: Scattered fraction at mean thickness is ``1 - exp(-scattering * t)``; the rest stays in the BF disk.
    scattering: float = 2.0
    #: Part of the scattered electrons that goes into Bragg disks (the rest is diffuse).
    bragg_fraction: float = 0.99715
    bg_core: float = 0.25
    bg_sigma: float = 1.0
    #: Radius, soft edge and leakage of the circular aperture (e.g. the ADF detector's hole) that bounds the
    #: pattern on the camera; outside it the detector is dark. Fixed on the detector (descan moves the pattern).
    aperture_radius: float = 0.412
    aperture_edge_px: float = 1.0
    aperture_leak: float = 1e-5
    #: Descan amplitude (pixels on a 256-pixel detector, scaled with ``d``).
    descan_px: float = 1.5
    #: Hot pixels per 65536 detector pixels and the range of their expected counts (independent of the dose);
    #: the first gets the top of the range, so a full 256x256 scan peaks near 4016 like the study's 4D_Diff.
    hot_pixels_per_64k: float = 2.0
    hot_counts: tuple[float, float] = (1500.0, 3750.0)

    kind = "diffraction"


@dataclass(frozen=True)
class EELSModel:
    """Shape parameters of the momentum-resolved EELS model (det_y = momentum, det_x = energy).

    Energies are in fractions of ``det_x`` (1024 channels at full size), momenta in fractions of ``det_y``.
    The defaults are tuned so that a (256, 1024) detector calibrated to 92.8 % zeros (the study's 4D_EELS)
    gives about 49.5 % zeros once summed over the momentum axis (the study's 3D_EELS).
    """

    zlp_channel: float = 0.058
    zlp_sigma: float = 1.3 / 1024
    zlp_tail: float = 0.02
    zlp_tail_width: float = 5.0 / 1024
    plasmon_energy: float = 60.0 / 1024
    plasmon_width: float = 30.0 / 1024
    #: Power-law background ``(dE/E_p)^-r`` and its weight relative to the first plasmon.
    tail_exponent: float = 4.0
    tail_weight: float = 0.6
    edges: tuple[float, ...] = (180.0 / 1024, 330.0 / 1024)
    edge_weights: tuple[float, ...] = (0.08, 0.05)
    edge_exponent: float = 3.0
    #: Mean thickness ``t/lambda`` and its variation.
    thickness: float = 0.453
    #: ZLP: projected BF disk of this radius; inelastic signal: Lorentzians of these half widths (fractions of det_y).
    momentum_centre: float = 0.45
    zlp_radius: float = 0.0302
    plasmon_halfwidth: float = 0.051
    core_halfwidth: float = 0.0833
    #: Half width (fraction of det_y) of the spectrometer entrance aperture: rows beyond it are dark.
    collection_halfwidth: float = 0.1557
    drift_channels: float = 2.0
    #: Spectrometer vignetting: transmission falls (logistic, this width in channels at 1024) beyond this
    #: fraction of the energy axis, fixed on the detector; the study's 3D_EELS has half its channels empty.
    vignette_channel: float = 0.4707
    vignette_width: float = 12.0 / 1024

    kind = "eels"


Model = DiffractionModel | EELSModel


# --------------------------------------------------------------------------------------------------------------
# Parameters of one synthetic cube
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticParams:
    """Everything :func:`generate_block` needs: small, frozen and picklable (it travels in the Dask graph).

    ``shape`` is the output shape. The *base* cube, where electrons are counted, has detector
    ``(det_y * binning, det_x * binning)``, or ``(base_det_y, det_x)`` when ``ysum`` (the counts are then summed
    over the momentum axis). ``dose`` is the expected number of electrons per base pattern (hot pixels aside).
    """

    shape: tuple[int, int, int, int]
    dtype: str = "uint16"
    model: Model = field(default_factory=DiffractionModel)
    seed: int = 0
    dose: float = 1.0
    clip: int = 4095
    binning: int = 1
    ysum: bool = False
    base_det_y: int = 256
    sum_clip: int = 65535
    block: tuple[int, int] | None = None

    @property
    def base_det(self) -> tuple[int, int]:
        """Detector shape ``(dy, dx)`` on which electrons are counted."""
        if self.ysum:
            return (self.base_det_y, self.shape[3])
        return (self.shape[2] * self.binning, self.shape[3] * self.binning)

    @property
    def generator_block(self) -> tuple[int, int]:
        """Probe positions ``(gy, gx)`` per generator block (fixed by the parameters, never by the chunking)."""
        if self.block is not None:
            return (max(1, int(self.block[0])), max(1, int(self.block[1])))
        dy, dx = self.base_det
        frame_bytes = dy * dx * 2
        g = 1
        while g < MAX_GENERATOR_SIDE and (2 * g) ** 2 * frame_bytes <= GENERATOR_BLOCK_BYTES:
            g *= 2
        return (g, g)

    @property
    def grid(self) -> tuple[int, int]:
        """Number of generator blocks along scan y and scan x."""
        gy, gx = self.generator_block
        return (-(-self.shape[0] // gy), -(-self.shape[1] // gx))

    def block_slices(self, block_index: tuple[int, int]) -> tuple[slice, slice]:
        """Scan slices covered by generator block ``block_index``."""
        by, bx = (int(i) for i in block_index)
        gy, gx = self.generator_block
        ny, nx = self.grid
        if not (0 <= by < ny and 0 <= bx < nx):
            raise IndexError(f"generator block {block_index} outside the grid {self.grid}")
        return (
            slice(by * gy, min((by + 1) * gy, self.shape[0])),
            slice(bx * gx, min((bx + 1) * gx, self.shape[1])),
        )


# --------------------------------------------------------------------------------------------------------------
# Sample constants and scan-dependent fields (analytic in the global, normalised probe position)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    centres: np.ndarray  # (G, 2) grain centres in normalised scan coordinates
    phase: np.ndarray  # (G,) 0 = hexagonal, 1 = square
    theta: np.ndarray  # (G,) lattice rotation
    tilt: np.ndarray  # (G, 2) base tilt of each grain
    comp: np.ndarray  # (G, 2) composition (core-edge strengths) of each grain
    waves: np.ndarray  # (4, 2) wave vectors (cycles per scan) of the smooth fields
    phases: np.ndarray  # (8,) phases of the smooth fields


@functools.lru_cache(maxsize=64)
def _sample(seed: int) -> _Sample:
    rng = np.random.default_rng([seed, *_FIELD_TAG, 1])
    centres = rng.random((_N_GRAINS, 2))
    phase = rng.integers(0, 2, _N_GRAINS)
    theta = rng.uniform(0.0, np.pi, _N_GRAINS)
    tilt = rng.normal(0.0, 2.0, (_N_GRAINS, 2))
    comp = rng.uniform(0.3, 1.0, (_N_GRAINS, 2))
    waves = rng.uniform(0.6, 1.8, (4, 2)) * rng.choice([-1.0, 1.0], (4, 2))
    phases = rng.uniform(0.0, 2 * np.pi, 8)
    return _Sample(centres, phase, theta, tilt, comp, waves, phases)


def _fields(seed: int, shape: Sequence[int], iy: np.ndarray, ix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-probe-position fields at global scan indices ``iy``, ``ix`` (1-D arrays of equal length)."""
    s = _sample(seed)
    u = (np.asarray(iy, np.float64) + 0.5) / shape[0]
    v = (np.asarray(ix, np.float64) + 0.5) / shape[1]

    def wave(i: int) -> np.ndarray:
        out: np.ndarray = np.sin(2 * np.pi * (s.waves[i, 0] * u + s.waves[i, 1] * v) + s.phases[i])
        return out

    d2 = (u[:, None] - s.centres[None, :, 0]) ** 2 + (v[:, None] - s.centres[None, :, 1]) ** 2
    grain = np.argmin(d2, axis=1)
    thickness = 1.0 + 0.25 * wave(0) + 0.12 * wave(1)
    bend = 1.5 * np.stack([wave(2), wave(3)], axis=1)
    return {
        "u": u,
        "v": v,
        "grain": grain,
        "thickness": thickness,
        "theta": s.theta[grain],
        "phase": s.phase[grain],
        "tilt": s.tilt[grain] + bend,
        "comp": s.comp[grain],
        "descan": np.stack(
            [
                (u - 0.5) + 0.3 * np.sin(2 * np.pi * 1.3 * v + s.phases[4]),
                -(v - 0.5) + 0.3 * np.sin(2 * np.pi * 1.1 * u + s.phases[5]),
            ],
            axis=1,
        ),
        "drift": (u - 0.5) + 0.25 * np.sin(2 * np.pi * 2.0 * v + s.phases[6]),
    }


# --------------------------------------------------------------------------------------------------------------
# Noiseless patterns (each frame sums to 1)
# --------------------------------------------------------------------------------------------------------------


def _hot_pixels(model: Model, seed: int, det: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and expected counts of the detector's hot pixels (fixed by seed and detector shape)."""
    if not isinstance(model, DiffractionModel):
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    n = round(model.hot_pixels_per_64k * det[0] * det[1] / 65536)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    rng = np.random.default_rng([seed, *_FIELD_TAG, 2, det[0], det[1]])
    idx = rng.choice(det[0] * det[1], size=n, replace=False)
    counts = rng.uniform(*model.hot_counts, size=n)
    counts[0] = model.hot_counts[1]  # the brightest sets the cube's maximum (study: 4016 of 4095)
    order = np.argsort(idx)
    return idx[order].astype(np.int64), counts[order]


@functools.lru_cache(maxsize=32)
def _lattice_indices(max_index: int) -> np.ndarray:
    r = np.arange(-max_index, max_index + 1)
    hk = np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1).reshape(-1, 2)
    return hk[np.any(hk != 0, axis=1)].astype(np.float64)


def _soft_disk_area(radius: float, edge: float) -> float:
    # integral of the logistic disk profile 1/(1+exp((r-R)/w)) over the plane (R >> w): pi (R^2 + pi^2 w^2 / 3)
    return math.pi * (radius**2 + (math.pi**2) * edge**2 / 3.0)


def _diffraction_patterns(model: DiffractionModel, det: tuple[int, int], f: dict[str, np.ndarray]) -> np.ndarray:
    dy, dx = det
    n = f["u"].size
    d = float(min(dy, dx))
    scale = d / 256.0
    radius = max(model.disk_radius * d, 0.5)
    edge = max(model.disk_edge_px * min(scale * 2, 1.0), 0.25)
    centre = np.stack(
        [
            (dy - 1) / 2 + model.descan_px * scale * f["descan"][:, 0],
            (dx - 1) / 2 + model.descan_px * scale * f["descan"][:, 1],
        ],
        axis=1,
    )  # (n, 2)

    # weights of BF disk, Bragg disks and diffuse background
    scattered = 1.0 - np.exp(-model.scattering * f["thickness"])
    w_bf = 1.0 - scattered
    w_bragg = scattered * model.bragg_fraction
    w_bg = scattered * (1.0 - model.bragg_fraction)

    # lattice of each frame
    a = np.where(f["phase"] == 0, model.hex_spacing, model.square_spacing) * d
    angle2 = np.where(f["phase"] == 0, np.pi / 3, np.pi / 2)
    th = f["theta"]
    a1 = a[:, None] * np.stack([np.cos(th), np.sin(th)], axis=1)
    a2 = a[:, None] * np.stack([np.cos(th + angle2), np.sin(th + angle2)], axis=1)
    extent = min(model.bragg_extent * d, model.aperture_radius * d + radius + 6 * edge + 2 * model.descan_px * scale)
    max_index = math.ceil(extent / (min(model.hex_spacing, model.square_spacing) * d * math.sin(np.pi / 3)))
    hk = _lattice_indices(max(max_index, 1))  # (M, 2)
    g = hk[None, :, 0, None] * a1[:, None, :] + hk[None, :, 1, None] * a2[:, None, :]  # (n, M, 2)
    gnorm = np.sqrt((g**2).sum(-1))
    envelope = np.exp(-((gnorm / (model.bragg_envelope * d)) ** 2))
    s_g = (g / d * f["tilt"][:, None, :]).sum(-1)
    excitation = 0.25 + 0.75 / (1.0 + (s_g / 0.35) ** 2)
    strength = np.where(gnorm <= extent, envelope * excitation, 0.0)
    strength = strength * (w_bragg / np.maximum(strength.sum(1), 1e-300))[:, None]

    # all disks: BF first, then Bragg; centres in detector pixels
    pos = np.concatenate([centre[:, None, :], centre[:, None, :] + g], axis=1)  # (n, M+1, 2)
    inten = np.concatenate([w_bf[:, None], strength], axis=1) / _soft_disk_area(radius, edge)
    half = math.ceil(radius + 6 * edge) + 1
    win = 2 * half + 1
    origin = np.floor(pos).astype(np.int64) - half  # (n, M+1, 2)
    visible = (
        (inten > 0)
        & (origin[..., 0] < dy)
        & (origin[..., 0] + win > 0)
        & (origin[..., 1] < dx)
        & (origin[..., 1] + win > 0)
    )
    fi, di = np.nonzero(visible)

    out = np.empty((n, dy, dx), np.float32)
    # diffuse background, per frame around its (descanned) centre
    yy = np.arange(dy, dtype=np.float32)[None, :, None] - centre[:, 0, None, None].astype(np.float32)
    xx = np.arange(dx, dtype=np.float32)[None, None, :] - centre[:, 1, None, None].astype(np.float32)
    q2 = yy * yy + xx * xx  # (n, dy, dx)
    gauss = q2 * np.float32(-1 / (2 * (model.bg_sigma * d) ** 2))
    np.exp(gauss, out=gauss)
    gauss *= (w_bg / _bg_norm(model, det)).astype(np.float32)[:, None, None]
    q2 *= np.float32(1 / (model.bg_core * d) ** 2)
    q2 += np.float32(1)
    np.divide(gauss, q2, out=out)

    if fi.size:
        o = origin[fi, di]  # (K, 2)
        p = pos[fi, di]
        ry = ((o[:, 0, None] + np.arange(win)[None, :]) - p[:, 0, None]).astype(np.float32)  # (K, win)
        rx = ((o[:, 1, None] + np.arange(win)[None, :]) - p[:, 1, None]).astype(np.float32)
        r = np.sqrt(ry[:, :, None] ** 2 + rx[:, None, :] ** 2)
        r -= np.float32(radius)
        r *= np.float32(1 / edge)
        np.clip(r, -60, 60, out=r)
        stamps = np.exp(r, out=r)
        stamps += 1
        np.divide(inten[fi, di].astype(np.float32)[:, None, None], stamps, out=stamps)
        for k in range(fi.size):
            y0, x0 = int(o[k, 0]), int(o[k, 1])
            ya, xa = max(y0, 0), max(x0, 0)
            yb, xb = min(y0 + win, dy), min(x0 + win, dx)
            out[fi[k], ya:yb, xa:xb] += stamps[k, ya - y0 : yb - y0, xa - x0 : xb - x0]

    out *= _aperture(model, det)[None]
    out /= out.sum(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    return out


@functools.lru_cache(maxsize=32)
def _aperture(model: DiffractionModel, det: tuple[int, int]) -> np.ndarray:
    dy, dx = det
    d = float(min(dy, dx))
    r = np.hypot(np.arange(dy)[:, None] - (dy - 1) / 2, np.arange(dx)[None, :] - (dx - 1) / 2)
    edge = max(model.aperture_edge_px * min(d / 128, 1.0), 0.25)
    a = 1.0 / (1.0 + np.exp(np.clip((r - model.aperture_radius * d) / edge, -60, 60)))
    out: np.ndarray = (model.aperture_leak + (1 - model.aperture_leak) * a).astype(np.float32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=32)
def _bg_norm(model: DiffractionModel, det: tuple[int, int]) -> float:
    dy, dx = det
    d = float(min(dy, dx))
    y = np.arange(dy) - (dy - 1) / 2
    x = np.arange(dx) - (dx - 1) / 2
    q2 = y[:, None] ** 2 + x[None, :] ** 2
    bg = np.exp(-q2 / (2 * (model.bg_sigma * d) ** 2)) / (1 + q2 / (model.bg_core * d) ** 2)
    return float(bg.sum())


def _eels_patterns(model: EELSModel, det: tuple[int, int], f: dict[str, np.ndarray]) -> np.ndarray:
    ny, ne = det
    ch = ne  # energies are fractions of the energy axis
    e0 = model.zlp_channel * ch + model.drift_channels * (ch / 1024) * f["drift"]  # (n,)
    de = np.arange(ne, dtype=np.float64)[None, :] - e0[:, None]  # (n, ne)
    t = model.thickness * f["thickness"]  # t / lambda

    sig = max(model.zlp_sigma * ch, 0.6)
    zlp = np.exp(-0.5 * (de / sig) ** 2) + model.zlp_tail / (1 + (de / max(model.zlp_tail_width * ch, 1.0)) ** 2)
    ep = model.plasmon_energy * ch
    gam = model.plasmon_width * ch

    def drude(centre: float) -> np.ndarray:
        x = np.maximum(de, 0.0)
        return x * gam * centre**2 / ((x**2 - centre**2) ** 2 + (x * gam) ** 2 + 1e-12)

    def unit(s: np.ndarray) -> np.ndarray:
        out: np.ndarray = s / np.maximum(s.sum(1, keepdims=True), 1e-300)
        return out

    onset = 1.0 / (1.0 + np.exp(-(de - 0.6 * ep) / max(0.08 * ep, 0.5)))
    tail = onset * (np.maximum(de, 0.6 * ep) / ep) ** (-model.tail_exponent)
    core = model.tail_weight * unit(tail)
    for k, (ek, wk) in enumerate(zip(model.edges, model.edge_weights, strict=True)):
        ek_ch = ek * ch
        step = 1.0 / (1.0 + np.exp(-(de - ek_ch) / max(0.01 * ek_ch, 0.5)))
        saw = step * (np.maximum(de, ek_ch) / ek_ch) ** (-model.edge_exponent)
        core = core + wk * f["comp"][:, k % 2, None] * unit(saw)
    p0 = np.exp(-t)  # Poisson statistics of plasmon scattering
    chan = np.arange(ne, dtype=np.float64)
    vignette = 1.0 / (
        1.0 + np.exp(np.clip((chan - model.vignette_channel * ch) / max(model.vignette_width * ch, 0.5), -60, 60))
    )
    spec = np.stack(
        [
            p0[:, None] * unit(zlp),
            (p0 * t)[:, None] * unit(drude(ep)) + (p0 * t * t / 2)[:, None] * unit(drude(2 * ep)),
            (t * p0)[:, None] * core,
        ],
        axis=1,
    )  # (n, 3, ne)
    spec *= vignette

    yc = model.momentum_centre * ny + 0.5 * (ny / 256) * f["descan"][:, 0]
    y = np.arange(ny, dtype=np.float64)[None, :] - yc[:, None]  # (n, ny)
    rz = max(model.zlp_radius * ny, 1.0)
    disk = np.sqrt(np.clip(1.0 - (y / rz) ** 2, 0.0, None)) + 0.003 / (1 + (y / rz) ** 2)
    wp = max(model.plasmon_halfwidth * ny, 0.5)
    wc = max(model.core_halfwidth * ny, 0.5)
    coll = 1.0 / (1.0 + np.exp(np.clip((np.abs(y) - model.collection_halfwidth * ny) / 1.0, -60, 60)))
    prof = np.stack([unit(disk), unit(1 / (1 + (y / wp) ** 2)), unit(1 / (1 + (y / wc) ** 2) ** 1.5)], axis=2)
    prof *= (1e-5 + coll)[:, :, None]
    # sum of three outer products, elementwise (not BLAS: bitwise identical results on every machine and thread count)
    prof32 = prof.astype(np.float32)
    spec32 = spec.astype(np.float32)
    out = prof32[:, :, 0, None] * spec32[:, 0, None, :]  # (n, ny, ne)
    for c in (1, 2):
        out += prof32[:, :, c, None] * spec32[:, c, None, :]
    out /= out.sum(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    return out


def patterns(params: SyntheticParams, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Noiseless base patterns ``(n, dy, dx)`` (float32, each summing to 1) at global scan indices ``iy, ix``."""
    iy = np.atleast_1d(np.asarray(iy, np.int64))
    ix = np.atleast_1d(np.asarray(ix, np.int64))
    f = _fields(params.seed, params.shape, iy, ix)
    if isinstance(params.model, EELSModel):
        return _eels_patterns(params.model, params.base_det, f)
    return _diffraction_patterns(params.model, params.base_det, f)


# --------------------------------------------------------------------------------------------------------------
# Poisson counting
# --------------------------------------------------------------------------------------------------------------


def poisson(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact Poisson samples (uint32) for expected counts ``lam``; about twice as fast as ``rng.poisson`` on
    sparse data.

    Pixels with ``lam >= 1`` are drawn by ``rng.poisson``. For the others, the first arrival time ``E`` of a
    unit-rate Poisson process decides: ``E > lam`` gives 0 (the common case, one exponential variate), otherwise
    the count is ``1 + Poisson(lam - E)`` (the process is memoryless). The stream consumed depends only on
    ``lam``, so the samples are reproducible.
    """
    lam_arr = np.asarray(lam)
    flat = lam_arr.reshape(-1)
    out = np.zeros(flat.size, np.uint32)
    big = flat >= _SMALL_LAMBDA
    big_idx = np.flatnonzero(big)
    if big_idx.size:
        out[big_idx] = rng.poisson(flat[big_idx].astype(np.float64))
        small_idx = np.flatnonzero(~big)
        small = flat[small_idx].astype(np.float64)
    else:
        small_idx = None
        small = flat.astype(np.float64)
    arrival = rng.standard_exponential(small.size)
    hit = np.flatnonzero(arrival <= small)
    if hit.size:
        extra = rng.poisson(small[hit] - arrival[hit]) + 1
        out[hit if small_idx is None else small_idx[hit]] = extra
    return out.reshape(lam_arr.shape)


# --------------------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------------------


def _reduce_counts(params: SyntheticParams, counts: np.ndarray) -> np.ndarray:
    """Base counts ``(..., bdy, bdx)`` (uint32, clipped) -> output values in the output dtype."""
    dtype = np.dtype(params.dtype)
    if params.ysum:
        s: np.ndarray = counts.sum(axis=-2, dtype=np.uint32, keepdims=True)
        np.minimum(s, params.sum_clip, out=s)
        return s.astype(dtype)
    b = params.binning
    if b > 1:
        *lead, bdy, bdx = counts.shape
        sums: np.ndarray = counts.reshape(*lead, bdy // b, b, bdx // b, b).sum(axis=(-3, -1), dtype=np.float64)
        return (sums / (b * b)).astype(dtype)  # exact: integer sums below 2**24 divided by a power of two
    return counts.astype(dtype)


def generate_block(params: SyntheticParams, block_index: tuple[int, int]) -> np.ndarray:
    """Generate generator block ``block_index = (by, bx)``: a pure function of ``params`` and the index.

    Returns the output-dtype array of shape ``(ny, nx, det_y, det_x)`` for the probe positions of that block
    (edge blocks are clipped to the scan). Noise comes from ``np.random.default_rng([seed, by, bx])``.
    """
    ys, xs = params.block_slices(block_index)
    by, bx = (int(i) for i in block_index)
    rng = np.random.default_rng([params.seed, by, bx])
    hot_idx, hot_lam = _hot_pixels(params.model, params.seed, params.base_det)
    dy, dx = params.base_det
    ny, nx = ys.stop - ys.start, xs.stop - xs.start
    out = np.empty((ny, nx, params.shape[2], params.shape[3]), np.dtype(params.dtype))
    ix = np.arange(xs.start, xs.stop)
    for row, iy in enumerate(range(ys.start, ys.stop)):
        lam = patterns(params, np.full(nx, iy), ix)  # (nx, dy, dx) float32
        lam *= np.float32(params.dose)
        if hot_idx.size:
            flat = lam.reshape(nx, dy * dx)
            flat[:, hot_idx] += hot_lam.astype(np.float32)[None, :]
        counts = poisson(lam, rng)
        np.minimum(counts, params.clip, out=counts)
        out[row] = _reduce_counts(params, counts)
    return out


def _chunk_blocks(params: SyntheticParams) -> tuple[int, int]:
    """Generator blocks per Dask chunk along (scan_y, scan_x).

    Doubled (x first) while the chunk stays <= 64 MiB and holds at most 4 generator blocks, so that a task
    never generates more than about 128 MiB of counts (binned and summed presets would otherwise make few, slow
    tasks).
    """
    gy, gx = params.generator_block
    frame = params.shape[2] * params.shape[3] * np.dtype(params.dtype).itemsize
    ny, nx = params.grid
    my = mx = 1
    while True:
        for cand in ((my, mx * 2), (my * 2, mx)):
            fits = cand[0] <= ny and cand[1] <= nx and cand[0] * cand[1] <= MAX_BLOCKS_PER_CHUNK
            if fits and cand[0] * gy * cand[1] * gx * frame <= CHUNK_TARGET_BYTES:
                my, mx = cand
                break
        else:
            return my, mx


def _dask_block(params: SyntheticParams, per_chunk: tuple[int, int], block_info: Any = None) -> np.ndarray:
    cy, cx = block_info[None]["chunk-location"][:2]
    ny, nx = params.grid
    rows = []
    for by in range(cy * per_chunk[0], min((cy + 1) * per_chunk[0], ny)):
        cols = [generate_block(params, (by, bx)) for bx in range(cx * per_chunk[1], min((cx + 1) * per_chunk[1], nx))]
        rows.append(cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1))
    return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0)


def to_dask(params: SyntheticParams) -> Any:
    """The lazy cube: ``da.map_blocks`` over whole generator blocks (a graph of two layers, no data in it)."""
    da = import_dask_array()

    gy, gx = params.generator_block
    my, mx = _chunk_blocks(params)
    sy, sx, dy, dx = params.shape

    def axis_chunks(n: int, step: int) -> tuple[int, ...]:
        return tuple(min(step, n - i) for i in range(0, n, step))

    chunks = (axis_chunks(sy, gy * my), axis_chunks(sx, gx * mx), (dy,), (dx,))
    dtype = np.dtype(params.dtype)
    return da.map_blocks(
        _dask_block,
        params,
        (my, mx),
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0, 0, 0, 0), dtype),
        name=f"synthetic-{_token(params)}",
    )


def _token(params: SyntheticParams) -> str:
    from dask.base import tokenize

    return tokenize(repr(params))


# --------------------------------------------------------------------------------------------------------------
# Dose calibration
# --------------------------------------------------------------------------------------------------------------


def calibration_positions(shape: Sequence[int], det: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic sample of probe positions spread evenly over the scan (all of them for small scans)."""
    sy, sx = int(shape[0]), int(shape[1])
    budget = max(1, min(CALIBRATION_POSITIONS, CALIBRATION_PIXELS // max(det[0] * det[1], 1)))
    if sy * sx <= budget:
        iy, ix = np.meshgrid(np.arange(sy), np.arange(sx), indexing="ij")
        return iy.ravel(), ix.ravel()
    ny = max(1, min(sy, round(math.sqrt(budget * sy / sx))))
    nx = max(1, min(sx, budget // ny))
    ys = np.floor((np.arange(ny) + 0.5) * sy / ny).astype(np.int64)
    xs = np.floor((np.arange(nx) + 0.5) * sx / nx).astype(np.int64)
    iy, ix = np.meshgrid(ys, xs, indexing="ij")
    return iy.ravel(), ix.ravel()


@dataclass(frozen=True)
class _ZeroCurve:
    """Expected zero fraction as a function of the dose, from binned per-unit-dose expected counts."""

    reps: np.ndarray
    weights: np.ndarray
    always_zero: int
    never_zero: int
    total: int

    def __call__(self, dose: float) -> float:
        return float((self.always_zero + np.dot(self.weights, np.exp(-dose * self.reps))) / self.total)

    @property
    def floor(self) -> float:
        return self.always_zero / self.total

    @property
    def ceiling(self) -> float:
        return (self.total - self.never_zero) / self.total


def _zero_curve(unit: np.ndarray, never_zero: np.ndarray | None = None) -> _ZeroCurve:
    """Summarise per-pixel expected counts at unit dose in log-spaced bins (relative width about 0.1 %)."""
    unit = np.asarray(unit).reshape(-1)
    total = unit.size
    if never_zero is not None:
        nz = np.asarray(never_zero, bool).reshape(-1)
        n_never = int(nz.sum())
        if n_never:
            unit = unit[~nz]
    else:
        n_never = 0
    pos = unit[unit > 0].astype(np.float32)
    always_zero = int(unit.size - pos.size)
    if pos.size == 0:
        return _ZeroCurve(np.zeros(0), np.zeros(0), always_zero, n_never, total)
    logs = np.log(pos)
    lo, hi = float(logs.min()), float(logs.max())
    nbins = max(1, min(40000, math.ceil((hi - lo) / 1e-3) + 1))
    logs -= np.float32(lo)
    logs *= np.float32(nbins / max(hi - lo, 1e-30))
    idx = np.minimum(logs.astype(np.int64), nbins - 1)
    counts = np.bincount(idx, minlength=nbins).astype(np.float64)
    sums = np.bincount(idx, weights=pos, minlength=nbins)
    keep = counts > 0
    return _ZeroCurve(sums[keep] / counts[keep], counts[keep], always_zero, n_never, total)


def _unit_output(params: SyntheticParams, pats: np.ndarray, on_output: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit-dose expected counts of base (or output) pixels, and a mask of pixels that are never zero."""
    n, dy, dx = pats.shape
    hot_idx, _ = _hot_pixels(params.model, params.seed, params.base_det)
    hot = np.zeros(dy * dx, bool)
    hot[hot_idx] = True
    hot = np.broadcast_to(hot.reshape(1, dy, dx), pats.shape)
    if not on_output:
        return pats, hot
    if params.ysum:
        return pats.sum(axis=1, dtype=np.float32), np.asarray(hot.any(axis=1))
    b = params.binning
    if b > 1:
        r = pats.reshape(n, dy // b, b, dx // b, b)
        return r.sum(axis=(2, 4), dtype=np.float32), np.asarray(hot.reshape(n, dy // b, b, dx // b, b).any(axis=(2, 4)))
    return pats, hot


@functools.lru_cache(maxsize=128)
def _curves(params: SyntheticParams) -> tuple[_ZeroCurve, _ZeroCurve]:
    """Zero-fraction curves of the base cube and of the output cube (dose field of ``params`` ignored)."""
    iy, ix = calibration_positions(params.shape, params.base_det)
    pats = patterns(params, iy, ix)
    base = _zero_curve(*_unit_output(params, pats, on_output=False))
    if params.binning == 1 and not params.ysum:
        return base, base
    out = _zero_curve(*_unit_output(params, pats, on_output=True))
    return base, out


def calibrate_dose(params: SyntheticParams, zero_fraction: float, on_output: bool = True) -> float:
    """Dose (electrons per base pattern) at which the expected zero fraction is ``zero_fraction``.

    ``on_output`` targets the output cube (after binning or summing); otherwise the base counts.
    Raises :class:`ConfigError` if the model cannot reach the target at any dose.
    """
    from scipy.optimize import brentq

    curve = _curves(replace(params, dose=1.0))[1 if on_output else 0]
    if not curve.floor < zero_fraction < curve.ceiling:
        raise ConfigError(
            f"zero_fraction {zero_fraction:g} is out of reach for this synthetic cube "
            f"(possible: {curve.floor:.4f} < zero_fraction < {curve.ceiling:.4f})"
        )

    def f(logd: float) -> float:
        return curve(math.exp(logd)) - zero_fraction

    lo, hi = -10.0, 5.0
    while f(lo) < 0:
        lo -= 10.0
    while f(hi) > 0:
        hi += 5.0
    return math.exp(brentq(f, lo, hi, xtol=1e-10, rtol=1e-12))


def expected_zero_fraction(params: SyntheticParams, on_output: bool = True) -> float:
    """Model expectation of the zero fraction at ``params.dose`` (from the calibration sample, no noise drawn)."""
    curve = _curves(replace(params, dose=1.0))[1 if on_output else 0]
    return curve(params.dose)
