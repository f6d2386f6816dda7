"""Where a run works: its scratch and staging folders, its results folder, and its signals.

Scratch folders carry their owner (host and pid) so that the next run removes those of killed runs; SIGTERM is
handled like Ctrl-C so that a batch system's kill still saves every finished cell and cleans up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cubebench.errors import (
    ConfigError,
    CubebenchError,
    ResultsError,
)
from cubebench.results import LOG_FILE, ResultsLog

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

#: Marks a scratch or staging folder with the host and pid of the run that owns it.
OWNER_FILE = ".cubebench-owner"


def work_folder(parent: str | None, name: str, key: str) -> Path:
    """A fresh folder for this run under ``parent`` (default: the system's temporary folder).

    Folders left behind by runs on this host that were killed (SIGKILL leaves no chance to clean up) are
    removed first.
    """
    base = Path(os.path.expandvars(parent)).expanduser() if parent is not None else Path(tempfile.gettempdir())
    try:
        base.mkdir(parents=True, exist_ok=True)
        remove_stale(base)
        folder = Path(tempfile.mkdtemp(prefix=f"cubebench-{name}-", dir=base))
        (folder / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    except OSError as exc:
        raise ConfigError(f"{key} folder {base} is not usable: {exc.strerror or exc}") from None
    return folder


def remove_stale(base: Path) -> None:
    """Remove ``cubebench-*`` folders in ``base`` whose owning process on this host has died."""
    for folder in base.glob("cubebench-*"):
        try:
            host, pid = (folder / OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue
        if host == socket.gethostname() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Statuses a resumed run may run again (``ok`` cells are kept; ``unavailable`` ones cannot change).
RETRYABLE = ("failed", "unverified", "skipped")


def retry_statuses(retry: Iterable[str], resume: bool) -> frozenset[str]:
    """The statuses to run again, checked: each one retryable, and only together with ``resume``."""
    statuses = frozenset(retry)
    unknown = sorted(statuses - set(RETRYABLE))
    if unknown:
        raise ConfigError(f"retry: {unknown[0]!r} is not a status to retry (choose from {', '.join(RETRYABLE)})")
    if statuses and not resume:
        raise ConfigError("retry re-runs cells of an earlier run: use it together with --resume")
    return statuses


def prepare_output(folder: Path, resume: bool) -> ResultsLog:
    log = ResultsLog(folder / LOG_FILE)
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"results folder {folder} is a file; choose another --out")
    if log.path.exists() and not resume:
        raise ConfigError(f"results already exist in {folder}; add --resume to finish them, or choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ResultsError(f"results folder {folder} is not writable: {exc.strerror or exc}") from None
    return log


class Interrupted(CubebenchError):
    """Ctrl-C or SIGTERM: finished cells are saved; the message says how to resume."""

    exit_code = 130

    def __init__(
        self,
        folder: Path,
        finished: int,
        missing: int,
        experiment: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not finished:
            super().__init__(f"interrupted before any cell finished; nothing saved in {folder}")
            return
        super().__init__(
            f"interrupted: {finished} finished cells saved in {folder}, {missing} missing; "
            f"finish with: {resume_command(folder, experiment, options)}"
        )


def resume_command(folder: Path, experiment: Any, options: Mapping[str, Any] | None = None) -> str:
    """The command line that finishes a run: the experiment's path when it came from a file, and the options
    (``codecs``, ``backends``, ``chunks``, ``runs``, ``dataset``, ``scan_shape``) the run was given.

    Examples
    --------
    >>> from pathlib import Path
    >>> resume_command(Path("r"), "scan.npy", {"codecs": ["blosc-lz4"], "chunks": [(1, 1, 32, 32)], "runs": 1})
    'cubebench run scan.npy --out r --resume --codecs blosc-lz4 --chunks 1,1,32,32 --runs 1'
    """
    source = os.fspath(experiment) if isinstance(experiment, (str, os.PathLike)) else "EXPERIMENT"
    flags = ""
    for key, value in (options or {}).items():
        if value is None:
            continue
        items: list[Any] = [value] if isinstance(value, (str, int)) else list(value)
        if key == "chunks":
            items = [c if isinstance(c, str) else ",".join(str(int(v)) for v in c) for c in items]
        flags += f" --{key.replace('_', '-')} " + " ".join(str(v) for v in items)
    return f"cubebench run {source} --out {folder} --resume{flags}"


#: Set by Ctrl-C or SIGTERM during a run and checked before each cell: the KeyboardInterrupt the handler raises
#: can land in a finalizer or weakref callback, where Python prints and drops it instead of propagating it.
STOP = threading.Event()


def stop_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C or SIGTERM that was swallowed on its way up (in a finalizer or a
    weakref callback): called between cells, so a swallowed interrupt still stops the run there."""
    if STOP.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a batch system's kill still saves and cleans up; lose neither."""

    levels: dict[str, int] = {}

    def handler(signum: int, frame: Any) -> None:
        if not STOP.is_set():
            STOP.set()
            # the interrupt lands inside distributed's calls: their errors while the cluster closes are expected
            for name in list(logging.root.manager.loggerDict):
                if name.split(".")[0] in ("distributed", "tornado"):
                    levels[name] = logging.getLogger(name).level
                    logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise KeyboardInterrupt

    def unraisable(info: Any) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) or STOP.is_set():  # dropped by a finalizer, or collateral
            STOP.set()
        else:
            hook(info)

    STOP.clear()
    hook = sys.unraisablehook
    try:
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for signum, old in previous.items():
            signal.signal(signum, old)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
