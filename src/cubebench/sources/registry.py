"""The registry of file kinds a source can be: ``(suffixes, sniff, opener)`` per kind, the only list of them.

:func:`cubebench.sources.open_cube` picks a file's kind by its suffix first, then by its first bytes
(:attr:`FileKind.sniff`), so a file named for one kind is never opened as another, and a file without a known
suffix still opens when its signature says what it is. Each source module registers its kind when
:mod:`cubebench.sources` is imported; a new kind of file is one module and one :func:`register_kind` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from cubebench.cube import Cube

__all__ = ["FILE_KINDS", "FileKind", "find_kind", "register_kind"]


@dataclass(frozen=True)
class FileKind:
    """One kind of source file or store.

    Parameters
    ----------
    name
        Registry id, e.g. ``"hdf5"``.
    label
        How error messages name it, e.g. ``"HDF5 (.h5 .hdf5 ...)"``.
    suffixes
        Lower-case suffixes that name this kind (``".h5"``); the first match wins over any signature.
    sniff
        True when the path's content says it is this kind (magic bytes, or metadata files of a directory).
    opener
        ``(path, dataset, scan_shape, name) -> Cube``: opens it lazily.
    directory
        The kind is a directory (a Zarr store), not a file.
    takes_dataset
        ``dataset:`` (a path inside the file or store) applies.
    """

    name: str
    label: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Path], bool]
    opener: Callable[[Path, str | None, tuple[int, int] | None, str | None], Cube]
    directory: bool = False
    takes_dataset: bool = False


#: Every registered file kind by id, in registration order (the order signatures are tried in).
FILE_KINDS: dict[str, FileKind] = {}


def register_kind(kind: FileKind) -> FileKind:
    """Add ``kind`` to :data:`FILE_KINDS` (called once by each source module at import) and return it."""
    FILE_KINDS[kind.name] = kind
    return kind


def find_kind(path: Path) -> FileKind | None:
    """The kind of ``path``: the one its suffix names, else the first whose signature matches, else None.

    Examples
    --------
    >>> import cubebench.sources  # registers the kinds
    >>> from pathlib import Path
    >>> find_kind(Path("scan.emd")).name
    'hdf5'
    """
    suffix = path.suffix.lower()
    for kind in FILE_KINDS.values():
        if suffix in kind.suffixes:
            return kind
    if not path.exists():
        return None
    for kind in FILE_KINDS.values():
        if kind.directory == path.is_dir() and kind.sniff(path):
            return kind
    return None
