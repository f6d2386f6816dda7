"""The representation registry: what a 4D-STEM cube may be stored as, lossless or not, and what each discards.

A :class:`RepresentationSpec` is plain data (id, family, parameters, whether it is lossless, and one line saying
what it discards). For one cube it yields a :class:`Layout` (stored shape, dtype, chunks, HDF5 filter and
detector geometry) whose methods run on the Dask workers, chunk by chunk:

- :meth:`Layout.transform`: a source block -> its stored form (a dict of arrays; ``{"data": ...}`` when dense);
- :meth:`Layout.reference`: what a correct store-and-load must return for that form (the form itself, or, for a
  lossy codec, the codec's own in-memory round trip), so storage bugs are caught for lossy entries too;
- :meth:`Layout.decode`: a stored form -> a dense block in the representation's own detector geometry;
- :meth:`Layout.restore`: a stored form -> a block in source coordinates, in counts (bins spread evenly, crops
  zero-padded).

Families and their ids (parametric ids are parsed, so ``bin8-sum`` or ``zfp-acc-0.1`` work as well):

============  =============================  ===================================================================
family        ids                            stored form
============  =============================  ===================================================================
codec         any lossless codec id          the cube as is, through that codec's HDF5 filter
bin           ``bin<k>-sum``, ``bin<k>-mean``  k x k detector binning (sum: integer, wide enough; mean: float)
crop          ``crop-<fraction>``,           the detector disk of that radius (fraction of the detector's
              ``crop-r<pixels>``             half-side, or pixels) in its bounding box, zero outside
uint8         ``uint8-sat``                  uint8 counts, saturating at 255
events        ``events``                     coordinates (y, x) and counts of the non-zero pixels, per frame
zfp           ``zfp-acc-<tol>``              float, HDF5 ZFP filter in fixed-accuracy mode (abs. error <= tol)
sz3           ``sz3-abs-<tol>``              float, HDF5 SZ3 filter with an absolute error bound
bitround      ``bitround-<bits>-zstd``       float with the mantissa rounded to ``bits`` bits, zstd filter
============  =============================  ===================================================================

Reduced forms (bin, crop, uint8, events) are stored with one lossless codec (the experiment's
``sufficiency.codec``, ``blosc-zstd`` by default), so their bytes measure the representation, not a codec.

Examples
--------
>>> spec = get_representation("bin2-sum")
>>> layout = spec.layout((2, 2, 8, 8), "uint16", max_value=4095, chunks=(2, 2, 8, 8))
>>> layout.stored_shape, layout.stored_dtype
((2, 2, 4, 4), '<u2')
>>> block = np.ones((2, 2, 8, 8), dtype="uint16")
>>> int(layout.transform(block)["data"][0, 0, 0, 0])
4
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.codecs import CODECS, get_codec
from cubebench.cube import checksum_stream
from cubebench.errors import CodecUnavailableError, ConfigError
from cubebench.sufficiency.targets import DetectorGeometry

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DEFAULT_STORAGE_CODEC",
    "REPRESENTATIONS",
    "Form",
    "Layout",
    "RepresentationSpec",
    "form_checksum",
    "get_representation",
    "resolve_representations",
]

#: A stored form: named arrays (``{"data": block}`` for dense forms).
Form = dict[str, np.ndarray]

#: The lossless codec that stores reduced forms unless the experiment names another.
DEFAULT_STORAGE_CODEC = "blosc-zstd"

#: HDF5 filter ids of the lossy codecs (hdf5plugin).
FILTER_ZFP = 32013
FILTER_SZ3 = 32024


# ---------------------------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class RepresentationSpec:
    """One way to store a cube, described neutrally.

    Parameters
    ----------
    id
        Registry key, e.g. ``"bin2-sum"``.
    family
        ``codec``, ``bin``, ``crop``, ``uint8``, ``events``, ``zfp``, ``sz3`` or ``bitround``.
    params
        The family's parameters as ``(name, value)`` pairs (JSON-able).
    lossless
        True when every source value comes back exactly (``events``: for any data whose zeros are +0).
    discards
        One line: what information the representation gives up.
    description
        One line for tables and provenance.
    """

    id: str
    family: str
    params: tuple[tuple[str, Any], ...]
    lossless: bool
    discards: str
    description: str

    @property
    def kw(self) -> dict[str, Any]:
        """``params`` as a dict."""
        return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-able) for provenance."""
        return {
            "id": self.id,
            "family": self.family,
            "params": self.kw,
            "lossless": self.lossless,
            "discards": self.discards,
            "description": self.description,
        }

    def layout(
        self,
        shape: Sequence[int],
        dtype: Any,
        max_value: float | None = None,
        chunks: Sequence[int] | None = None,
        codec: str = DEFAULT_STORAGE_CODEC,
    ) -> Layout:
        """How this representation stores a cube of ``shape`` and ``dtype``.

        Parameters
        ----------
        shape, dtype
            The source cube's ``(scan_y, scan_x, det_y, det_x)`` shape and dtype.
        max_value
            The source's largest value (chooses the integer width of sum binning and whether ``uint8-sat``
            saturates); None assumes the dtype's maximum.
        chunks
            The source block one chunk holds, ``(cy, cx, det_y, det_x)`` (whole frames); default: the whole cube.
        codec
            The lossless codec that stores reduced forms (bin, crop, uint8, events).

        Raises
        ------
        CodecUnavailableError
            ``"<id>: <reason>"`` when the representation cannot store this cube here (missing filter, detector
            not divisible by the bin, ...).
        """
        shape4 = tuple(int(s) for s in shape)
        if len(shape4) != 4:
            raise CodecUnavailableError(f"{self.id}: needs a 4-D cube, got shape {shape4}")
        dt = np.dtype(dtype)
        if dt.kind not in "uif":
            raise CodecUnavailableError(f"{self.id}: dtype {dt} is not an integer or float type")
        chunk = tuple(int(c) for c in (chunks or shape4))
        chunk = (min(chunk[0], shape4[0]), min(chunk[1], shape4[1]), shape4[2], shape4[3])
        try:
            return _FAMILIES[self.family].layout(self, shape4, dt, max_value, chunk, codec)
        except _Unavailable as err:
            raise CodecUnavailableError(f"{self.id}: {err}") from None


class _Unavailable(Exception):
    """Internal: a layout cannot be built; :meth:`RepresentationSpec.layout` adds the id."""


# ---------------------------------------------------------------------------------------------------------------
# The layout: everything a worker needs, picklable


@dataclass(frozen=True)
class Layout:
    """One representation of one cube: stored shape and dtype, chunking, HDF5 filter, detector geometry."""

    spec: RepresentationSpec
    source_shape: tuple[int, ...]
    source_dtype: str
    #: The source block a stored chunk holds: ``(cy, cx, det_y, det_x)``.
    chunks: tuple[int, ...]
    #: ``dense`` (one 4-D array) or ``events`` (coordinate and count lists).
    kind: str
    stored_shape: tuple[int, ...]
    stored_dtype: str
    geometry: DetectorGeometry
    #: Keyword arguments for h5py ``create_dataset`` (the filter), as pairs.
    filter: tuple[tuple[str, Any], ...]
    #: One line: the container and filter, e.g. ``"HDF5, blosc-zstd filter"``.
    storage: str
    #: Absolute error bound on every decoded value (NaN when the representation promises none).
    bound: float = math.nan
    #: Extra family parameters resolved for this cube (crop radius, ...), as pairs.
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def stored_chunks(self) -> tuple[int, ...]:
        """Chunk shape of the stored dense array: the source block's scan part and the stored detector."""
        return (self.chunks[0], self.chunks[1], *self.geometry.shape)

    @property
    def hdf5_kwargs(self) -> dict[str, Any]:
        """``filter`` as a dict for ``create_dataset``."""
        return dict(self.filter)

    def transform(self, block: np.ndarray) -> Form:
        """The stored form of a source block ``(ny, nx, det_y, det_x)`` (whole frames)."""
        return _FAMILIES[self.spec.family].transform(self, np.ascontiguousarray(block))

    def reference(self, form: Form) -> Form:
        """What a correct store-and-load returns for ``form``: the form itself, or a lossy codec's round trip."""
        if self.spec.family in ("zfp", "sz3"):
            return {"data": _h5_round_trip(form["data"], self.stored_chunks, self.hdf5_kwargs)}
        return form

    def decode(self, form: Form) -> np.ndarray:
        """A dense block ``(ny, nx, h, w)`` in this representation's own detector geometry, stored units."""
        if self.kind == "events":
            return _events_to_dense(form, self.source_shape[2:], np.dtype(self.stored_dtype))
        return form["data"]

    def restore(self, form: Form) -> np.ndarray:
        """The block in source coordinates, in counts (float64): bins spread evenly, crops zero-padded."""
        return self.geometry.to_source(self.decode(form))

    def to_dict(self) -> dict[str, Any]:
        """Plain form for provenance."""
        return {
            "representation": self.spec.id,
            "kind": self.kind,
            "stored_shape": list(self.stored_shape),
            "stored_dtype": self.stored_dtype,
            "stored_chunks": list(self.stored_chunks),
            "storage": self.storage,
            "bound": None if math.isnan(self.bound) else self.bound,
            "geometry": self.geometry.to_dict(),
            **dict(self.extra),
        }


def form_checksum(form: Form) -> int:
    """The project's chunk hash (:func:`cubebench.cube.checksum`, XXH3-64) over a stored form's arrays, sorted by
    name, each in C order: equal forms, equal checksums (a dense form hashes like its ``data`` array)."""
    hasher = checksum_stream()
    for name in sorted(form):
        hasher.update(np.ascontiguousarray(form[name]).data)
    return int(hasher.intdigest())


# ---------------------------------------------------------------------------------------------------------------
# Family helpers


def _storage_filter(codec_id: str, dtype: np.dtype) -> tuple[tuple[tuple[str, Any], ...], str]:
    """The h5py filter kwargs of a lossless codec for ``dtype``, and its one-line storage label."""
    try:
        spec = get_codec(codec_id)
        kwargs = spec.hdf5_filter(dtype)
    except CodecUnavailableError as err:
        raise _Unavailable(f"storage codec: {err}") from None
    return tuple(kwargs.items()), f"HDF5, {codec_id} filter"


def _require_plugin(filter_id: int, name: str) -> None:
    try:
        import hdf5plugin  # noqa: F401  (registers the filters)
    except ImportError:
        raise _Unavailable("hdf5plugin is not installed") from None
    from h5py import h5z

    if not h5z.filter_avail(filter_id):
        raise _Unavailable(f"HDF5 filter {name} ({filter_id}) is not registered in this HDF5/hdf5plugin")
    if not h5z.get_filter_info(filter_id) & h5z.FILTER_CONFIG_ENCODE_ENABLED:
        raise _Unavailable(f"HDF5 filter {name} ({filter_id}) can decode but not encode in this build")


def _float_dtype(dt: np.dtype) -> np.dtype:
    """float32 when it holds every value exactly (ints of up to 16 bits, float32), else float64."""
    if dt == np.float32 or (dt.kind in "ui" and dt.itemsize <= 2):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _identity_geometry(shape: tuple[int, ...]) -> DetectorGeometry:
    return DetectorGeometry.identity((shape[2], shape[3]))


def _h5_round_trip(data: np.ndarray, chunks: tuple[int, ...], kwargs: dict[str, Any]) -> np.ndarray:
    """``data`` (one chunk, maybe an edge piece) through an in-memory HDF5 dataset with the same filter and chunk.

    The chunk is zero-padded to its full shape first, as HDF5 pads edge chunks with the fill value.
    """
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filters in this process)

    full = np.zeros(chunks, dtype=data.dtype)
    valid = tuple(slice(0, s) for s in data.shape)
    full[valid] = data
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("x", data=full, chunks=chunks, **kwargs)
    with h5py.File(buffer, "r") as f:
        out = np.asarray(f["x"][valid])
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class _Family:
    layout: Callable[[RepresentationSpec, tuple[int, ...], np.dtype, float | None, tuple[int, ...], str], Layout]
    transform: Callable[[Layout, np.ndarray], Form]


# --- codec: the cube as is ---------------------------------------------------------------------------------------


def _codec_layout(
    spec: RepresentationSpec,
    shape: tuple[int, ...],
    dt: np.dtype,
    max_value: float | None,
    chunks: tuple[int, ...],
    codec: str,
) -> Layout:
    filt, storage = _storage_filter(spec.kw["codec"], dt)
    return Layout(spec, shape, dt.str, chunks, "dense", shape, dt.str, _identity_geometry(shape), filt, storage, 0.0)


def _codec_transform(layout: Layout, block: np.ndarray) -> Form:
    return {"data": block}


# --- bin ---------------------------------------------------------------------------------------------------------


def _sum_dtype(dt: np.dtype, max_value: float | None, factor: int) -> np.dtype:
    """The narrowest dtype of the source's kind that holds ``max_value * factor**2``."""
    if dt.kind == "f":
        return dt
    top = float(np.iinfo(dt).max if max_value is None else max(max_value, 0)) * factor**2
    candidates = (np.uint8, np.uint16, np.uint32, np.uint64) if dt.kind == "u" else (np.int16, np.int32, np.int64)
    for cand in candidates:
        if np.dtype(cand).itemsize >= dt.itemsize and top <= np.iinfo(cand).max:
            return np.dtype(cand)
    raise _Unavailable(f"a sum of {factor}x{factor} values up to {top / factor**2:g} overflows 64-bit integers")


def _bin_layout(
    spec: RepresentationSpec,
    shape: tuple[int, ...],
    dt: np.dtype,
    max_value: float | None,
    chunks: tuple[int, ...],
    codec: str,
) -> Layout:
    factor, how = spec.kw["factor"], spec.kw["how"]
    dy, dx = shape[2], shape[3]
    if dy % factor or dx % factor:
        raise _Unavailable(f"the detector {dy} x {dx} is not divisible by the bin factor {factor}")
    stored = _sum_dtype(dt, max_value, factor) if how == "sum" else _float_dtype(dt)
    filt, storage = _storage_filter(codec, stored)
    geometry = DetectorGeometry(
        (dy // factor, dx // factor), (dy, dx), bin=factor, scale=1.0 if how == "sum" else float(factor**2)
    )
    stored_shape = (shape[0], shape[1], dy // factor, dx // factor)
    return Layout(spec, shape, dt.str, chunks, "dense", stored_shape, stored.str, geometry, filt, storage)


def _bin_transform(layout: Layout, block: np.ndarray) -> Form:
    factor = layout.spec.kw["factor"]
    ny, nx, dy, dx = block.shape
    tiles = block.reshape(ny, nx, dy // factor, factor, dx // factor, factor)
    stored = np.dtype(layout.stored_dtype)
    if layout.spec.kw["how"] == "sum":
        wide = np.float64 if stored.kind == "f" else (np.uint64 if stored.kind == "u" else np.int64)
        data = tiles.sum(axis=(3, 5), dtype=wide).astype(stored)
    else:
        data = (tiles.sum(axis=(3, 5), dtype=np.float64) / factor**2).astype(stored)
    return {"data": np.ascontiguousarray(data)}


# --- crop --------------------------------------------------------------------------------------------------------


def _crop_layout(
    spec: RepresentationSpec,
    shape: tuple[int, ...],
    dt: np.dtype,
    max_value: float | None,
    chunks: tuple[int, ...],
    codec: str,
) -> Layout:
    dy, dx = shape[2], shape[3]
    radius = float(spec.kw["fraction"]) * min(dy, dx) / 2 if "fraction" in spec.kw else float(spec.kw["pixels"])
    cy, cx = (dy - 1) / 2, (dx - 1) / 2
    y0, y1 = max(0, math.ceil(cy - radius)), min(dy - 1, math.floor(cy + radius))
    x0, x1 = max(0, math.ceil(cx - radius)), min(dx - 1, math.floor(cx + radius))
    if y1 < y0 or x1 < x0:
        raise _Unavailable(f"radius {radius:g} px keeps no detector pixel")
    filt, storage = _storage_filter(codec, dt)
    geometry = DetectorGeometry((y1 - y0 + 1, x1 - x0 + 1), (dy, dx), offset=(y0, x0))
    stored_shape = (shape[0], shape[1], *geometry.shape)
    extra = (("radius_px", radius), ("center_px", [cy, cx]))
    return Layout(spec, shape, dt.str, chunks, "dense", stored_shape, dt.str, geometry, filt, storage, extra=extra)


def _crop_transform(layout: Layout, block: np.ndarray) -> Form:
    g = layout.geometry
    extra = dict(layout.extra)
    (y0, x0), (h, w) = g.offset, g.shape
    data = np.array(block[:, :, y0 : y0 + h, x0 : x0 + w])
    ys, xs = g.coordinates()
    cy, cx = extra["center_px"]
    outside = np.hypot(ys[:, None] - cy, xs[None, :] - cx) > extra["radius_px"]
    data[:, :, outside] = 0
    return {"data": data}


# --- uint8 -------------------------------------------------------------------------------------------------------


def _uint8_layout(
    spec: RepresentationSpec,
    shape: tuple[int, ...],
    dt: np.dtype,
    max_value: float | None,
    chunks: tuple[int, ...],
    codec: str,
) -> Layout:
    stored = np.dtype(np.uint8)
    filt, storage = _storage_filter(codec, stored)
    return Layout(spec, shape, dt.str, chunks, "dense", shape, stored.str, _identity_geometry(shape), filt, storage)


def _uint8_transform(layout: Layout, block: np.ndarray) -> Form:
    values = np.rint(block) if block.dtype.kind == "f" else block
    return {"data": np.clip(values, 0, 255).astype(np.uint8)}


# --- events ------------------------------------------------------------------------------------------------------


def _events_layout(
    spec: RepresentationSpec,
    shape: tuple[int, ...],
    dt: np.dtype,
    max_value: float | None,
    chunks: tuple[int, ...],
    codec: str,
) -> Layout:
    if max(shape[2], shape[3]) > 65536:
        raise _Unavailable("detector sides above 65536 pixels do not fit uint16 coordinates")
    filt, storage = _storage_filter(codec, dt)
    return Layout(
        spec,
        shape,
        dt.str,
        chunks,
        "events",
        shape,
        dt.str,
        _identity_geometry(shape),
        filt,
        f"{storage} on 1-D event lists",
        0.0,
    )


def _events_transform(layout: Layout, block: np.ndarray) -> Form:
    ny, nx, dy, dx = block.shape
    frames = block.reshape(ny * nx, dy, dx)
    frame, y, x = np.nonzero(frames)
    return {
        "frame_counts": np.bincount(frame, minlength=ny * nx).astype(np.uint32).reshape(ny, nx),
        "y": y.astype(np.uint16),
        "x": x.astype(np.uint16),
        "count": np.ascontiguousarray(frames[frame, y, x]),
    }


def _events_to_dense(form: Form, detector: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    counts = form["frame_counts"]
    ny, nx = counts.shape
    out = np.zeros((ny * nx, int(detector[0]), int(detector[1])), dtype=dtype)
    frame = np.repeat(np.arange(ny * nx), counts.reshape(-1).astype(np.int64))
    out[frame, form["y"].astype(np.intp), form["x"].astype(np.intp)] = form["count"]
    return out.reshape(ny, nx, int(detector[0]), int(detector[1]))


# --- lossy codecs ------------------------------------------------------------------------------------------------


def _lossy_layout(
    spec: RepresentationSpec,
    shape: tuple[int, ...],
    dt: np.dtype,
    max_value: float | None,
    chunks: tuple[int, ...],
    codec: str,
) -> Layout:
    stored = _float_dtype(dt)
    tol = float(spec.kw["tolerance"])
    if spec.family == "zfp":
        _require_plugin(FILTER_ZFP, "Zfp")
        import hdf5plugin

        kwargs = dict(hdf5plugin.Zfp(accuracy=tol))
        storage = f"HDF5, ZFP filter {FILTER_ZFP}, fixed accuracy {tol:g}"
    else:
        _require_plugin(FILTER_SZ3, "SZ3")
        import hdf5plugin

        kwargs = dict(hdf5plugin.SZ3(absolute=tol))
        storage = f"HDF5, SZ3 filter {FILTER_SZ3}, absolute error bound {tol:g}"
    return Layout(
        spec,
        shape,
        dt.str,
        chunks,
        "dense",
        shape,
        stored.str,
        _identity_geometry(shape),
        tuple(kwargs.items()),
        storage,
        tol,
    )


def _lossy_transform(layout: Layout, block: np.ndarray) -> Form:
    return {"data": block.astype(np.dtype(layout.stored_dtype))}


def _bitround_layout(
    spec: RepresentationSpec,
    shape: tuple[int, ...],
    dt: np.dtype,
    max_value: float | None,
    chunks: tuple[int, ...],
    codec: str,
) -> Layout:
    try:
        from numcodecs import BitRound  # noqa: F401
    except ImportError:
        raise _Unavailable("numcodecs.BitRound is not available (pip install numcodecs)") from None
    stored = _float_dtype(dt)
    bits = int(spec.kw["keepbits"])
    mantissa = np.finfo(stored).nmant
    if bits > mantissa:
        raise _Unavailable(f"{stored} has {mantissa} mantissa bits, fewer than {bits}")
    filt, storage = _storage_filter("zstd", stored)
    return Layout(
        spec,
        shape,
        dt.str,
        chunks,
        "dense",
        shape,
        stored.str,
        _identity_geometry(shape),
        filt,
        f"{storage} after rounding to {bits} mantissa bits",
        extra=(("max_relative_error", 2.0 ** -(bits + 1)),),
    )


def _bitround_transform(layout: Layout, block: np.ndarray) -> Form:
    from numcodecs import BitRound

    values = np.ascontiguousarray(block.astype(np.dtype(layout.stored_dtype)))
    rounded = BitRound(keepbits=int(layout.spec.kw["keepbits"])).encode(values)  # an integer view of the bits
    return {"data": np.asarray(rounded).view(values.dtype).reshape(block.shape)}


_FAMILIES: dict[str, _Family] = {
    "codec": _Family(_codec_layout, _codec_transform),
    "bin": _Family(_bin_layout, _bin_transform),
    "crop": _Family(_crop_layout, _crop_transform),
    "uint8": _Family(_uint8_layout, _uint8_transform),
    "events": _Family(_events_layout, _events_transform),
    "zfp": _Family(_lossy_layout, _lossy_transform),
    "sz3": _Family(_lossy_layout, _lossy_transform),
    "bitround": _Family(_bitround_layout, _bitround_transform),
}


# ---------------------------------------------------------------------------------------------------------------
# Building specs from ids


def _codec_spec(codec_id: str) -> RepresentationSpec:
    codec = CODECS[codec_id]
    return RepresentationSpec(
        codec_id, "codec", (("codec", codec_id),), True, "nothing (lossless)", f"the cube as is: {codec.description}"
    )


def _bin_spec(rep_id: str, factor: int, how: str) -> RepresentationSpec:
    word = "summed" if how == "sum" else "averaged"
    return RepresentationSpec(
        rep_id,
        "bin",
        (("factor", factor), ("how", how)),
        False,
        f"detector resolution finer than {factor} x {factor} pixels (each bin's pixels {word})",
        f"{factor}x{factor} detector binning, {how}",
    )


def _crop_spec(rep_id: str, **params: float) -> RepresentationSpec:
    ((key, value),) = params.items()
    where = f"{value:g} of the detector half-side" if key == "fraction" else f"{value:g} px"
    return RepresentationSpec(
        rep_id,
        "crop",
        ((key, value),),
        False,
        f"every detector pixel further than {where} from the centre",
        f"detector cropped to a radius of {where}",
    )


def _lossy_spec(rep_id: str, family: str, tolerance: float) -> RepresentationSpec:
    name = "ZFP fixed accuracy" if family == "zfp" else "SZ3 absolute error bound"
    return RepresentationSpec(
        rep_id,
        family,
        (("tolerance", tolerance),),
        False,
        f"value detail below the error bound ({tolerance:g} counts per pixel)",
        f"{name} {tolerance:g}, stored as float",
    )


def _bitround_spec(rep_id: str, bits: int) -> RepresentationSpec:
    return RepresentationSpec(
        rep_id,
        "bitround",
        (("keepbits", bits),),
        False,
        f"mantissa bits beyond {bits} (relative detail below {2.0 ** -(bits + 1):.2g} of each value)",
        f"bit rounding to {bits} mantissa bits, then zstd",
    )


UINT8 = RepresentationSpec(
    "uint8-sat",
    "uint8",
    (),
    False,
    "counts above 255 (saturated to 255) and fractions of a count",
    "bit-depth reduction to uint8, saturating at 255",
)
EVENTS = RepresentationSpec(
    "events",
    "events",
    (),
    True,
    "nothing for counting data (the zero pixels are implied), as event-based detectors store it",
    "electron-event list: (y, x) and count of every non-zero pixel, per frame",
)

#: A positive decimal number, optionally with an exponent (``0.5``, ``4``, ``1e-3``).
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
#: The parametric id forms, for error messages.
_PATTERN_NAMES = (
    "bin<k>-sum",
    "bin<k>-mean",
    "crop-<fraction>",
    "crop-r<pixels>",
    "zfp-acc-<tol>",
    "sz3-abs-<tol>",
    "bitround-<bits>-zstd",
)


def _parse(rep_id: str) -> RepresentationSpec | None:
    """A spec for a parametric id, or None when ``rep_id`` matches no pattern."""
    if rep_id in CODECS:
        return _codec_spec(rep_id)
    if rep_id == UINT8.id:
        return UINT8
    if rep_id == EVENTS.id:
        return EVENTS
    m = re.fullmatch(r"bin(\d+)-(sum|mean)", rep_id)
    if m:
        factor = int(m.group(1))
        if factor < 2:
            raise ConfigError(f"representation {rep_id!r}: the bin factor must be at least 2")
        return _bin_spec(rep_id, factor, m.group(2))
    m = re.fullmatch(r"crop-r(\d+)", rep_id)
    if m:
        if int(m.group(1)) < 1:
            raise ConfigError(f"representation {rep_id!r}: the crop radius must be at least 1 pixel")
        return _crop_spec(rep_id, pixels=int(m.group(1)))
    m = re.fullmatch(r"(crop|zfp-acc|sz3-abs)-(" + _NUMBER + ")", rep_id)
    if m:
        value = float(m.group(2))
        if m.group(1) == "crop":
            if not 0 < value <= 1:
                raise ConfigError(f"representation {rep_id!r}: the crop fraction must be in (0, 1]")
            return _crop_spec(rep_id, fraction=value)
        if not value > 0:
            raise ConfigError(f"representation {rep_id!r}: the error bound must be positive")
        return _lossy_spec(rep_id, "zfp" if m.group(1) == "zfp-acc" else "sz3", value)
    m = re.fullmatch(r"bitround-(\d+)-zstd", rep_id)
    if m:
        bits = int(m.group(1))
        if not 0 <= bits <= 52:
            raise ConfigError(f"representation {rep_id!r}: keepbits must be 0 to 52")
        return _bitround_spec(rep_id, bits)
    return None


#: The default catalog: ids shown by ``all``; any parametric id (``bin8-sum``, ``zfp-acc-0.1``) also works.
_CATALOG_IDS = (
    "events",
    "bin2-sum",
    "bin2-mean",
    "bin4-sum",
    "bin4-mean",
    "crop-0.5",
    "crop-0.25",
    "uint8-sat",
    "zfp-acc-0.5",
    "zfp-acc-4",
    "zfp-acc-32",
    "sz3-abs-0.5",
    "sz3-abs-4",
    "sz3-abs-32",
    "bitround-3-zstd",
    "bitround-5-zstd",
    "bitround-7-zstd",
)

#: Every catalog representation by id: the lossless codecs first, then the reduced and lossy forms.
REPRESENTATIONS: dict[str, RepresentationSpec] = {
    **{cid: _codec_spec(cid) for cid in CODECS},
    **{rid: spec for rid in _CATALOG_IDS if (spec := _parse(rid)) is not None},
}


def get_representation(rep_id: str) -> RepresentationSpec:
    """The spec for ``rep_id`` (a catalog id or a parametric one); unknown ids raise a one-line ConfigError."""
    if not isinstance(rep_id, str):
        raise ConfigError(f"a representation id must be a string, got {rep_id!r}")
    if rep_id in REPRESENTATIONS:
        return REPRESENTATIONS[rep_id]
    spec = _parse(rep_id)
    if spec is None:
        patterns = ", ".join(_PATTERN_NAMES)
        raise ConfigError(
            f"unknown representation {rep_id!r}; valid: a codec id, events, uint8-sat, {patterns} "
            f"(catalog: {', '.join(_CATALOG_IDS)})"
        )
    return spec


def resolve_representations(selection: str | Sequence[str], origin: str = "representations") -> tuple[str, ...]:
    """Turn ``"all"`` (lossless ``blosc-zstd`` plus the catalog), one id or a list of ids into validated ids.

    Raises
    ------
    ConfigError
        An id is unknown or malformed (named), listed twice, or the list is empty.
    """
    if isinstance(selection, str):
        if selection == "all":
            return ("blosc-zstd", *_CATALOG_IDS)
        selection = [selection]
    if not isinstance(selection, (list, tuple)) or not selection:
        raise ConfigError(f"{origin} must be 'all' or a non-empty list of representation ids, got {selection!r}")
    ids = list(selection)
    for rep_id in ids:
        try:
            get_representation(rep_id)
        except ConfigError as err:
            raise ConfigError(f"{origin}: {err}") from None
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise ConfigError(f"{origin}: {', '.join(dups)} listed more than once")
    return tuple(ids)
