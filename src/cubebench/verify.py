"""Verification: a read-back's per-chunk hashes against the reference's, the one check every path uses.

The runner (each cell), :func:`cubebench.convert.convert` and the inference-sufficiency study compare hashes
(XXH3-64 of each storage chunk's decoded bytes, :func:`cubebench.cube.checksum`) and say what differs in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["first_mismatch"]


def first_mismatch(
    expected: Mapping[tuple[int, ...], int], got: Mapping[tuple[int, ...], int], reference: str = "the source"
) -> str:
    """One line saying how ``got`` differs from ``expected`` (chunk index -> hash), or ``""`` when they agree.

    Examples
    --------
    >>> first_mismatch({(0,): 1, (1,): 2}, {(0,): 1, (1,): 2})
    ''
    >>> first_mismatch({(0,): 1, (1,): 2}, {(0,): 1, (1,): 3})
    '1 of 2 chunks differ from the source, first at chunk (1,)'
    >>> first_mismatch({(0,): 1, (1,): 2}, {(0,): 1})
    '1 chunks missing from the read-back, first [(1,)]'
    """
    if set(expected) != set(got):
        missing = sorted(set(expected) - set(got))
        if missing:
            return f"{len(missing)} chunks missing from the read-back, first {missing[:1]}"
        extra = sorted(set(got) - set(expected))
        return f"{len(extra)} chunks in the read-back that {reference} does not have, first {extra[:1]}"
    bad = [index for index in expected if expected[index] != got[index]]
    if bad:
        return f"{len(bad)} of {len(expected)} chunks differ from {reference}, first at chunk {bad[0]}"
    return ""
