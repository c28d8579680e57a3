"""The lease in engine state, between workers on their own connections: one holder at a time, a dead
holder taken over once its claim lapses, and a deferred step's request for one more pass handed over."""

from __future__ import annotations

import asyncio

from teamster.harness.lease import Lease
from teamster.harness.orchestrator.exclusive import acquire_or_defer
from teamster.sdk import Worker
from tests.conftest import Connect

SCOPE = "test_lease"


async def test_one_holder_at_a_time_across_connections(connect: Connect) -> None:
    workers = [await connect(Worker(f"contender-{n}")) for n in range(6)]
    inside: list[str] = []
    most = 0
    turns: list[str] = []

    async def contend(worker: Worker) -> None:
        nonlocal most
        for _ in range(5):
            lease = Lease(worker, SCOPE, "s1", ttl_s=10)
            assert await lease.take(wait_s=30)
            inside.append(lease.nonce)
            most = max(most, len(inside))
            await asyncio.sleep(0.005)
            inside.remove(lease.nonce)
            turns.append(worker.name)
            assert await lease.release() is False

    await asyncio.gather(*(contend(w) for w in workers))
    assert most == 1
    assert sorted(turns) == sorted(w.name for w in workers for _ in range(5))
    assert await workers[0].trigger("state::get", {"scope": SCOPE, "key": "s1"}) == {}


async def test_a_dead_holders_claim_is_taken_over_once_it_lapses(connect: Connect) -> None:
    dead, alive = await connect(Worker("dead")), await connect(Worker("alive"))
    assert await Lease(dead, SCOPE, "s2", ttl_s=0.5).take(wait_s=0)  # never renewed, never released
    lease = Lease(alive, SCOPE, "s2", ttl_s=10)
    assert not await lease.take(wait_s=0)
    assert await acquire_or_defer(lease)  # no renewal comes: it waits the claim out and takes the lease
    stored = await alive.trigger("state::get", {"scope": SCOPE, "key": "s2"})
    assert set(stored) == {lease.nonce, "again"}  # the dead claim cleared
    assert await lease.release() is True  # the request for one more pass it left while waiting is its own now


async def test_a_step_defers_to_a_live_holder_which_runs_once_more(connect: Connect) -> None:
    holder_worker, waiter_worker = await connect(Worker("holder")), await connect(Worker("waiter"))
    holder = Lease(holder_worker, SCOPE, "s3", ttl_s=0.3)  # renewed every 0.1 s
    assert await holder.take(wait_s=0)
    renewing = asyncio.ensure_future(holder.keep())
    try:
        assert await acquire_or_defer(Lease(waiter_worker, SCOPE, "s3", ttl_s=10)) is False
    finally:
        renewing.cancel()
    assert await holder.release() is True
    assert await holder.release() is False  # handed over once
