"""The study's five datasets as synthetic presets, and the synthetic part of a dataset spec.

At ``scale=1`` each preset has the shape and dtype of the study's dataset (``study_dataset_inventory.csv``) and
its zero fraction (within about 1 percentage point, checked from the noiseless model at full size):

==============  =====================  =======  ==============================================================
preset          shape                  dtype    made as
==============  =====================  =======  ==============================================================
4d_diff         (256, 256, 256, 256)   uint16   diffraction, dose calibrated to 74.7 % zeros, 12-bit
4d_diff_bin2    (256, 256, 128, 128)   float32  2x2 mean binning of 4d_diff (same seed and dose)
4d_diff_bin4    (256, 256, 64, 64)     float32  4x4 mean binning of 4d_diff
4d_eels         (64, 64, 256, 1024)    uint16   momentum-resolved EELS, dose calibrated to 92.8 % zeros, 12-bit
3d_eels         (64, 64, 1, 1024)      uint16   sum over det_y of 4d_eels (same seed and dose), clipped at 65535
==============  =====================  =======  ==============================================================

``scale`` multiplies each *scan* dimension (rounded, at least 1): ``scale=0.0625`` turns 256x256 into 16x16.
Binned and summed presets are derived from the counted cube exactly, so their zero fractions follow from the
model, as in the study; a ``zero_fraction`` given by the user always targets the cube that is returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.cube import Cube, DatasetInfo
from cubebench.errors import ConfigError
from cubebench.sources.synthetic import (
    GENERATOR_VERSION,
    DiffractionModel,
    EELSModel,
    SyntheticParams,
    calibrate_dose,
    expected_zero_fraction,
    to_dask,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Keys of a synthetic dataset spec.
SYNTHETIC_KEYS = ("preset", "scale", "seed", "zero_fraction", "dose", "shape", "dtype", "name")


@dataclass(frozen=True)
class Preset:
    """A named synthetic dataset modelled on one of the study's datasets."""

    name: str
    shape: tuple[int, int, int, int]
    dtype: str
    model: str  # "diffraction" or "eels"
    #: The study's zero fraction of this dataset.
    zero_fraction: float
    #: The study's maximum value.
    study_max: float
    description: str
    binning: int = 1
    ysum: bool = False
    clip: int = 4095
    #: For derived presets: the zero fraction the *counted* cube is calibrated to (its parent's).
    base_zero_fraction: float | None = None
    base_det_y: int = 256

    def describe(self) -> str:
        """One line for listings."""
        shape = "x".join(map(str, self.shape))
        return f"{self.name}: {shape} {self.dtype}, {100 * self.zero_fraction:.1f} % zeros (study); {self.description}"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "4d_diff",
            (256, 256, 256, 256),
            "uint16",
            "diffraction",
            0.747353,
            4016.0,
            "4D diffraction, 12-bit counts (study: 4D_Diff)",
        ),
        Preset(
            "4d_diff_bin2",
            (256, 256, 128, 128),
            "float32",
            "diffraction",
            0.708912,
            1035.5,
            "2x2 mean binning of 4d_diff (study: 4D_Diff-2x2-binning)",
            binning=2,
            base_zero_fraction=0.747353,
        ),
        Preset(
            "4d_diff_bin4",
            (256, 256, 64, 64),
            "float32",
            "diffraction",
            0.609100,
            296.5,
            "4x4 mean binning of 4d_diff (study: 4D_Diff-4x4-binning)",
            binning=4,
            base_zero_fraction=0.747353,
        ),
        Preset(
            "4d_eels",
            (64, 64, 256, 1024),
            "uint16",
            "eels",
            0.928317,
            4095.0,
            "momentum-resolved EELS (momentum, energy), 12-bit counts (study: 4D_EELS)",
        ),
        Preset(
            "3d_eels",
            (64, 64, 1, 1024),
            "uint16",
            "eels",
            0.494717,
            65535.0,
            "4d_eels summed over momentum, clipped at 65535 (study: 3D_EELS)",
            ysum=True,
            clip=4095,
            base_zero_fraction=0.928317,
        ),
    )
}


def list_presets() -> list[str]:
    """Names of the synthetic presets, in the study's order."""
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None


# --------------------------------------------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------------------------------------------


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    return v


def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value!r}")
    return int(value)


def _shape(value: Any) -> tuple[int, int, int, int]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 4:
        raise ConfigError(f"shape must be 4 positive ints [scan_y, scan_x, det_y, det_x], got {value!r}")
    return tuple(_int("shape", v, 1) for v in value)  # type: ignore[return-value]


def _dtype(value: Any, preset: Preset) -> np.dtype:
    try:
        dt: np.dtype = np.dtype(value)
    except TypeError:
        raise ConfigError(f"dtype {value!r} is not a NumPy dtype") from None
    allowed = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64")
    if dt.name not in allowed or dt.byteorder not in ("=", "|"):
        raise ConfigError(f"dtype {value!r} is not supported for synthetic data; valid: {', '.join(allowed)}")
    if preset.binning > 1 and dt.kind != "f":
        raise ConfigError(f"preset {preset.name} holds mean-binned values: dtype must be float32 or float64")
    return dt


def synthetic_params(spec: Mapping[str, Any]) -> tuple[SyntheticParams, dict[str, Any]]:
    """Resolve a synthetic spec (``preset``, ``scale``, ``seed``, ``zero_fraction`` | ``dose``, ``shape``,
    ``dtype``) into generator parameters with a calibrated dose, plus provenance attributes."""
    unknown = sorted(set(spec) - set(SYNTHETIC_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} for a synthetic dataset; valid: {', '.join(SYNTHETIC_KEYS)}")
    preset = get_preset(spec.get("preset", "4d_diff"))
    shape = _shape(spec["shape"]) if spec.get("shape") is not None else preset.shape
    if preset.ysum and shape[2] != 1:
        raise ConfigError(f"preset {preset.name} sums over det_y: shape[2] must be 1, got {list(shape)}")
    scale = 1.0
    if spec.get("scale") is not None:
        scale = _number("scale", spec["scale"])
        if not 0.0 < scale <= 1.0:
            raise ConfigError(f"scale must be in (0, 1], got {spec['scale']!r}")
        shape = (
            max(1, math.floor(shape[0] * scale + 0.5)),
            max(1, math.floor(shape[1] * scale + 0.5)),
            shape[2],
            shape[3],
        )
    dtype = _dtype(spec["dtype"], preset) if spec.get("dtype") is not None else np.dtype(preset.dtype)
    seed = _int("seed", spec.get("seed", 0) if spec.get("seed") is not None else 0, 0)
    has_dose = spec.get("dose") is not None
    has_zf = spec.get("zero_fraction") is not None
    if has_dose and has_zf:
        raise ConfigError("give either dose or zero_fraction, not both")
    clip = preset.clip
    sum_clip = 65535
    if dtype.kind in "iu":
        clip = min(clip, int(np.iinfo(dtype).max))
        sum_clip = min(sum_clip, int(np.iinfo(dtype).max))
    model = DiffractionModel() if preset.model == "diffraction" else EELSModel()
    params = SyntheticParams(
        shape=shape,
        dtype=dtype.name,
        model=model,
        seed=seed,
        dose=1.0,
        clip=clip,
        binning=preset.binning,
        ysum=preset.ysum,
        base_det_y=preset.base_det_y,
        sum_clip=sum_clip,
    )
    attrs: dict[str, Any] = {
        "preset": preset.name,
        "seed": seed,
        "scale": scale,
        "model": preset.model,
        "generator_version": GENERATOR_VERSION,
    }
    if has_dose:
        dose = _number("dose", spec["dose"])
        if dose <= 0:
            raise ConfigError(f"dose must be > 0 (electrons per pattern), got {spec['dose']!r}")
        attrs["dose_source"] = "given"
    else:
        if has_zf:
            target = _number("zero_fraction", spec["zero_fraction"])
            if not 0.0 < target < 1.0:
                raise ConfigError(f"zero_fraction must be in (0, 1), got {spec['zero_fraction']!r}")
            on_output = True
        elif preset.base_zero_fraction is not None:
            target, on_output = preset.base_zero_fraction, False
        else:
            target, on_output = preset.zero_fraction, True
        dose = calibrate_dose(params, target, on_output=on_output)
        attrs["target_zero_fraction"] = target
        attrs["calibrated_on"] = "output" if on_output else "counts"
    params = replace(params, dose=dose)
    attrs["dose"] = dose
    attrs["expected_zero_fraction"] = expected_zero_fraction(params)
    attrs["study_zero_fraction"] = preset.zero_fraction
    attrs["generator_block"] = "x".join(map(str, (*params.generator_block, *shape[2:])))
    attrs["clip"] = params.sum_clip if params.ysum else params.clip
    if params.binning > 1:
        attrs["binning"] = params.binning
    return params, attrs


def _default_name(spec: Mapping[str, Any], params: SyntheticParams, attrs: Mapping[str, Any]) -> str:
    parts = [str(attrs["preset"])]
    if attrs["scale"] != 1.0:
        parts.append(f"s{attrs['scale']:g}")
    if spec.get("shape") is not None:
        parts.append("x".join(map(str, params.shape)))
    if spec.get("dtype") is not None and np.dtype(spec["dtype"]).name != PRESETS[str(attrs["preset"])].dtype:
        parts.append(np.dtype(spec["dtype"]).name)
    if params.seed:
        parts.append(f"seed{params.seed}")
    if spec.get("zero_fraction") is not None:
        parts.append(f"z{float(spec['zero_fraction']):g}")
    if spec.get("dose") is not None:
        parts.append(f"d{float(spec['dose']):g}")
    return "-".join(parts)


def open_synthetic(spec: Mapping[str, Any]) -> Cube:
    """A lazy synthetic cube for a spec such as ``{"preset": "4d_diff", "scale": 0.0625, "seed": 1}``."""
    params, attrs = synthetic_params(spec)
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"name must be a string, got {name!r}")
    info = DatasetInfo(
        name=name or _default_name(spec, params, attrs),
        shape=params.shape,
        dtype=np.dtype(params.dtype).name,
        source=f"synthetic:{attrs['preset']}",
        kind="synthetic",
        attrs={**attrs, "params": params},
    )
    return Cube(data=to_dask(params), info=info)
