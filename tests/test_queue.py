"""iii-queue: enqueue, retries with backoff, the dead-letter queue, FIFO, concurrency and durable pub/sub."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.engine.registry import Invocation
from teamster.protocol import InvocationError
from teamster.sdk import Enqueue, Worker
from teamster.storage import open_memory
from tests.conftest import Connect, engine_config, eventually

QUEUES = {
    "fast": {"backoff_ms": 10, "max_retries": 2},
    "ordered": {"type": "fifo", "message_group_field": "group", "backoff_ms": 10},
    "narrow": {"concurrency": 2},
    "patient": {"backoff_ms": 10, "max_retries": 10},
}


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(engine_config(iii_queue={"queue_configs": QUEUES})) as running:
        yield running


async def stats(worker: Worker, queue: str) -> dict[str, Any]:
    result: dict[str, Any] = await worker.trigger("engine::queue::topic_stats", {"topic": queue})
    return result


def dead_count(worker: Worker, queue: str, expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await stats(worker, queue))["dead"] == expected

    return check


def drained(worker: Worker, queue: str) -> Callable[[], Awaitable[bool]]:
    """Nothing left in `queue`: every message was acked, so no further delivery can come."""

    async def check() -> bool:
        return await stats(worker, queue) == {"topic": queue, "ready": 0, "in_flight": 0, "dead": 0}

    return check


class Jobs:
    """A worker serving `jobs::run` that records each call and its time, and fails while `fail(data)` holds."""

    def __init__(self, fail: Callable[[Any], bool] = lambda _: False) -> None:
        self.calls: list[Any] = []
        self.times: list[float] = []
        self.fail = fail
        self.worker = Worker("jobs")
        self.worker.register_function("jobs::run", self._run)

    async def _run(self, data: Any) -> None:
        self.calls.append(data)
        self.times.append(time.monotonic())
        if self.fail(data):
            raise RuntimeError("boom")


async def test_enqueue_returns_receipt_and_delivers_original_data(connect: Connect) -> None:
    jobs = Jobs()
    worker = await connect(jobs.worker)

    receipt = await worker.trigger("jobs::run", {"n": 1, "nested": {"x": [1, 2]}}, action=Enqueue("default-q"))

    assert uuid.UUID(receipt["messageReceiptId"]).version == 4
    await eventually(drained(worker, "default-q"))
    assert jobs.calls == [{"n": 1, "nested": {"x": [1, 2]}}]  # no _caller_worker_id, nothing added


async def test_retries_with_backoff_then_dead_letters(connect: Connect) -> None:
    jobs = Jobs(fail=lambda _: True)
    worker = await connect(jobs.worker)

    receipt = await worker.trigger("jobs::run", {"n": 1}, action=Enqueue("fast"))

    await eventually(dead_count(worker, "fast", 1))
    assert len(jobs.calls) == 3  # the first delivery and max_retries=2 retries
    gaps = [later - earlier for earlier, later in zip(jobs.times, jobs.times[1:], strict=False)]
    assert gaps[0] >= 0.010 and gaps[1] >= 0.020  # backoff_ms·2^(attempt−1)
    page = await worker.trigger("engine::queue::dlq_messages", {"topic": "fast"})
    [dead] = page["messages"]
    assert dead["id"] == receipt["messageReceiptId"]
    assert (dead["function_id"], dead["data"], dead["attempts"]) == ("jobs::run", {"n": 1}, 3)
    assert "boom" in dead["last_error"]
    assert dead["enqueued_at_ms"] > 0
    assert await worker.trigger("engine::queue::dlq_topics") == {"topics": ["fast"]}
    listed = await worker.trigger("engine::queue::list_topics")
    assert {"name": "fast", "ready": 0, "in_flight": 0, "dead": 1} in listed["topics"]


async def test_redrive_moves_dead_letters_back(connect: Connect) -> None:
    failing = True
    jobs = Jobs(fail=lambda _: failing)
    worker = await connect(jobs.worker)
    first = (await worker.trigger("jobs::run", {"n": 1}, action=Enqueue("fast")))["messageReceiptId"]
    await worker.trigger("jobs::run", {"n": 2}, action=Enqueue("fast"))
    await eventually(dead_count(worker, "fast", 2))
    failing = False

    one = await worker.trigger("iii::queue::redrive_message", {"queue": "fast", "message_id": first})
    assert one == {"queue": "fast", "redriven": 1}
    await eventually(lambda: jobs.calls[-1] == {"n": 1})
    await eventually(dead_count(worker, "fast", 1))

    rest = await worker.trigger("iii::queue::redrive", {"topic": "fast"})
    assert rest == {"queue": "fast", "redriven": 1}
    await eventually(drained(worker, "fast"))
    assert jobs.calls[-1] == {"n": 2}
    assert await worker.trigger("iii::queue::redrive", {"queue": "fast"}) == {"queue": "fast", "redriven": 0}


async def test_discard_removes_a_dead_letter(connect: Connect) -> None:
    worker = await connect(Jobs(fail=lambda _: True).worker)
    receipt = (await worker.trigger("jobs::run", {"n": 1}, action=Enqueue("fast")))["messageReceiptId"]
    await eventually(dead_count(worker, "fast", 1))

    ref = {"queue": "fast", "message_id": receipt}
    assert await worker.trigger("iii::queue::discard_message", ref) == {"discarded": True}
    assert await drained(worker, "fast")()
    assert await worker.trigger("iii::queue::discard_message", ref) == {"discarded": False}


async def test_fifo_failing_head_blocks_the_rest(connect: Connect) -> None:
    jobs = Jobs()
    jobs.fail = lambda data: data["i"] == 0 and jobs.calls.count(data) < 3
    worker = await connect(jobs.worker)

    for i in range(4):
        await worker.trigger("jobs::run", {"i": i, "group": "g1"}, action=Enqueue("ordered"))

    await eventually(drained(worker, "ordered"))
    assert [call["i"] for call in jobs.calls] == [0, 0, 0, 1, 2, 3]  # 0 failed twice and nothing overtook it


async def test_fifo_message_without_group_field_is_refused(connect: Connect) -> None:
    worker = await connect(Worker("client"))

    with pytest.raises(InvocationError) as refused:
        await worker.trigger("jobs::run", {"i": 1}, action=Enqueue("ordered"))

    assert refused.value.code == "enqueue_error"
    assert "'group'" in refused.value.message


async def test_concurrency_limit_is_respected(connect: Connect) -> None:
    active = peak = done = 0
    worker = Worker("slow")

    async def run(data: Any) -> None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        done += 1

    worker.register_function("slow::run", run)
    await connect(worker)

    for i in range(6):
        await worker.trigger("slow::run", {"i": i}, action=Enqueue("narrow"))

    await eventually(lambda: done == 6)
    assert peak == 2


def recorder(received: list[Any]) -> Callable[[Any], Awaitable[None]]:
    async def handle(data: Any) -> None:
        received.append(data)

    return handle


async def test_durable_publish_reaches_every_subscribed_function(connect: Connect) -> None:
    got: dict[str, list[Any]] = {"sub::a": [], "sub::b": []}
    worker = Worker("subscribers")
    for function_id, received in got.items():
        worker.register_function(function_id, recorder(received))
        worker.register_trigger("durable:subscriber", function_id, {"topic": "orders"})
    worker.register_trigger("durable:subscriber", "sub::b", {"topic": "orders"})  # same function: still one copy
    await connect(worker)

    for n in range(3):
        published = await worker.trigger("iii::durable::publish", {"topic": "orders", "data": {"n": n}})
        assert published == {"published": 2}

    for function_id, received in got.items():
        await eventually(drained(worker, f"__durable::orders::{function_id}"))
        assert sorted(received, key=lambda d: d["n"]) == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_durable_condition_false_acks_without_running(connect: Connect) -> None:
    got: list[Any] = []
    worker = Worker("conditional")

    async def is_big(data: Any) -> bool:
        return bool(data["n"] >= 10)

    worker.register_function("sub::big", recorder(got))
    worker.register_function("sub::is_big", is_big)
    config = {"topic": "sizes", "condition_function_id": "sub::is_big", "queue_config": {"maxRetries": 0}}
    worker.register_trigger("durable:subscriber", "sub::big", config)
    await connect(worker)

    for n in (1, 20, 3):
        await worker.trigger("iii::durable::publish", {"topic": "sizes", "data": {"n": n}})

    await eventually(drained(worker, "__durable::sizes::sub::big"))
    assert got == [{"n": 20}]


async def test_enqueue_to_offline_worker_is_delivered_when_it_connects(connect: Connect) -> None:
    client = await connect(Worker("client"))
    await client.trigger("jobs::run", {"n": 1}, action=Enqueue("patient"))
    await asyncio.sleep(0.05)  # nothing to observe: the message is parked, waiting for jobs::run

    jobs = Jobs()
    await connect(jobs.worker)

    await eventually(drained(client, "patient"))
    assert jobs.calls == [{"n": 1}]


async def test_engine_stop_leaves_running_deliveries_in_flight() -> None:
    storage = open_memory()  # outlives both engines, as a data dir would
    config = engine_config(iii_queue={"queue_configs": QUEUES})
    started = asyncio.Event()

    async def hang(inv: Invocation) -> None:
        started.set()
        await asyncio.Event().wait()

    async with Engine(config, storage=storage) as first:
        first.builtin("jobs::run", hang)
        assert first.router.enqueuer is not None
        await first.router.enqueuer("patient", "jobs::run", {"n": 1}, "default", None, None)
        await asyncio.wait_for(started.wait(), 5)
    assert await storage.queues.stats("patient") == {"ready": 0, "in_flight": 1, "dead": 0}  # cancelled, not acked

    jobs = Jobs()
    async with Engine(config, storage=storage) as second:
        await jobs.worker.open(f"ws://127.0.0.1:{second.ports['ws']}", wait=5)
        try:
            await eventually(drained(jobs.worker, "patient"))
        finally:
            await jobs.worker.close()
    assert jobs.calls == [{"n": 1}]
