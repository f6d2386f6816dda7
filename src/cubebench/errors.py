"""User-facing errors: each one prints as a single line naming what is at fault.

The CLI turns any :class:`CubebenchError` into that line and exit code 2, so raise one of these (never a bare
``ValueError``) for anything a user can fix: a bad path, key, value or environment.
"""

from __future__ import annotations


class CubebenchError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code = 2


class ConfigError(CubebenchError, ValueError):
    """An experiment file or option is malformed or names an unknown key or value."""


class DatasetError(CubebenchError):
    """A source cannot be opened as a 4-D cube (missing file, wrong key, bad shape or dtype)."""


class CodecUnavailableError(CubebenchError):
    """A codec is unknown, or cannot run on a backend here; the message says why."""


class BackendError(CubebenchError):
    """A storage backend is unknown or cannot be used."""


class ClusterError(CubebenchError):
    """The Dask cluster cannot be started or reached."""


class ResultsError(CubebenchError):
    """A results store cannot be written or read."""


class StorageError(CubebenchError):
    """Storage cannot be used: a server that does not start, an endpoint that does not answer, a request refused."""


class VerificationError(CubebenchError):
    """Data read back differs from the source: the codec path is not lossless."""


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``ExceptionType: message`` on one line, at most ``limit`` characters: how a failure is recorded and shown
    (library messages can span lines, HDF5's in particular)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:limit]
