"""Out-of-core statistics of a cube: zero fraction, range, effective bits, histogram, order-0 entropy, bounds.

One pass over the Dask array, whatever its size: each block is reduced to a value histogram (``np.bincount``
over the full range for integer dtypes of at most 16 bits, ``np.unique`` counts otherwise) and the histograms
are merged in a tree. It runs on whatever Dask scheduler is active: a ``distributed.Client`` if one is the
default, else the threaded scheduler.

The bounds are the study's information-theoretic limits (section 3.3):

* ``sparsity_bound = bits / H2(s)``, with ``H2`` the binary entropy of the zero fraction ``s``: the ratio a coder
  could reach if only the zero/non-zero pattern carried information (optimistic);
* ``entropy_bound = bits / H0``, with ``H0`` the order-0 Shannon entropy of the value histogram in bits per
  value: the limit of any coder that treats values as independent draws from the histogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cubebench.errors import CubebenchError
from cubebench.lazy_dask import import_dask_array
from cubebench.stats import binary_entropy

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from cubebench.cube import Cube

#: Distinct values tracked exactly for dtypes without a dense histogram; beyond, entropy is reported as NaN.
MAX_DISTINCT = 2**20
#: Largest histogram kept in :class:`CubeStats` (values with non-zero counts).
MAX_HISTOGRAM = 65536
_FANIN = 8


@dataclass(frozen=True)
class CubeStats:
    """Statistics of a cube's values.

    ``effective_bits``: for integer dtypes, the bits needed for the value range (``max.bit_length()`` for
    non-negative data, plus a sign bit otherwise); for float dtypes, the bits of the integer part of the largest
    magnitude (fractional bits are not counted; -1 if the data hold inf). ``min``/``max`` ignore NaN.
    ``histogram`` is ``(values, counts)`` of the values that occur, or two empty arrays when there are more
    than :data:`MAX_HISTOGRAM` distinct values. ``distinct_values`` is -1 (and the entropy NaN) when a float
    or 32/64-bit integer cube has more than :data:`MAX_DISTINCT` distinct values.
    """

    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    zero_fraction: float
    max: float | int
    min: float | int
    effective_bits: int
    entropy_bits: float
    sparsity_bound: float
    entropy_bound: float
    distinct_values: int
    histogram: tuple[np.ndarray, np.ndarray] = field(repr=False, compare=False)

    def to_dict(self, histogram: bool = False) -> dict[str, Any]:
        """Plain-dict form; the histogram (as two lists) only if asked for."""
        out: dict[str, Any] = {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "nbytes": self.nbytes,
            "zero_fraction": self.zero_fraction,
            "max": self.max,
            "min": self.min,
            "effective_bits": self.effective_bits,
            "entropy_bits": self.entropy_bits,
            "sparsity_bound": self.sparsity_bound,
            "entropy_bound": self.entropy_bound,
            "distinct_values": self.distinct_values,
        }
        if histogram:
            values, counts = self.histogram
            out["histogram"] = {"values": values.tolist(), "counts": counts.tolist()}
        return out


# --------------------------------------------------------------------------------------------------------------
# Per-block partial histograms and their merge
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Partial:
    n: int
    zeros: int
    vmin: float | int | None
    vmax: float | int | None
    dense: np.ndarray | None = None  # counts over the whole range of a <= 16-bit integer dtype
    values: np.ndarray | None = None  # sorted distinct values (sparse mode)
    counts: np.ndarray | None = None
    overflow: bool = False


#: Values histogrammed at a time (bounds bincount's int64 temporary to 32 MiB).
_PIECE = 1 << 22


def _dense_offset(dtype: np.dtype) -> tuple[int, int] | None:
    """``(size, offset)`` of a dense histogram for small integer dtypes, else None."""
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        return 1 << (8 * dtype.itemsize), (int(np.iinfo(dtype).min))
    return None


def _block_partial(block: np.ndarray, max_distinct: int) -> _Partial:
    block = np.asarray(block)
    dtype = block.dtype
    flat = block.reshape(-1)
    n = int(flat.size)
    if n == 0:
        return _Partial(0, 0, None, None)
    zeros = int(n - np.count_nonzero(flat))
    dense = _dense_offset(dtype)
    if dense is not None:
        size, offset = dense
        if offset:  # signed: shift into [0, size) by flipping the sign bit
            unsigned = np.dtype(f"u{dtype.itemsize}")
            idx = flat.view(unsigned) ^ unsigned.type(1 << (8 * dtype.itemsize - 1))
        else:
            idx = flat
        # bincount casts its input to intp (4x a uint16 block): count in pieces so the temporary stays small;
        # and only the non-zero values (most of a detector frame is zero; measured 2x faster), zeros known already
        zero_index = -offset
        counts = np.zeros(size, dtype=np.int64)
        for start in range(0, n, _PIECE):
            piece = idx[start : start + _PIECE]
            counts += np.bincount(piece[piece != zero_index], minlength=size)
        counts[zero_index] += zeros
        nz = np.flatnonzero(counts)
        return _Partial(n, zeros, int(nz[0]) + offset, int(nz[-1]) + offset, dense=counts)
    if dtype.kind == "f":
        finite_or_inf = flat[~np.isnan(flat)]
        vmin = float(finite_or_inf.min()) if finite_or_inf.size else None
        vmax = float(finite_or_inf.max()) if finite_or_inf.size else None
    else:
        vmin, vmax = int(flat.min()), int(flat.max())
    values, counts = np.unique(flat, return_counts=True)
    if values.size > max_distinct:
        return _Partial(n, zeros, vmin, vmax, overflow=True)
    return _Partial(n, zeros, vmin, vmax, values=values, counts=counts.astype(np.int64))


def _merge_extreme(a: Any, b: Any, pick: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


def _combine(max_distinct: int, *parts: _Partial) -> _Partial:
    n = sum(p.n for p in parts)
    zeros = sum(p.zeros for p in parts)
    vmin = vmax = None
    for p in parts:
        vmin = _merge_extreme(vmin, p.vmin, min)
        vmax = _merge_extreme(vmax, p.vmax, max)
    live = [p for p in parts if p.n]
    if live and all(p.dense is not None for p in live):
        total = np.zeros_like(live[0].dense)
        for p in live:
            total += p.dense
        return _Partial(n, zeros, vmin, vmax, dense=total)
    if any(p.overflow for p in live):
        return _Partial(n, zeros, vmin, vmax, overflow=True)
    if not live:
        return _Partial(n, zeros, vmin, vmax)
    values = np.concatenate([p.values for p in live if p.values is not None])
    counts = np.concatenate([p.counts for p in live if p.counts is not None])
    uniq, inverse = np.unique(values, return_inverse=True)
    if uniq.size > max_distinct:
        return _Partial(n, zeros, vmin, vmax, overflow=True)
    merged = np.bincount(inverse.reshape(-1), weights=counts, minlength=uniq.size)
    return _Partial(n, zeros, vmin, vmax, values=uniq, counts=np.rint(merged).astype(np.int64))


# --------------------------------------------------------------------------------------------------------------
# Public
# --------------------------------------------------------------------------------------------------------------


def entropy_bits(counts: np.ndarray) -> float:
    """Order-0 Shannon entropy, in bits per value, of a histogram's counts."""
    c = np.asarray(counts, np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))


def _effective_bits(dtype: np.dtype, vmin: Any, vmax: Any) -> int:
    if vmin is None or vmax is None:
        return 0
    if dtype.kind in "iu":
        lo, hi = int(vmin), int(vmax)
        if lo >= 0:
            return hi.bit_length()
        return max(hi.bit_length() if hi > 0 else 0, (-lo - 1).bit_length()) + 1
    big = max(abs(float(vmin)), abs(float(vmax)))
    if not math.isfinite(big):
        return -1
    return math.floor(big).bit_length()


def stats_from_partial(part: _Partial, shape: tuple[int, ...], dtype: np.dtype) -> CubeStats:
    """Turn a merged partial into :class:`CubeStats`."""
    n = part.n
    bits = dtype.itemsize * 8
    zf = part.zeros / n if n else 0.0
    if part.dense is not None:
        _size, offset = _dense_offset(dtype)  # type: ignore[misc]
        nz = np.flatnonzero(part.dense)
        values = (nz + offset).astype(dtype)
        counts = part.dense[nz]
    elif part.values is not None:
        values, counts = part.values, part.counts  # type: ignore[assignment]
    else:
        values, counts = None, None
    if counts is not None:
        h0 = entropy_bits(counts)
        distinct = len(counts)
    else:
        h0, distinct = float("nan"), -1
    h2 = binary_entropy(zf)
    if values is None or len(values) > MAX_HISTOGRAM:
        hist = (np.zeros(0, dtype), np.zeros(0, np.int64))
    else:
        hist = (np.asarray(values), np.asarray(counts, np.int64))

    def py(v: Any) -> Any:
        if v is None:
            return float("nan")
        return int(v) if dtype.kind in "iu" else float(v)

    return CubeStats(
        shape=tuple(int(s) for s in shape),
        dtype=dtype.name,
        nbytes=int(np.prod(shape, dtype=np.int64)) * dtype.itemsize,
        zero_fraction=float(zf),
        max=py(part.vmax),
        min=py(part.vmin),
        effective_bits=_effective_bits(dtype, part.vmin, part.vmax),
        entropy_bits=float(h0),
        sparsity_bound=bits / h2 if h2 > 0 else float("inf"),
        entropy_bound=(bits / h0 if h0 > 0 else float("inf")) if math.isfinite(h0) else float("nan"),
        distinct_values=distinct,
        histogram=hist,
    )


def array_stats(data: Any, max_distinct: int | None = None) -> CubeStats:
    """:class:`CubeStats` of a Dask (or NumPy) array, in one pass over its blocks.

    ``max_distinct`` (default :data:`MAX_DISTINCT`) caps the distinct values tracked for dtypes without a dense
    histogram.
    """
    da = import_dask_array()
    from dask.base import compute
    from dask.delayed import delayed

    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=-1)
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "iuf":
        from cubebench.errors import DatasetError

        raise DatasetError(f"statistics need a real integer or float dtype, got {dtype}")
    limit = MAX_DISTINCT if max_distinct is None else int(max_distinct)
    parts = [delayed(_block_partial)(b, limit) for b in data.to_delayed().reshape(-1)]
    while len(parts) > 1:
        parts = [delayed(_combine)(limit, *parts[i : i + _FANIN]) for i in range(0, len(parts), _FANIN)]
    (part,) = compute(parts[0])
    return stats_from_partial(part, tuple(data.shape), dtype)


def blocks_partial(blocks: Iterable[np.ndarray], max_distinct: int | None = None) -> _Partial:
    """The combinable partial statistics of a sequence of pieces of one cube (for out-of-core passes).

    Combine the partials of all pieces with :func:`combine_partials`, then :func:`stats_from_partial`.
    """
    limit = MAX_DISTINCT if max_distinct is None else int(max_distinct)
    return _combine(limit, *(_block_partial(block, limit) for block in blocks))


def combine_partials(parts: Sequence[_Partial], max_distinct: int | None = None) -> _Partial:
    """Merge partial statistics of disjoint pieces (see :func:`blocks_partial`)."""
    return _combine(MAX_DISTINCT if max_distinct is None else int(max_distinct), *parts)


def cube_stats(cube: Cube) -> CubeStats:
    """Statistics of a :class:`~cubebench.cube.Cube`, computed out of core (never loads the cube).

    Examples
    --------
    >>> from cubebench.sources import open_cube
    >>> s = cube_stats(open_cube({"preset": "4d_diff", "scale": 0.03125}))
    >>> 0.73 < s.zero_fraction < 0.76, s.effective_bits <= 12
    (True, True)

    Raises
    ------
    DatasetError
        When the source's data cannot be read, naming the dataset and its file.
    """
    try:
        return array_stats(cube.data)
    except CubebenchError:
        raise
    except Exception as exc:
        raise cube.info.unreadable("computing its statistics", exc) from exc
