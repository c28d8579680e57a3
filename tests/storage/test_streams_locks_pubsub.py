"""Stream, lock and pub/sub adapter behaviour on every backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from teamster.storage import Storage, open_storage


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store = open_storage(request.param, tmp_path)
    yield store
    await store.close()


async def test_stream_set_get_delete_return_previous(storage: Storage) -> None:
    streams = storage.streams
    assert await streams.get("s", "g", "i") is None
    assert await streams.set("s", "g", "i", {"v": 1}) is None
    assert await streams.set("s", "g", "i", {"v": 2}) == {"v": 1}
    assert await streams.get("s", "g", "i") == {"v": 2}
    assert await streams.delete("s", "g", "i") == {"v": 2}
    assert await streams.delete("s", "g", "i") is None
    assert await streams.get("s", "g", "i") is None


async def test_stream_listing(storage: Storage) -> None:
    streams = storage.streams
    for stream, group, item in [("s2", "g", "b"), ("s2", "g", "a"), ("s2", "f", "x"), ("s1", "g", "y")]:
        await streams.set(stream, group, item, f"{stream}/{group}/{item}")
    assert await streams.list("s2", "g") == ["s2/g/a", "s2/g/b"]
    assert await streams.list("s2", "missing") == []
    assert await streams.groups("s2") == ["f", "g"]
    assert await streams.streams() == [{"id": "s1", "groups": ["g"]}, {"id": "s2", "groups": ["f", "g"]}]

    await streams.delete("s1", "g", "y")
    await streams.delete("s2", "f", "x")
    assert await streams.groups("s1") == []
    assert await streams.streams() == [{"id": "s2", "groups": ["g"]}]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable `time.time()`, in seconds."""
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


async def test_lock_is_exclusive_until_released(storage: Storage, clock: list[float]) -> None:
    locks = storage.locks
    assert await locks.acquire("l", "a", ttl_ms=1000)
    assert not await locks.acquire("l", "b", ttl_ms=1000)
    await locks.release("l", "b")
    assert not await locks.acquire("l", "b", ttl_ms=1000)
    await locks.release("l", "a")
    assert await locks.acquire("l", "b", ttl_ms=1000)
    assert await locks.acquire("other", "a", ttl_ms=1000)


async def test_lock_expires_and_owner_refreshes(storage: Storage, clock: list[float]) -> None:
    locks = storage.locks
    assert await locks.acquire("l", "a", ttl_ms=1000)
    clock[0] += 0.9
    assert await locks.acquire("l", "a", ttl_ms=1000)  # refreshed: now held until +1.9 s
    clock[0] += 0.9
    assert not await locks.acquire("l", "b", ttl_ms=1000)
    clock[0] += 0.1
    assert await locks.acquire("l", "b", ttl_ms=1000)
    assert not await locks.acquire("l", "a", ttl_ms=1000)


async def test_publish_reaches_every_subscriber(storage: Storage) -> None:
    got: list[tuple[str, Any]] = []
    done = asyncio.Event()

    async def first(data: Any) -> None:
        got.append(("first", data))

    async def second(data: Any) -> None:
        await asyncio.sleep(0)
        got.append(("second", data))
        done.set()

    storage.pubsub.subscribe("t", first)
    storage.pubsub.subscribe("t", second)
    await storage.pubsub.publish("t", {"n": 1})
    await storage.pubsub.publish("unheard", {"n": 2})
    await asyncio.wait_for(done.wait(), timeout=5)
    assert sorted(got) == [("first", {"n": 1}), ("second", {"n": 1})]


async def test_publish_does_not_wait_for_or_raise_from_handlers(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    failed = asyncio.Event()

    async def slow(data: Any) -> None:
        await release.wait()

    async def broken(data: Any) -> None:
        failed.set()
        raise RuntimeError("handler bug")

    storage.pubsub.subscribe("t", slow)
    storage.pubsub.subscribe("t", broken)
    with caplog.at_level(logging.ERROR, logger="teamster.storage"):
        await asyncio.wait_for(storage.pubsub.publish("t", 1), timeout=1)
        await asyncio.wait_for(failed.wait(), timeout=5)
        await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)
    assert any(r.name == "teamster.storage" and r.exc_info for r in caplog.records)


async def test_unsubscribe_stops_delivery(storage: Storage) -> None:
    got: list[str] = []

    async def handler(data: Any) -> None:
        got.append(data)

    unsubscribe = storage.pubsub.subscribe("t", handler)
    await storage.pubsub.publish("t", "before")
    await asyncio.sleep(0)
    unsubscribe()
    unsubscribe()
    await storage.pubsub.publish("t", "after")
    await asyncio.sleep(0.01)
    assert got == ["before"]
