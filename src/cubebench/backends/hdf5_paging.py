"""Cloud-optimised HDF5 (paged aggregation): the ``h5py.File`` options of the ``hdf5: {page_size: ...}`` setting.

With ``fs_strategy="page"`` HDF5 allocates file space in pages of ``fs_page_size`` bytes and keeps metadata pages
apart from raw-data pages, so a file's superblock, object headers and chunk index sit together in a few pages
instead of being spread between chunks. A reader opened with a page buffer (``page_buf_size``, a multiple of the
page size) then reads metadata a whole page at a time: on S3, a few large ranged GETs instead of many small ones.
The file stays an ordinary HDF5 file that any h5py opens, with or without a page buffer.

>>> create_options(0), open_options(0)
({}, {})
>>> create_options(2**22)["fs_strategy"], open_options(2**22)["page_buf_size"] // 2**22
('page', 8)
"""

from __future__ import annotations

from typing import Any

#: Pages a reader's page buffer holds: room for the metadata pages and the raw-data pages being read.
BUFFER_PAGES = 8


def create_options(page_size: int) -> dict[str, Any]:
    """``h5py.File`` options that write a paged file with pages of ``page_size`` bytes ({} when 0: off)."""
    return {"fs_strategy": "page", "fs_page_size": page_size} if page_size else {}


def open_options(page_size: int) -> dict[str, Any]:
    """``h5py.File`` options that read a file of ``page_size`` pages through a page buffer ({} when 0: off)."""
    return {"page_buf_size": BUFFER_PAGES * page_size} if page_size else {}


def page_size_of(f: Any) -> int:
    """The page size of the open ``h5py.File`` ``f`` when it uses paged aggregation, else 0."""
    import h5py

    plist = f.id.get_create_plist()
    if plist.get_file_space_strategy()[0] != h5py.h5f.FSPACE_STRATEGY_PAGE:
        return 0
    return int(plist.get_file_space_page_size())
