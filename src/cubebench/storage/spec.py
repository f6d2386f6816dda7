"""Where a cell's bytes live: a local folder or an S3 bucket, as frozen specs parsed from experiment entries.

An experiment lists ``storage: [local, s3]``; each entry is parsed here once into a :class:`LocalStorage` or an
:class:`S3Storage`, whose ``label`` is the value of the results' ``storage`` dimension. Credentials never come from
an experiment file: they are read where the client is made, from the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``) or, for a server
cubebench starts itself, from that server (random per start).

Accepted entries::

    local
    {kind: local}
    s3                                   # same as {kind: s3, server: local}
    {kind: s3, server: local}            # a real S3 server on loopback, started per run (storage.server)
    {kind: s3, endpoint: http://host:9000, bucket: NAME, prefix: runs/a, region: eu-west-1}
    {kind: s3, endpoint: http://host:9000, bucket: NAME, create_bucket: true}   # a missing bucket is created
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from cubebench.errors import ConfigError

STORAGE_KINDS = ("local", "s3")
DEFAULT_REGION = "us-east-1"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_KEYS = {"kind", "server", "endpoint", "bucket", "prefix", "region", "latency_ms", "bandwidth_MBps", "create_bucket"}
_SECRET_KEYS = {"access_key_id", "secret_access_key", "session_token", "aws_access_key_id", "aws_secret_access_key"}


@dataclass(frozen=True)
class LocalStorage:
    """Bytes in a local folder (the run's scratch); requests are counted as files and bytes on disk."""

    @property
    def label(self) -> str:
        """The value of the results' ``storage`` dimension."""
        return "local"

    def to_dict(self) -> dict[str, Any]:
        """The entry that parses back into this spec."""
        return {"kind": "local"}


@dataclass(frozen=True)
class S3Storage:
    """Bytes in an S3 bucket, under ``prefix``: an endpoint given, or a server cubebench starts (``server='local'``).

    ``endpoint=None`` means ``AWS_ENDPOINT_URL`` if set, else AWS itself. The credential fields are filled only for
    a server cubebench started (:meth:`cubebench.storage.server.S3Endpoint.storage`); they never appear in a repr
    or in :meth:`to_dict`, so they never reach a results file.
    """

    endpoint: str | None = None
    bucket: str | None = None
    prefix: str = ""
    region: str = DEFAULT_REGION
    server: Literal["local"] | None = None
    #: The client-side link model (:mod:`cubebench.storage.latency`): milliseconds each request waits, and the
    #: bandwidth its bytes share (None: not limited). Applied identically to every backend.
    latency_ms: float = 0.0
    bandwidth_MBps: float | None = None
    #: Whether a missing bucket is created when the run starts (else a missing bucket is an error).
    create_bucket: bool = False
    access_key_id: str | None = field(default=None, repr=False, compare=False)
    secret_access_key: str | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """The value of the results' ``storage`` dimension: ``s3``, or with the link model ``s3-20ms-100MBps``."""
        parts = ["s3"]
        if self.latency_ms:
            parts.append(f"{self.latency_ms:g}ms")
        if self.bandwidth_MBps is not None:
            parts.append(f"{self.bandwidth_MBps:g}MBps")
        return "-".join(parts)

    @property
    def link(self) -> dict[str, Any]:
        """The link model's keys of :meth:`to_dict` (empty when there is none)."""
        out: dict[str, Any] = {}
        if self.latency_ms:
            out["latency_ms"] = self.latency_ms
        if self.bandwidth_MBps is not None:
            out["bandwidth_MBps"] = self.bandwidth_MBps
        return out

    @property
    def resolved(self) -> bool:
        """True when the spec names a bucket (and, for a local server, the server has been started)."""
        return self.bucket is not None and (self.server is None or self.endpoint is not None)

    def to_dict(self) -> dict[str, Any]:
        """The entry that parses back into this spec (no credentials)."""
        if self.server == "local":
            return {"kind": "s3", "server": "local", **({"prefix": self.prefix} if self.prefix else {}), **self.link}
        out: dict[str, Any] = {"kind": "s3", "bucket": self.bucket, "region": self.region}
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        if self.prefix:
            out["prefix"] = self.prefix
        if self.create_bucket:
            out["create_bucket"] = True
        return {**out, **self.link}

    def under(self, *parts: str) -> S3Storage:
        """The same storage with ``parts`` appended to the prefix: one run's or one cell's own keys."""
        return replace(self, prefix=join_key(self.prefix, *parts))


StorageSpec = LocalStorage | S3Storage


def join_key(*parts: str) -> str:
    """Join key parts with ``/``, dropping empty parts and stray slashes.

    >>> join_key("runs/a/", "", "/cell-1", "c/0/0")
    'runs/a/cell-1/c/0/0'
    """
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def parse_storage(value: object, where: str = "storage") -> StorageSpec:
    """Validate one experiment entry into a storage spec; a :class:`ConfigError` names the key or value at fault.

    >>> parse_storage("local").label
    'local'
    >>> parse_storage({"kind": "s3", "endpoint": "http://127.0.0.1:9000", "bucket": "cubes"}).label
    's3'
    """
    if isinstance(value, str):
        if value == "local":
            return LocalStorage()
        if value == "s3":
            return S3Storage(server="local")
        raise ConfigError(f"{where}: unknown storage {value!r}; expected one of {', '.join(STORAGE_KINDS)}")
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected 'local', 's3' or a mapping with 'kind', got {value!r}")
    kind = value.get("kind")
    if kind == "local":
        extra = sorted(set(value) - {"kind"})
        if extra:
            raise ConfigError(f"{where}.{extra[0]}: unknown key for local storage (it takes none)")
        return LocalStorage()
    if kind != "s3":
        raise ConfigError(f"{where}.kind: unknown storage kind {kind!r}; expected one of {', '.join(STORAGE_KINDS)}")
    return _parse_s3(value, where)


def _parse_s3(value: dict[str, Any], where: str) -> S3Storage:
    secret = sorted(set(value) & _SECRET_KEYS)
    if secret:
        raise ConfigError(
            f"{where}.{secret[0]}: credentials do not belong in an experiment file; "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead"
        )
    unknown = sorted(set(value) - _S3_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key for s3 storage; expected {', '.join(sorted(_S3_KEYS))}")
    prefix = _parse_prefix(value.get("prefix", ""), where)
    link = _parse_link(value, where)
    create = value.get("create_bucket", False)
    if not isinstance(create, bool):
        raise ConfigError(f"{where}.create_bucket: expected true or false, got {create!r}")
    server = value.get("server")
    if server is not None:
        if server != "local":
            raise ConfigError(f"{where}.server: {server!r} is not a server cubebench can start; expected 'local'")
        for key in ("endpoint", "bucket", "region", "create_bucket"):
            if key in value:
                raise ConfigError(f"{where}.{key}: not allowed with server: local (the started server sets it)")
        return S3Storage(server="local", prefix=prefix, **link)
    endpoint = value.get("endpoint", os.environ.get("AWS_ENDPOINT_URL") or None)
    if endpoint is not None:
        endpoint = _parse_endpoint(endpoint, f"{where}.endpoint")
    bucket = value.get("bucket")
    if bucket is None:
        raise ConfigError(f"{where}.bucket: missing (an s3 storage needs a bucket, or server: local)")
    if not isinstance(bucket, str) or not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(
            f"{where}.bucket: {bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -, alphanumeric ends)"
        )
    region = value.get("region", os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)
    if not isinstance(region, str) or not region:
        raise ConfigError(f"{where}.region: expected a region name such as 'us-east-1', got {region!r}")
    return S3Storage(endpoint=endpoint, bucket=bucket, prefix=prefix, region=region, create_bucket=create, **link)


def _parse_link(value: dict[str, Any], where: str) -> dict[str, Any]:
    """``latency_ms`` (>= 0) and ``bandwidth_MBps`` (> 0) of the client-side link model, validated."""
    out: dict[str, Any] = {}
    latency = value.get("latency_ms", 0.0)
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not 0 <= latency <= 60_000:
        raise ConfigError(f"{where}.latency_ms: expected milliseconds between 0 and 60000, got {latency!r}")
    if latency:
        out["latency_ms"] = float(latency)
    bandwidth = value.get("bandwidth_MBps")
    if bandwidth is not None:
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or bandwidth <= 0:
            raise ConfigError(f"{where}.bandwidth_MBps: expected a positive number of MB/s, got {bandwidth!r}")
        out["bandwidth_MBps"] = float(bandwidth)
    return out


def _parse_endpoint(endpoint: object, where: str) -> str:
    if not isinstance(endpoint, str):
        raise ConfigError(f"{where}: expected a URL such as http://127.0.0.1:9000, got {endpoint!r}")
    parts = urlsplit(endpoint)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.path not in ("", "/"):
        raise ConfigError(f"{where}: {endpoint!r} is not an http(s)://host[:port] URL")
    return endpoint.rstrip("/")


def _parse_prefix(prefix: object, where: str) -> str:
    if not isinstance(prefix, str):
        raise ConfigError(f"{where}.prefix: expected a key prefix such as 'runs/quick', got {prefix!r}")
    parts = prefix.strip("/").split("/") if prefix.strip("/") else []
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"{where}.prefix: {prefix!r} has an empty, '.' or '..' part")
    return "/".join(parts)
