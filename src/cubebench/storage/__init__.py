"""Where bytes live: a local folder or an S3 bucket (a real server on loopback, or an endpoint).

Below the backends in the import order: this package imports only :mod:`cubebench.errors`, the standard library
and third-party libraries. ``spec`` parses experiment entries, ``server`` starts a local S3 server, ``client`` is
the one S3 client stack (obstore), ``counters`` counts requests and bytes, ``latency`` models a network link.
obstore is optional (``pip install 'cubebench[s3]'``) and imported only where S3 is used.
"""

from __future__ import annotations

from cubebench.errors import StorageError
from cubebench.storage.client import (
    check_reachable,
    create_bucket,
    delete_object,
    delete_prefix,
    get_object,
    get_range,
    get_suffix,
    list_keys,
    multipart_upload,
    object_exists,
    object_store,
    object_usage,
    put,
    zarr_store,
)
from cubebench.storage.counters import CountingStore, RequestCounter, RequestCounts, folder_usage
from cubebench.storage.latency import added_latency
from cubebench.storage.pacing import PacedStore, pace, request_delay
from cubebench.storage.rangefile import RangedFile
from cubebench.storage.server import S3Endpoint, local_s3_server, server_unavailable
from cubebench.storage.spec import LocalStorage, S3Storage, StorageSpec, parse_storage
from cubebench.storage.tally import take, tally

__all__ = [
    "CountingStore",
    "LocalStorage",
    "PacedStore",
    "RangedFile",
    "RequestCounter",
    "RequestCounts",
    "S3Endpoint",
    "S3Storage",
    "StorageError",
    "StorageSpec",
    "added_latency",
    "check_reachable",
    "create_bucket",
    "delete_object",
    "delete_prefix",
    "folder_usage",
    "get_object",
    "get_range",
    "get_suffix",
    "list_keys",
    "local_s3_server",
    "multipart_upload",
    "object_exists",
    "object_store",
    "object_usage",
    "pace",
    "parse_storage",
    "put",
    "request_delay",
    "server_unavailable",
    "take",
    "tally",
    "zarr_store",
]
