"""Streaming dispatch: one long-running task per worker thread follows the pacer, instead of a cluster task per batch.

A cluster task costs milliseconds of scheduler and client CPU. At kHz frame rates with single-frame chunks that,
not the codec, set the rate: at 2000 Hz in tasks of about 40 frames the client process spent 0.45 ms of CPU per
frame, twice what the workers spent encoding it with blosc-lz4. So here each worker thread runs one task for the
whole cell (:func:`follow`). It connects back to this process (:mod:`multiprocessing.connection` over TCP,
authenticated, so it works across nodes), receives the released frame count after every pacer tick, and runs the
sink's batch job (:meth:`cubebench.acquisition.writers.Sink.job`, the same function a task would run) on its share
of the chunks, every ``parts``-th in completion order, as soon as they are complete. A batch is whatever was
released meanwhile: one chunk while the worker keeps up, more when it falls behind (so messages and fsyncs
amortize exactly when needed), at most :data:`BATCH_BYTES` of raw frames. Each batch's result comes back on the
same connection to :meth:`~cubebench.acquisition.writers.Sink.accept`.

The workers read the frames from the staged copy, as batch tasks do: they must see this process's scratch folder.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from multiprocessing.connection import Client as connect
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from distributed import Client

    from cubebench.acquisition.writers import Sink
    from cubebench.cube import Block

ChunkIndex = tuple[int, ...]

#: Raw bytes of frames one streamed batch takes at most (unless one chunk is larger).
BATCH_BYTES = 8 * 2**20
#: The hub's last message to a part, after its ``end``.
GOODBYE = -1
#: Seconds the workers have to connect back before the cell fails.
CONNECT_SECONDS = 60.0


def follow(
    address: tuple[str, int],
    authkey: bytes,
    work: list[tuple[Any, int]],
    function: Callable[..., Any],
    args: tuple[Any, ...],
    per_batch: int,
) -> int:
    """A worker's part of a streamed cell: run ``function(batch, *args)`` on ``work`` as its chunks are released.

    ``work`` holds (batch item, flat index of the frame completing its chunk) in completion order; a batch item's
    first element is its chunk index. Returns the number of chunks stored.
    """
    with connect(address, authkey=authkey) as conn:
        released, start, n = 0, 0, len(work)
        while start < n:
            while released <= work[start][1]:
                released = max(released, conn.recv())
            while conn.poll():
                released = max(released, conn.recv())
            stop = start + 1
            while stop < n and stop - start < per_batch and work[stop][1] < released:
                stop += 1
            batch = [item for item, _ in work[start:stop]]
            conn.send(("stored", [item[0] for item in batch], function(batch, *args)))
            start = stop
        conn.send(("end", [], None))
        # read what the hub sent meanwhile up to its goodbye: closing a socket with unread data resets the
        # connection, and the peer may then lose the "end" above
        with contextlib.suppress(EOFError, OSError):
            while conn.recv() != GOODBYE:
                pass
    return n


class StreamHub:
    """This process's end of a streamed cell: start :func:`follow` on every worker thread, relay the releases,
    hand each batch's result to the sink.

    Use as a context manager: leaving it early (an error, Ctrl-C) closes the connections, which ends the tasks.
    """

    def __init__(
        self, client: Client, sink: Sink, schedule: list[tuple[ChunkIndex, Block, int]], chunk_bytes: int
    ) -> None:
        function, args, item = sink.job()
        slots = [address for address, n in sorted(client.nthreads().items()) for _ in range(n)]
        self.parts = len(slots)
        self._sink = sink
        self._conns: list[Connection] = []
        #: Connections still sent releases to (a part's ``end`` takes it out), and the lock of their sends.
        self._open: list[Connection] = []
        self._lock = threading.Lock()
        self._ended = 0
        self._closed = False
        self.error: BaseException | None = None
        authkey = secrets.token_bytes(32)
        self._server = socket.create_server((_reachable_host(client), 0))
        self._server.settimeout(0.05)
        address = self._server.getsockname()[:2]
        per_batch = max(1, BATCH_BYTES // max(1, chunk_bytes))
        self._futures = [
            client.submit(
                follow,
                address,
                authkey,
                [(item(index, block), last) for index, block, last in schedule[part :: self.parts]],
                function,
                args,
                per_batch,
                workers=[worker],
                allow_other_workers=False,
                pure=False,
            )
            for part, worker in enumerate(slots)
        ]
        try:
            self._accept(authkey, f"{address[0]}:{address[1]}")
        except BaseException:
            self.abort()
            raise
        self._thread = threading.Thread(target=self._receive, name="cubebench-stream-hub", daemon=True)
        self._thread.start()

    def _accept(self, authkey: bytes, where: str) -> None:
        """Wait until every part has connected and authenticated; fail fast if a task failed first."""
        deadline = time.monotonic() + CONNECT_SECONDS
        while len(self._conns) < self.parts:
            failed = next((f for f in self._futures if f.status == "error"), None)
            if failed is not None:
                raise RuntimeError(f"a streaming task failed before connecting: {failed.exception()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.parts - len(self._conns)} of {self.parts} workers did not connect back to {where} "
                    f"within {CONNECT_SECONDS:g} s (can the workers reach this host?)"
                )
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            conn = Connection(sock.detach())
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
            self._conns.append(conn)
            self._open.append(conn)

    def release(self, count: int) -> None:
        """Tell every part that frames ``[0, count)`` have been released."""
        for conn in list(self._open):
            self._send(conn, count)

    def _send(self, conn: Connection, count: int, last: bool = False) -> None:
        """Send ``count`` to one part (one sender at a time per connection); ``last``: nothing more goes to it."""
        with self._lock:
            if conn in self._open:
                with contextlib.suppress(OSError):  # a part that died: close() reports it
                    conn.send(count)
                if last:
                    self._open.remove(conn)

    def _receive(self) -> None:
        live = list(self._conns)
        while live and not self._closed:
            try:
                ready = wait(live, timeout=0.5)
            except (OSError, ValueError):  # closed by abort() meanwhile
                return
            for conn in ready:
                assert isinstance(conn, Connection)
                try:
                    kind, indices, result = conn.recv()
                except (EOFError, OSError, ValueError):
                    live.remove(conn)
                    continue
                if kind == "end":
                    self._ended += 1
                    live.remove(conn)
                    self._send(conn, GOODBYE, last=True)
                    continue
                try:
                    self._sink.accept(indices, result)
                except BaseException as exc:  # reported by close(), in the caller's thread
                    self.error = self.error or exc

    def close(self) -> None:
        """Wait until every part has stored its last chunk; raise the first failure."""
        from distributed import wait as wait_for

        try:
            wait_for(self._futures)
            self._thread.join()
            failed = next((f for f in self._futures if f.status != "finished"), None)
            if failed is not None:
                raise RuntimeError(f"a streaming task failed: {failed.exception()}")
            if self.error is not None:
                raise self.error
            if self._ended != self.parts:
                raise RuntimeError(f"{self.parts - self._ended} of {self.parts} streaming tasks ended early")
        finally:
            self._close_connections()

    def abort(self) -> None:
        """Stop early: close the connections (each part ends at its next receive) and cancel the tasks."""
        self._close_connections()
        for future in self._futures:
            future.cancel()

    def _close_connections(self) -> None:
        self._closed = True
        for conn in self._conns:
            conn.close()
        self._server.close()

    def __enter__(self) -> StreamHub:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is not None:
            self.abort()


def _reachable_host(client: Client) -> str:
    """The address of this host's interface towards the scheduler (loopback for a local one)."""
    from urllib.parse import urlparse

    from distributed.utils import get_ip

    address = str(client.scheduler_info(n_workers=0).get("address", ""))
    host = urlparse(address).hostname
    if not host or host in ("127.0.0.1", "localhost") or address.startswith("inproc"):
        return "127.0.0.1"
    return str(get_ip(host))
