"""Shared fixtures: a real LocalCluster (2 worker processes). Shared helpers are in ``tests/helpers.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cubebench.experiment import ClusterSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    from distributed import Client


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """A real distributed cluster shared by the tests that need one."""
    from cubebench.cluster import open_client

    with open_client(ClusterSpec(workers=2, threads_per_worker=1)) as c:
        yield c
