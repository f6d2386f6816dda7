"""A client-side network model: the time a storage's requests and bytes would add over a given link.

``tc netem`` is not available on these kernels, so a loopback S3 server answers in microseconds of network time. To
say what the same cell would cost across a real network, cubebench counts each cell's requests and bytes
(:mod:`cubebench.storage.counters`) and adds, after the measurement and beside it, the time a link with a round
trip ``rtt_ms`` and a bandwidth ``bandwidth`` (bytes per second) adds::

    added = requests / concurrency * rtt + bytes / bandwidth

Every request pays one round trip (concurrent requests overlap theirs: ``concurrency`` in flight at once), and the
bytes share one link. The same formula is applied to every backend and to local rows alike, so it changes which
layout wins only through what each one asks for: many small chunk objects pay in round trips, large ones in
bandwidth. It is a model, not a measurement: no TCP slow start, no server time, no retries.
"""

from __future__ import annotations

from cubebench.errors import ConfigError


def added_latency(requests: int, nbytes: int, rtt_ms: float, bandwidth: float, concurrency: int = 1) -> float:
    """Seconds a link adds to ``requests`` requests moving ``nbytes`` bytes.

    Parameters
    ----------
    requests : number of requests (GET, PUT, LIST, DELETE together).
    nbytes : bytes moved in either direction.
    rtt_ms : round-trip time in milliseconds.
    bandwidth : link bandwidth in bytes per second.
    concurrency : requests in flight at once (their round trips overlap).

    Examples
    --------
    1024 chunk GETs of 1 MiB each over a 10 ms link of 1 GB/s, 8 requests in flight:

    >>> round(added_latency(1024, 1024 * 2**20, rtt_ms=10, bandwidth=1e9, concurrency=8), 3)
    2.354
    >>> added_latency(0, 0, rtt_ms=10, bandwidth=1e9)
    0.0
    """
    if requests < 0 or nbytes < 0:
        raise ConfigError(f"latency: requests ({requests}) and bytes ({nbytes}) must be >= 0")
    if rtt_ms < 0:
        raise ConfigError(f"latency.rtt_ms: must be >= 0, got {rtt_ms}")
    if bandwidth <= 0:
        raise ConfigError(f"latency.bandwidth: must be > 0 bytes/s, got {bandwidth}")
    if concurrency < 1:
        raise ConfigError(f"latency.concurrency: must be >= 1, got {concurrency}")
    rounds = -(-requests // concurrency)  # ceil: a partly filled round still waits one round trip
    return rounds * rtt_ms / 1000.0 + nbytes / bandwidth
