"""The one S3 client stack every backend uses: obstore (Rust ``object_store``), and zarr's ``ObjectStore`` over it.

Why obstore and not boto3/s3fs: it needs no botocore (s3fs brings aiobotocore, which pins botocore to a narrow
range and breaks the awscli/boto3 already installed here), it does ranged, multipart and concurrent requests in
Rust without the GIL, and zarr 3 reads and writes through it directly (``zarr.storage.ObjectStore``). Measured
against s3fs in docs/storage.md.

Every helper takes an :class:`~cubebench.storage.spec.S3Storage` and works *under its prefix*: keys are relative
to ``spec.prefix``, so a run that owns ``runs/<id>`` can never name a key outside it, and :func:`delete_prefix`
refuses to run without a prefix. Each helper can update a :class:`~cubebench.storage.counters.RequestCounter`.
Errors are one line naming the endpoint and bucket (:class:`StorageError`); a missing key is a ``FileNotFoundError``.

What obstore lacks, and how it is filled here: bucket creation (no CreateBucket call: :func:`create_bucket` sends a
request obstore presigns) and request counting (no hooks: the helpers and
:class:`~cubebench.storage.counters.CountingStore` count).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cubebench.errors import ConfigError, StorageError
from cubebench.storage.counters import CountingStore, RequestCounter, RequestCounts
from cubebench.storage.pacing import pace, paced
from cubebench.storage.spec import LocalStorage, S3Storage, StorageSpec, join_key

if TYPE_CHECKING:
    from obstore.store import S3Store
    from zarr.abc.store import Store

MIN_PART_SIZE = 5 * 2**20  # S3's smallest multipart part (all but the last)
DELETE_BATCH = 1000  # keys per DeleteObjects request
CONNECT_TIMEOUT = "5s"


def obstore_unavailable() -> str:
    """'' when obstore imports, else why not."""
    try:
        import obstore  # noqa: F401
    except ImportError as exc:
        return f"S3 storage unavailable: obstore is not installed ({exc}); pip install 'cubebench[s3]'"
    return ""


def _where(spec: S3Storage) -> str:
    return f"s3://{spec.bucket}/{spec.prefix} at {spec.endpoint or 'AWS'}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _credentials(spec: S3Storage) -> dict[str, Any]:
    """Credentials for the store: the spec's own (a started server), else the environment's (obstore reads
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` itself), else ``AWS_PROFILE``'s
    through boto3."""
    if spec.access_key_id and spec.secret_access_key:
        return {"config": {"access_key_id": spec.access_key_id, "secret_access_key": spec.secret_access_key}}
    if os.environ.get("AWS_ACCESS_KEY_ID") or not os.environ.get("AWS_PROFILE"):
        return {}
    try:
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError as exc:
        raise StorageError(f"AWS_PROFILE is set but boto3 is not installed to read it ({exc})") from exc
    return {"credential_provider": Boto3CredentialProvider(boto3.Session(profile_name=os.environ["AWS_PROFILE"]))}


def _checked(spec: StorageSpec) -> S3Storage:
    if not isinstance(spec, S3Storage):
        raise ConfigError(f"storage {spec.label!r}: this helper needs S3 storage")
    if spec.server == "local" and spec.endpoint is None:
        raise ConfigError("storage s3 (server: local): the server is not started; use storage.local_s3_server")
    if spec.bucket is None:
        raise ConfigError("storage s3: no bucket")
    why = obstore_unavailable()
    if why:
        raise StorageError(why)
    return spec


@lru_cache(maxsize=64)
def _cached_store(spec: S3Storage, key: str | None, secret: str | None, pid: int, retries: int) -> S3Store:
    from obstore.store import S3Store

    del key, secret, pid  # part of the cache key only: other credentials or a forked child get their own client
    config: dict[str, Any] = {"region": spec.region, "virtual_hosted_style_request": False}
    if spec.endpoint is not None:
        config["endpoint"] = spec.endpoint
    options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    if spec.endpoint is not None and spec.endpoint.startswith("http://"):
        options["allow_http"] = True
    auth = _credentials(spec)
    config.update(auth.pop("config", {}))
    retry = {"max_retries": retries, "retry_timeout": timedelta(seconds=30 if retries else 5)}
    return S3Store(
        spec.bucket,
        prefix=spec.prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options=options,  # type: ignore[arg-type]
        retry_config=retry,  # type: ignore[arg-type]
        **auth,
    )


def object_store(spec: StorageSpec, *, retries: int = 3) -> S3Store:
    """An ``obstore.store.S3Store`` rooted at ``spec``'s bucket and prefix (path-style; http allowed for http
    endpoints). One client per spec and process, so connections are reused."""
    s3 = _checked(spec)
    return _cached_store(s3, s3.access_key_id, s3.secret_access_key, os.getpid(), retries)


def zarr_store(spec: StorageSpec, path: str | Path, counter: RequestCounter | None = None) -> Store:
    """The zarr v3 store a backend writes to: ``path`` under the spec's prefix on S3, or a local folder.

    Local and S3 come back as the same interface (and, with ``counter``, counted the same way), so a backend does
    not branch on where its bytes go.
    """
    from zarr.storage import LocalStore, ObjectStore

    store: Store
    if isinstance(spec, LocalStorage):
        store = LocalStore(Path(path))
    else:
        s3 = _checked(spec)
        store = paced(ObjectStore(object_store(s3.under(str(path)))), s3)
    return store if counter is None else CountingStore(store, counter)


def _fail(spec: S3Storage, action: str, exc: BaseException) -> StorageError:
    text = _first_line(exc)
    if "non-partial response" in text:
        text += " (the server answered a ranged GET with 200, not 206: it does not support partial reads)"
    return StorageError(f"{action} on {_where(spec)} failed: {text}")


def create_bucket(spec: StorageSpec) -> None:
    """Create ``spec``'s bucket if it does not exist (obstore has no CreateBucket: a presigned PUT of the bucket)."""
    import obstore

    s3 = _checked(spec)
    bucket_only = S3Storage(
        endpoint=s3.endpoint, bucket=s3.bucket, region=s3.region, server=s3.server,
        access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
    )  # fmt: skip
    url = obstore.sign(object_store(bucket_only, retries=0), "PUT", "", timedelta(minutes=5))
    request = urllib.request.Request(url, data=b"", method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if exc.code == 409 and ("AlreadyOwnedByYou" in body or "BucketAlreadyExists" in body):
            return
        raise StorageError(f"creating bucket {s3.bucket!r} at {s3.endpoint or 'AWS'} failed: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise StorageError(f"creating bucket {s3.bucket!r}: {s3.endpoint or 'AWS'} unreachable ({exc})") from exc


def put(spec: StorageSpec, key: str, data: bytes | memoryview, counter: RequestCounter | None = None) -> None:
    """Store ``data`` as one object ``key`` (one PUT)."""
    import obstore

    s3 = _checked(spec)
    try:
        obstore.put(object_store(s3), key, data, use_multipart=False)
    except Exception as exc:
        raise _fail(s3, f"PUT {key}", exc) from exc
    pace(s3, len(data))
    if counter is not None:
        counter.add(puts=1, bytes_out=len(data), objects_written=1)


def get_range(spec: StorageSpec, key: str, start: int, length: int, counter: RequestCounter | None = None) -> bytes:
    """``length`` bytes of ``key`` from ``start`` (one ranged GET)."""
    import obstore

    s3 = _checked(spec)
    try:
        data = bytes(obstore.get_range(object_store(s3), key, start=start, length=length))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no object {key!r} in {_where(s3)}") from exc
    except Exception as exc:
        raise _fail(s3, f"GET {key} [{start}:{start + length}]", exc) from exc
    pace(s3, len(data))
    if counter is not None:
        counter.add(gets=1, bytes_in=len(data))
    return data


def get_suffix(spec: StorageSpec, key: str, length: int, counter: RequestCounter | None = None) -> bytes | None:
    """The last ``length`` bytes of ``key`` (one suffix-ranged GET: a Zarr shard's index), or None without ``key``."""
    import obstore

    s3 = _checked(spec)
    try:
        data = bytes(obstore.get(object_store(s3), key, options={"range": {"suffix": length}}).bytes())
    except FileNotFoundError:
        data = None
    except Exception as exc:
        raise _fail(s3, f"GET {key} [-{length}:]", exc) from exc
    pace(s3, len(data or b""))
    if counter is not None:
        counter.add(gets=1, bytes_in=len(data or b""))
    return data


def object_exists(spec: StorageSpec, key: str, counter: RequestCounter | None = None) -> bool:
    """Whether the object ``key`` exists (one HEAD)."""
    import obstore

    s3 = _checked(spec)
    try:
        obstore.head(object_store(s3), key)
        found = True
    except FileNotFoundError:
        found = False
    except Exception as exc:
        raise _fail(s3, f"HEAD {key}", exc) from exc
    pace(s3)
    if counter is not None:
        counter.add(heads=1)
    return found


def delete_object(spec: StorageSpec, key: str, counter: RequestCounter | None = None) -> None:
    """Delete the one object ``key`` (missing is fine)."""
    import obstore

    s3 = _checked(spec)
    try:
        obstore.delete(object_store(s3), key)
    except FileNotFoundError:
        pass
    except Exception as exc:
        raise _fail(s3, f"DELETE {key}", exc) from exc
    pace(s3)
    if counter is not None:
        counter.add(deletes=1)


def get_object(spec: StorageSpec, key: str, counter: RequestCounter | None = None) -> bytes | None:
    """The whole object ``key`` (one GET), or None when there is none (a chunk never written)."""
    import obstore

    s3 = _checked(spec)
    try:
        data = bytes(obstore.get(object_store(s3), key).bytes())
    except FileNotFoundError:
        data = None
    except Exception as exc:
        raise _fail(s3, f"GET {key}", exc) from exc
    pace(s3, len(data or b""))
    if counter is not None:
        counter.add(gets=1, bytes_in=len(data or b""))
    return data


def list_keys(spec: StorageSpec, prefix: str = "", counter: RequestCounter | None = None) -> list[str]:
    """Every key under ``prefix`` (a path: ``a`` lists ``a/...``, never ``ab``), relative to the spec's prefix."""
    import obstore

    s3 = _checked(spec)
    keys: list[str] = []
    pages = 0
    try:
        for page in obstore.list(object_store(s3), prefix=prefix or None, chunk_size=1000):
            pages += 1
            keys.extend(str(meta["path"]) for meta in page)
    except Exception as exc:
        raise _fail(s3, f"LIST {prefix or '/'}", exc) from exc
    pace(s3, 0, max(pages, 1))
    if counter is not None:
        counter.add(lists=max(pages, 1))
    return sorted(keys)


def object_usage(spec: StorageSpec, prefix: str = "", counter: RequestCounter | None = None) -> RequestCounts:
    """Objects and bytes under ``prefix`` (as ``objects_written`` and ``bytes_out``): what a cell stored on S3,
    the S3 face of :func:`cubebench.storage.counters.folder_usage`."""
    import obstore

    s3 = _checked(spec)
    objects = nbytes = pages = 0
    try:
        for page in obstore.list(object_store(s3), prefix=prefix or None, chunk_size=1000):
            pages += 1
            objects += len(page)
            nbytes += sum(int(meta["size"]) for meta in page)
    except Exception as exc:
        raise _fail(s3, f"LIST {prefix or '/'}", exc) from exc
    pace(s3, 0, max(pages, 1))
    if counter is not None:
        counter.add(lists=max(pages, 1))
    return RequestCounts(objects_written=objects, bytes_out=nbytes)


def delete_prefix(spec: StorageSpec, prefix: str = "", counter: RequestCounter | None = None) -> int:
    """Delete the keys under ``spec.prefix/prefix`` (listed first, so only what is there); return how many.

    Refuses an empty combined prefix: a run deletes only under its own prefix, never a whole bucket.
    """
    import obstore

    s3 = _checked(spec)
    if not join_key(s3.prefix, prefix):
        raise ConfigError(f"delete_prefix: refusing to delete the whole bucket {s3.bucket!r}: give a prefix")
    keys = [join_key(prefix, key) for key in list_keys(s3.under(prefix), "", counter)]
    try:
        for i in range(0, len(keys), DELETE_BATCH):
            obstore.delete(object_store(s3), keys[i : i + DELETE_BATCH])
            if counter is not None:
                counter.add(deletes=1)
    except Exception as exc:
        raise _fail(s3, f"DELETE under {prefix or '/'}", exc) from exc
    return len(keys)


def multipart_upload(
    spec: StorageSpec,
    key: str,
    local_path: str | Path,
    part_size: int = 16 * 2**20,
    max_concurrency: int = 4,
    counter: RequestCounter | None = None,
) -> int:
    """Upload a local file as ``key`` in parts of ``part_size`` bytes (``max_concurrency`` at once); return its size.

    Counted as S3 bills it: one request to start, one per part, one to complete, all PUT-class.
    """
    import obstore

    s3 = _checked(spec)
    if part_size < MIN_PART_SIZE:
        raise ConfigError(f"multipart_upload: part_size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
    path = Path(local_path)
    size = path.stat().st_size
    try:
        obstore.put(
            object_store(s3), key, path, use_multipart=True, chunk_size=part_size, max_concurrency=max_concurrency
        )
    except Exception as exc:
        raise _fail(s3, f"multipart PUT {key}", exc) from exc
    parts = max(1, -(-size // part_size))
    pace(s3, size, 2 + -(-parts // max_concurrency))  # start, rounds of parts in flight, complete
    if counter is not None:
        counter.add(puts=2 + parts, bytes_out=size, objects_written=1)
    return size


def _s3_code(exc: BaseException) -> tuple[str, str]:
    """The S3 error code and message in a failed request's text (the XML body obstore quotes), or ('', '')."""
    text = str(exc)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    message = re.search(r"<Message>([^<]+)</Message>", text)
    return (code.group(1) if code else "", message.group(1) if message else "")


def check_reachable(spec: StorageSpec) -> None:
    """Raise a one-line :class:`StorageError` naming the endpoint if ``spec``'s bucket cannot be listed: the
    server's own error code when it answered (wrong credentials, no such bucket), else why it did not."""
    if isinstance(spec, S3Storage):
        s3 = _checked(spec)
        import obstore

        try:
            obstore.list_with_delimiter(object_store(s3, retries=0))
        except Exception as exc:
            where = f"S3 endpoint {s3.endpoint or 'AWS'} (bucket {s3.bucket!r})"
            code, message = _s3_code(exc)
            if code == "NoSuchBucket":
                fix = "create it first, or set create_bucket: true in the storage entry"
                raise StorageError(f"{where}: no such bucket; {fix} ({code}: {message})") from exc
            if code:
                raise StorageError(f"{where} refused the request: {code}: {message}") from exc
            raise StorageError(f"{where} unreachable: {_first_line(exc)}") from exc
