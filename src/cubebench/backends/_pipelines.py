"""Zarr codec pipelines the ``zarr`` backend runs under: zarr-python's own, or the ``zarrs`` Rust pipeline.

zarr-python picks a pipeline class from its configuration (``codec_pipeline.path``) when an array object is
made, so the choice is made when a task opens the array, for either pipeline, under a lock (the configuration is
process-global, and worker threads open arrays concurrently). The ``zarrs`` pipeline runs in ``strict`` mode: a
codec or selection it cannot run raises instead of falling back silently to zarr-python's pipeline, and every
opened array is checked to really hold the pipeline asked for, so that a cell recorded as ``zarrs`` measured
zarrs. Its Rust thread pool is zarr's ``threading.max_workers`` (set on every worker from the experiment's
``zarr.concurrency``).
"""

from __future__ import annotations

import functools
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from cubebench.errors import BackendError, CodecUnavailableError

if TYPE_CHECKING:
    import numpy as np

    from cubebench.codecs import CodecSpec

#: Pipeline id -> the class zarr's ``codec_pipeline.path`` names. The experiment's ``zarr.codec_pipeline``
#: is validated against these ids.
PIPELINES: dict[str, str] = {
    "zarr-python": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    "zarrs": "zarrs.ZarrsCodecPipeline",
}
DEFAULT_PIPELINE = "zarr-python"
#: Why a pipeline cannot run at all here (its package is missing), else nothing.
INSTALL_HINT = "zarrs is not installed (pip install 'cubebench[peers]')"

_CONFIG_LOCK = threading.Lock()


def pipeline_config(pipeline: str) -> dict[str, Any]:
    """The zarr configuration that selects ``pipeline`` (strict: no silent fallback to zarr-python's)."""
    if pipeline not in PIPELINES:
        raise BackendError(f"unknown zarr codec pipeline {pipeline!r}; valid: {', '.join(PIPELINES)}")
    if pipeline == DEFAULT_PIPELINE:
        return {"codec_pipeline.path": PIPELINES[pipeline]}
    return {"codec_pipeline.path": PIPELINES[pipeline], "codec_pipeline.strict": True}


def open_array(path: str, mode: str, pipeline: str = DEFAULT_PIPELINE, write_empty_chunks: bool = True) -> Any:
    """Open the Zarr array at ``path`` with ``pipeline`` and the ``write_empty_chunks`` setting.

    Raises
    ------
    BackendError
        When the opened array does not run the pipeline asked for (zarr fell back, e.g. on a store zarrs lacks).
    """
    import zarr

    import cubebench.codecs.adapter  # noqa: F401  (registers cubebench's chunk codec in this process)

    # set for the default pipeline too: another thread may hold zarrs' configuration at this moment
    with _CONFIG_LOCK, zarr.config.set(pipeline_config(pipeline)):
        # with_config makes a new array object, whose pipeline is chosen again: inside the lock too
        array = zarr.open_array(path, mode=mode).with_config({"write_empty_chunks": write_empty_chunks})
    held = array._async_array.codec_pipeline
    if type(held).__name__ != PIPELINES[pipeline].rsplit(".", 1)[1] or getattr(held, "impl", 1) is None:
        raise BackendError(f"{path}: zarr opened the array with {type(held).__name__}, not the {pipeline} pipeline")
    return array


def stores_empty_chunks(pipeline: str) -> bool:
    """Whether ``pipeline`` stores chunks equal to the fill value when asked to (``write_empty_chunks``).

    zarrs-python 0.2.3 does not: it skips such chunks (and such inner chunks of a shard) even with
    ``write_empty_chunks: true`` (tested in tests/test_peers.py, so that a zarrs release that stores them shows).
    """
    return pipeline != "zarrs"


def refusal(codec: CodecSpec, dtype: np.dtype[Any], pipeline: str, shards: bool) -> str | None:
    """Why ``pipeline`` cannot run ``codec`` on ``dtype`` (sharded or not); None when it can.

    Found by asking the pipeline itself for an array of the codec's Zarr form (what zarr would write), not from
    a list: zarrs answers "codec cubebench.hdf5_chunk is not supported" for cubebench's HDF5-framed codecs.
    """
    if pipeline == DEFAULT_PIPELINE:
        return None
    return _refusal(codec.id, str(dtype), pipeline, shards)


@functools.lru_cache(maxsize=256)
def _refusal(codec_id: str, dtype: str, pipeline: str, shards: bool) -> str | None:
    try:
        from zarrs.pipeline import UnsupportedMetadataError, get_codec_pipeline_impl
    except ImportError:
        return INSTALL_HINT
    import zarr
    from zarr.storage import LocalStore, MemoryStore

    import cubebench.codecs.adapter  # noqa: F401
    from cubebench.codecs import get_codec

    chunks, shard = ((1, 1, 4, 4), (2, 2, 4, 4)) if shards else ((2, 2, 4, 4), None)
    array = zarr.create_array(
        store=MemoryStore(),
        shape=(2, 2, 4, 4),
        chunks=chunks,
        shards=shard,
        dtype=dtype,
        fill_value=0,
        **get_codec(codec_id).zarr_kwargs(dtype),
    )
    with tempfile.TemporaryDirectory() as folder:  # zarrs runs on local (and object) stores only
        try:
            get_codec_pipeline_impl(array.metadata, LocalStore(folder), strict=True)
        except UnsupportedMetadataError as exc:
            return f"the {pipeline} pipeline cannot run it ({exc.__cause__ or exc})"
    return None


def check(codec: CodecSpec, dtype: np.dtype[Any], pipeline: str, shards: bool) -> None:
    """Raise :class:`CodecUnavailableError` (``"<codec>: <reason>"``) when ``pipeline`` cannot run ``codec``."""
    why = refusal(codec, dtype, pipeline, shards)
    if why is not None:
        raise CodecUnavailableError(f"{codec.id}: {why}")
