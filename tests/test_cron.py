"""The `cron` trigger type: schedule, payload, condition, refusal, unregister, locking, slow handlers."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.engine.registry import Invocation
from teamster.engine.triggers import Binding
from teamster.sdk import Worker
from teamster.storage import open_memory
from tests.conftest import Connect, engine_config, eventually

EVERY_SECOND = {"expression": "*/1 * * * * *"}


def _collector() -> tuple[list[Any], Callable[[Any], Awaitable[None]]]:
    events: list[Any] = []

    async def collect(data: Any) -> None:
        events.append(data)

    return events, collect


async def test_fires_every_second_with_the_cron_payload(connect: Connect) -> None:
    events, collect = _collector()
    worker = Worker("cron-test")
    worker.register_function("test::tick", collect)
    job_id = worker.register_trigger("cron", "test::tick", EVERY_SECOND)
    await connect(worker)

    await eventually(lambda: len(events) >= 3, timeout=6)

    assert all(set(e) == {"trigger", "job_id", "scheduled_time", "actual_time"} for e in events)
    assert all(e["trigger"] == "cron" and e["job_id"] == job_id for e in events)
    scheduled = [datetime.fromisoformat(e["scheduled_time"]) for e in events[:3]]
    assert all(t.microsecond == 0 and t.utcoffset() is not None for t in scheduled)
    assert len(set(scheduled)) == 3
    assert scheduled == sorted(scheduled)
    for event in events:
        assert datetime.fromisoformat(event["actual_time"]) >= datetime.fromisoformat(event["scheduled_time"])


async def test_condition_false_skips_the_handler(connect: Connect) -> None:
    events, collect = _collector()
    checked: list[Any] = []

    async def never(data: Any) -> bool:
        checked.append(data)
        return False

    worker = Worker("cron-test")
    worker.register_function("test::tick", collect)
    worker.register_function("test::never", never)
    worker.register_trigger("cron", "test::tick", {**EVERY_SECOND, "condition_function_id": "test::never"})
    await connect(worker)

    await eventually(lambda: len(checked) >= 2, timeout=5)
    assert checked[0]["trigger"] == "cron"
    assert events == []


async def test_bad_expression_is_refused(connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    _, collect = _collector()
    worker = Worker("cron-test")
    worker.register_function("test::tick", collect)
    with caplog.at_level(logging.ERROR, logger="teamster.sdk"):
        job_id = worker.register_trigger("cron", "test::tick", {"expression": "* * * * *"})
        await connect(worker)
        await eventually(lambda: "expected 6 or 7 fields" in caplog.text)

    listed = await worker.trigger("engine::registered-triggers::list", {})
    assert job_id not in [t["id"] for t in listed["registered_triggers"]]


async def test_unregister_stops_fires(connect: Connect) -> None:
    events, collect = _collector()
    worker = Worker("cron-test")
    worker.register_function("test::tick", collect)
    job_id = worker.register_trigger("cron", "test::tick", EVERY_SECOND)
    await connect(worker)
    await eventually(lambda: len(events) >= 1, timeout=5)

    worker.unregister_trigger(job_id)
    listed: dict[str, Any] = {}

    async def gone() -> bool:
        listed.update(await worker.trigger("engine::registered-triggers::list", {}))
        return job_id not in [t["id"] for t in listed["registered_triggers"]]

    await eventually(gone)
    seen = len(events)
    await asyncio.sleep(1.5)
    assert len(events) == seen


async def _engine_with_job(storage: Any, fired: list[tuple[str, str]], label: str) -> Engine:
    engine = Engine(engine_config(), storage=storage)
    await engine.start()

    async def tick(inv: Invocation) -> None:
        fired.append((label, inv.data["scheduled_time"]))

    engine.builtin("test::tick", tick)
    await engine.triggers.add_binding(
        Binding(id="job-1", trigger_type="cron", function_id="test::tick", config=EVERY_SECOND)
    )
    return engine


async def test_shared_lock_fires_each_instant_once_across_engines() -> None:
    shared = open_memory()
    fired: list[tuple[str, str]] = []
    engines = [await _engine_with_job(shared, fired, label) for label in ("a", "b")]
    try:
        await eventually(lambda: len({t for _, t in fired}) >= 3, timeout=6)
    finally:
        for engine in engines:
            await engine.stop()

    instants = [t for _, t in fired]
    assert len(instants) == len(set(instants))


async def test_slow_handler_neither_overlaps_nor_drifts(engine: Engine) -> None:
    running = 0
    overlapped = False
    scheduled: list[datetime] = []

    async def slow(inv: Invocation) -> None:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        scheduled.append(datetime.fromisoformat(inv.data["scheduled_time"]))
        await asyncio.sleep(1.3)
        running -= 1

    engine.builtin("test::slow", slow)
    await engine.triggers.add_binding(
        Binding(id="slow", trigger_type="cron", function_id="test::slow", config=EVERY_SECOND)
    )
    await eventually(lambda: len(scheduled) >= 3, timeout=8)

    assert not overlapped
    assert all(t.microsecond == 0 for t in scheduled)
    # Each 1.3 s run misses the next instant, which is skipped rather than fired late.
    assert all((b - a).total_seconds() >= 2 for a, b in itertools.pairwise(scheduled))


async def test_a_job_may_unregister_itself(engine: Engine) -> None:
    fired: list[str] = []

    async def once(inv: Invocation) -> None:
        fired.append(inv.data["scheduled_time"])
        await engine.triggers.remove_binding("once")

    engine.builtin("test::once", once)
    await engine.triggers.add_binding(
        Binding(id="once", trigger_type="cron", function_id="test::once", config=EVERY_SECOND)
    )
    await eventually(lambda: len(fired) == 1, timeout=5)
    await asyncio.sleep(1.2)

    assert len(fired) == 1
    assert "once" not in engine.triggers.bindings
