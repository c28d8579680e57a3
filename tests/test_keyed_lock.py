"""KeyedLock: one holder per key at a time, different keys at once, and no lock left behind."""

from __future__ import annotations

import asyncio

import pytest

from teamster.sdk.keyed_lock import KeyedLock


async def test_holders_of_one_key_take_turns_while_another_key_runs_alongside() -> None:
    locks = KeyedLock()
    release_first = asyncio.Event()
    entered: list[str] = []

    async def hold(key: str, name: str, until: asyncio.Event | None = None) -> None:
        async with locks.hold(key):
            entered.append(name)
            if until is not None:
                await until.wait()

    first = asyncio.create_task(hold("a", "a1", release_first))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold("a", "a2"))
    other = asyncio.create_task(hold("b", "b1"))
    await asyncio.wait_for(other, 1)  # "b" did not wait for "a"
    await asyncio.sleep(0.01)
    assert entered == ["a1", "b1"]  # a2 waits while a1 holds "a"
    assert not second.done()

    release_first.set()
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert entered == ["a1", "b1", "a2"]


async def test_no_lock_outlives_its_holders_and_waiters() -> None:
    locks = KeyedLock()
    for n in range(1000):
        async with locks.hold(f"key-{n}"):
            assert len(locks) == 1
    assert len(locks) == 0

    blocker = asyncio.Event()

    async def holding() -> None:
        async with locks.hold("k"):
            await blocker.wait()

    holder = asyncio.create_task(holding())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holding())
    await asyncio.sleep(0)
    waiter.cancel()  # gives up while waiting: its share of the lock goes too
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(locks) == 1
    blocker.set()
    await holder
    assert len(locks) == 0


async def test_a_holder_that_raises_releases_the_key() -> None:
    locks = KeyedLock()
    with pytest.raises(RuntimeError):
        async with locks.hold("k"):
            raise RuntimeError("boom")
    assert len(locks) == 0
    async with asyncio.timeout(1), locks.hold("k"):
        pass
