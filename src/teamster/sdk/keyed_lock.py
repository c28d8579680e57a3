"""Mutual exclusion per key, for a worker whose handlers must not interleave on one session or budget.

Holders of one key take turns; holders of different keys run at once. A key's lock exists only while
someone holds or awaits it: the count of users decides, not the garbage collector, so a worker that
meets a million keys over its life keeps none of their locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holding or waiting


class KeyedLock:
    """`async with locks.hold(key):` runs the block alone among holders of `key`."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """How many keys are held or awaited now."""
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:  # also when cancelled while waiting
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]
