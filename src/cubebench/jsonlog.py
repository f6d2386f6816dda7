"""An append-only JSON-lines log of finished records, each line flushed and fsynced as it is written.

The runner and the sufficiency runs keep one each, so that a crash, a killed worker or Ctrl-C never loses a
finished measurement, and ``--resume`` knows what is done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar

from cubebench.errors import ResultsError


class Record(Protocol):
    """What a log line holds: a key that identifies it, and a JSON round trip."""

    @property
    def key(self) -> Any:
        """Records with equal keys replace each other (the last one wins)."""
        ...

    def to_json(self) -> str:
        """One JSON line."""
        ...

    @classmethod
    def from_json(cls, line: str) -> Self:
        """Inverse of :meth:`to_json`."""
        ...


R = TypeVar("R", bound=Record)


class JsonLinesLog(Generic[R]):
    """Append-only log of ``record_type`` records at ``path``."""

    def __init__(self, path: Path, record_type: type[R]) -> None:
        self.path = Path(path)
        self.record_type = record_type

    def append(self, record: R) -> None:
        """Write one finished record to disk now."""
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(record.to_json() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise ResultsError(f"cannot append to results log {self.path}: {exc.strerror or exc}") from None

    def read(self) -> list[R]:
        """All records; a torn last line (a crash mid-write) is skipped, and the last record per key wins."""
        if not self.path.exists():
            return []
        records: dict[Any, R] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = self.record_type.from_json(line)
            except (json.JSONDecodeError, TypeError):
                continue
            records[record.key] = record
        return list(records.values())
