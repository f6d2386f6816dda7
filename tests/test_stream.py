"""Streamed dispatch on a real cluster: workers store only released chunks, each once; failures and early exits."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from cubebench.acquisition.assembler import Assembler
from cubebench.acquisition.stream import StreamHub
from cubebench.acquisition.writers import Job, Sink

if TYPE_CHECKING:
    from distributed import Client

    from cubebench.cube import Block

SHAPE = (8, 8, 4, 4)
ChunkIndex = tuple[int, ...]


def _stored(batch: list[tuple[ChunkIndex, Block]], fail_at: ChunkIndex | None) -> list[ChunkIndex]:
    if fail_at is not None and any(index == fail_at for index, _ in batch):
        raise ValueError(f"cannot store chunk {fail_at}")
    return [index for index, _ in batch]


class _RecordingSink(Sink):
    """Records what the workers stored; the batch job returns its chunk indices."""

    def __init__(self, fail_at: ChunkIndex | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.batches: list[list[ChunkIndex]] = []
        self.lock = threading.Lock()

    def job(self) -> Job:
        return _stored, (self.fail_at,), lambda index, block: (index, block)

    def accept(self, indices: list[ChunkIndex], result: Any) -> None:
        assert result == indices
        with self.lock:
            self.batches.append(indices)

    def stored(self) -> list[ChunkIndex]:
        with self.lock:
            return [index for batch in self.batches for index in batch]


def _wait_for(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("chunks", [(1, 1, 4, 4), (2, 4, 4, 4)])
def test_workers_store_only_released_chunks_each_once(client: Client, chunks: tuple[int, ...]) -> None:
    sink = _RecordingSink()
    schedule = Assembler(SHAPE, chunks, 2, lambda items: None).schedule()
    with StreamHub(client, sink, schedule, 4 * 4 * 2) as hub:
        assert hub.parts == 2
        hub.release(32)  # the first four scan rows
        complete = [index for index, _, last in schedule if last < 32]
        _wait_for(lambda: len(sink.stored()) == len(complete))
        time.sleep(0.2)  # nothing beyond the released frames follows
        assert sorted(sink.stored()) == sorted(complete)
        hub.release(64)
        hub.close()
    assert sorted(sink.stored()) == sorted(index for index, _, _ in schedule)
    assert len(set(sink.stored())) == len(schedule)


def test_a_failing_batch_fails_the_cell_with_its_reason(client: Client) -> None:
    sink = _RecordingSink(fail_at=(3, 3, 0, 0))
    schedule = Assembler(SHAPE, (1, 1, 4, 4), 2, lambda items: None).schedule()
    with StreamHub(client, sink, schedule, 32) as hub:
        hub.release(64)
        with pytest.raises(RuntimeError, match=r"cannot store chunk \(3, 3, 0, 0\)"):
            hub.close()


def test_leaving_early_ends_the_tasks_and_frees_the_workers(client: Client) -> None:
    sink = _RecordingSink()
    schedule = Assembler(SHAPE, (1, 1, 4, 4), 2, lambda items: None).schedule()
    with pytest.raises(KeyboardInterrupt), StreamHub(client, sink, schedule, 32) as hub:
        hub.release(8)
        raise KeyboardInterrupt
    futures = [client.submit(lambda n: n, n, pure=False) for n in range(4)]
    assert client.gather(futures) == [0, 1, 2, 3]  # both workers' threads run tasks again
    assert len(sink.stored()) <= 8
