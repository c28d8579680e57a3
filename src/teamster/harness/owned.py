"""A cache of values that only this worker writes, valid for as long as it stays connected.

The engine gives each function id one live owner, so the worker owning the functions that write some
keys sees every write to them and can remember the latest values instead of reading them back. After a
reconnect another owner may have written in between, so the cache starts empty again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from teamster.sdk import Worker

V = TypeVar("V")


class OwnedCache(Generic[V]):
    def __init__(self, worker: Worker, size: int = 4096) -> None:
        self._worker = worker
        self._size = size
        self._values: OrderedDict[str, V] = OrderedDict()
        self._connection: str | None = None

    def get(self, key: str) -> V | None:
        self._check_connection()
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self._check_connection()
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self._size:
            self._values.popitem(last=False)

    def discard(self, key: str) -> None:
        self._values.pop(key, None)

    def _check_connection(self) -> None:
        if self._worker.worker_id != self._connection:
            self._values.clear()
            self._connection = self._worker.worker_id
