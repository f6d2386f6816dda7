"""The storages of one run: a local S3 server started when an entry asks for one, each S3 entry checked and
rooted at the run's own prefix, and everything the run wrote removed at the end (also on errors and Ctrl-C).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cubebench.errors import StorageError
from cubebench.storage import S3Storage, check_reachable, create_bucket, delete_prefix, local_s3_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from cubebench.experiment import Experiment
    from cubebench.storage import S3Endpoint, StorageSpec


class StorageLost(StorageError):
    """An S3 storage stopped answering during a run: its remaining cells were not run (``--resume`` runs them)."""


def storage_down(spec: StorageSpec) -> str:
    """Why ``spec`` no longer answers (one line naming the endpoint), or '' when it does or is local."""
    if not isinstance(spec, S3Storage):
        return ""
    try:
        check_reachable(spec)
    except StorageError as exc:
        return str(exc)
    return ""


def run_prefix(exp: Experiment) -> str:
    """A prefix no earlier run used: ``<experiment>/<UTC time>-<random>``."""
    return f"{exp.name}/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"


@contextmanager
def open_storages(exp: Experiment, scratch: Path) -> Iterator[dict[str, StorageSpec]]:
    """Storage label -> its spec for this run; one local S3 server (data under ``scratch/s3``) if any entry says
    ``server: local``. An entry with ``create_bucket: true`` has its bucket created when missing. Each S3 entry is
    checked before the first cell (a one-line :class:`StorageError` naming the endpoint); on
    the way out the run's prefix is deleted (only what the run wrote) and the server is stopped."""
    specs: dict[str, StorageSpec] = {}
    prefix = run_prefix(exp)
    with contextlib.ExitStack() as stack:
        server: S3Endpoint | None = None
        for spec in exp.storage:
            if not isinstance(spec, S3Storage):
                specs[spec.label] = spec
                continue
            if spec.server == "local":
                if server is None:
                    server = stack.enter_context(local_s3_server(scratch / "s3"))
                resolved = server.storage(prefix, spec=spec)
            else:
                resolved = spec.under(prefix)
                if spec.create_bucket:
                    create_bucket(resolved)
            check_reachable(resolved)
            stack.callback(_remove_quietly, resolved)
            specs[spec.label] = resolved
        yield specs


def _remove_quietly(spec: S3Storage) -> None:
    with contextlib.suppress(StorageError, OSError):
        delete_prefix(spec)
