"""Queue adapter behaviour on every backend, and SQLite durability across a kill -9."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from teamster.storage import QueueMessage, Storage, open_sqlite, open_storage


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store = open_storage(request.param, tmp_path)
    yield store
    await store.close()


def message(id_: str, queue: str = "q") -> QueueMessage:
    return QueueMessage(id=id_, queue=queue, function_id="fn", data={"id": id_})


async def enqueue_all(storage: Storage, *ids: str, queue: str = "q") -> None:
    for id_ in ids:
        await storage.queues.enqueue(message(id_, queue))


def ids(messages: list[QueueMessage]) -> list[str]:
    return [m.id for m in messages]


async def test_reserve_is_fifo_and_counts_attempts(storage: Storage) -> None:
    await enqueue_all(storage, "m3", "m1", "m2")
    first = await storage.queues.reserve("q", 2, now_ms=0)
    assert ids(first) == ["m3", "m1"]
    assert [m.attempts for m in first] == [1, 1]
    assert ids(await storage.queues.reserve("q", 10, now_ms=0)) == ["m2"]
    assert await storage.queues.reserve("q", 10, now_ms=0) == []
    assert await storage.queues.stats("q") == {"ready": 0, "in_flight": 3, "dead": 0}


async def test_every_field_round_trips(storage: Storage) -> None:
    sent = QueueMessage(
        id="m",
        queue="q",
        function_id="fn::x",
        data={"nested": [1, "two", None]},
        namespace="ns",
        group="g",
        traceparent="00-abc-def-01",
        baggage="k=v",
        enqueued_at_ms=1234,
    )
    await storage.queues.enqueue(sent)
    [got] = await storage.queues.reserve("q", 1, now_ms=0)
    assert got == replace(sent, attempts=1)


async def test_reserve_limit_zero_and_unknown_queue(storage: Storage) -> None:
    await enqueue_all(storage, "m1")
    assert await storage.queues.reserve("q", 0, now_ms=0) == []
    assert await storage.queues.reserve("elsewhere", 5, now_ms=0) == []
    assert await storage.queues.stats("elsewhere") == {"ready": 0, "in_flight": 0, "dead": 0}


async def test_duplicate_id_is_rejected(storage: Storage) -> None:
    await enqueue_all(storage, "m1")
    with pytest.raises(ValueError, match="already queued"):
        await storage.queues.enqueue(message("m1", "other"))
    assert await storage.queues.queues() == ["q"]


async def test_invisible_messages_wait(storage: Storage) -> None:
    await storage.queues.enqueue(message("later"), visible_at_ms=1000)
    await storage.queues.enqueue(message("now"))
    assert ids(await storage.queues.reserve("q", 10, now_ms=999)) == ["now"]
    assert ids(await storage.queues.reserve("q", 10, now_ms=1000)) == ["later"]


async def test_retry_hides_until_visible_and_keeps_error(storage: Storage) -> None:
    await enqueue_all(storage, "m1")
    await storage.queues.reserve("q", 1, now_ms=0)
    await storage.queues.retry("m1", visible_at_ms=2000, error="boom")
    assert await storage.queues.stats("q") == {"ready": 1, "in_flight": 0, "dead": 0}
    assert await storage.queues.reserve("q", 1, now_ms=1999) == []
    [again] = await storage.queues.reserve("q", 1, now_ms=2000)
    assert (again.id, again.attempts, again.last_error) == ("m1", 2, "boom")


async def test_reserved_copy_does_not_alias_the_store(storage: Storage) -> None:
    await enqueue_all(storage, "m1")
    [got] = await storage.queues.reserve("q", 1, now_ms=0)
    got.data["id"] = "mutated"
    got.attempts = 99
    await storage.queues.retry("m1", visible_at_ms=0, error="e")
    [again] = await storage.queues.reserve("q", 1, now_ms=0)
    assert (again.data, again.attempts) == ({"id": "m1"}, 2)


async def test_fifo_takes_only_the_oldest(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2", "m3")
    assert ids(await storage.queues.reserve("q", 10, now_ms=0, fifo=True)) == ["m1"]
    # m1 in flight blocks the rest.
    assert await storage.queues.reserve("q", 10, now_ms=0, fifo=True) == []

    # m1 waiting for its retry still blocks the rest, though a non-FIFO reserve would pass it.
    await storage.queues.retry("m1", visible_at_ms=500, error="later")
    assert await storage.queues.reserve("q", 10, now_ms=100, fifo=True) == []
    assert ids(await storage.queues.reserve("q", 1, now_ms=100)) == ["m2"]
    await storage.queues.retry("m2", visible_at_ms=0, error="put back")

    [m1] = await storage.queues.reserve("q", 10, now_ms=500, fifo=True)
    assert (m1.id, m1.attempts) == ("m1", 2)
    await storage.queues.ack("m1")
    assert ids(await storage.queues.reserve("q", 10, now_ms=500, fifo=True)) == ["m2"]


async def test_fifo_skips_dead_letters(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2")
    await storage.queues.reserve("q", 1, now_ms=0, fifo=True)
    await storage.queues.dead_letter("m1", "fatal")
    assert ids(await storage.queues.reserve("q", 1, now_ms=0, fifo=True)) == ["m2"]


async def test_fifo_is_per_queue(storage: Storage) -> None:
    await enqueue_all(storage, "a1", queue="a")
    await enqueue_all(storage, "b1", queue="b")
    await storage.queues.reserve("a", 1, now_ms=0, fifo=True)
    assert ids(await storage.queues.reserve("b", 1, now_ms=0, fifo=True)) == ["b1"]


async def test_dead_letters_are_kept_listed_and_counted(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2", "m3", "m4")
    await storage.queues.reserve("q", 4, now_ms=0)
    for id_ in ("m3", "m1", "m2"):
        await storage.queues.dead_letter(id_, f"{id_} failed")
    assert await storage.queues.stats("q") == {"ready": 0, "in_flight": 1, "dead": 3}

    dead = await storage.queues.dead_letters("q")
    assert ids(dead) == ["m1", "m2", "m3"]
    assert [m.last_error for m in dead] == ["m1 failed", "m2 failed", "m3 failed"]
    assert [m.attempts for m in dead] == [1, 1, 1]
    assert ids(await storage.queues.dead_letters("q", offset=1, limit=1)) == ["m2"]
    assert await storage.queues.reserve("q", 10, now_ms=0) == []


async def test_redrive_one_or_all_resets_attempts(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2", "m3")
    await storage.queues.reserve("q", 3, now_ms=0)
    for id_ in ("m1", "m2", "m3"):
        await storage.queues.dead_letter(id_, "bad")

    assert await storage.queues.redrive("q", "m2") == 1
    assert await storage.queues.redrive("q", "m2") == 0
    assert await storage.queues.redrive("other", "m1") == 0
    [m2] = await storage.queues.reserve("q", 10, now_ms=0)
    assert (m2.id, m2.attempts) == ("m2", 1)

    assert await storage.queues.redrive("q") == 2
    assert await storage.queues.stats("q") == {"ready": 2, "in_flight": 1, "dead": 0}
    assert [(m.id, m.attempts) for m in await storage.queues.reserve("q", 10, now_ms=0)] == [("m1", 1), ("m3", 1)]


async def test_discard_removes_only_from_its_queue(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2")
    await storage.queues.reserve("q", 1, now_ms=0)
    await storage.queues.dead_letter("m1", "bad")
    assert await storage.queues.discard("other", "m1") is False
    assert await storage.queues.discard("q", "m1") is True
    assert await storage.queues.discard("q", "m1") is False
    assert await storage.queues.dead_letters("q") == []
    assert await storage.queues.stats("q") == {"ready": 1, "in_flight": 0, "dead": 0}


async def test_ack_removes_and_queues_lists_non_empty(storage: Storage) -> None:
    await enqueue_all(storage, "b1", queue="b")
    await enqueue_all(storage, "a1", queue="a")
    await enqueue_all(storage, "c1", queue="c")
    await storage.queues.reserve("c", 1, now_ms=0)
    await storage.queues.dead_letter("c1", "bad")
    assert await storage.queues.queues() == ["a", "b", "c"]

    [b1] = await storage.queues.reserve("b", 1, now_ms=0)
    await storage.queues.ack(b1.id)
    await storage.queues.ack("unknown")
    assert await storage.queues.queues() == ["a", "c"]
    assert await storage.queues.stats("b") == {"ready": 0, "in_flight": 0, "dead": 0}


async def test_recover_returns_in_flight_to_ready(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2", "m3")
    await storage.queues.reserve("q", 2, now_ms=0)
    assert await storage.queues.recover() == 2
    assert await storage.queues.recover() == 0
    again = await storage.queues.reserve("q", 10, now_ms=0)
    assert [(m.id, m.attempts) for m in again] == [("m1", 2), ("m2", 2), ("m3", 1)]


async def test_parked_message_waits_for_unpark_and_its_delivery_is_not_counted(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2")
    await storage.queues.reserve("q", 2, now_ms=0)
    await storage.queues.park("m1", 1000, "fn missing")
    await storage.queues.park("m2", 2000, "fn missing")

    assert await storage.queues.reserve("q", 10, now_ms=10**12) == []  # past the horizon too: only unpark frees it
    assert await storage.queues.stats("q") == {"ready": 2, "in_flight": 0, "dead": 0}
    assert await storage.queues.parked() == {("default", "fn"): 1000}
    assert await storage.queues.unpark("default", "other") == []
    assert await storage.queues.unpark("other-ns", "fn") == []

    assert await storage.queues.unpark("default", "fn") == ["q"]
    again = await storage.queues.reserve("q", 10, now_ms=0)
    assert [(m.id, m.attempts, m.last_error) for m in again] == [("m1", 1, "fn missing"), ("m2", 1, "fn missing")]
    assert await storage.queues.parked() == {}


async def test_fifo_parked_head_holds_back_the_rest(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2")
    [head] = await storage.queues.reserve("q", 1, now_ms=0, fifo=True)
    await storage.queues.park(head.id, 1000, "fn missing")

    assert await storage.queues.reserve("q", 1, now_ms=10**12, fifo=True) == []
    await storage.queues.unpark("default", "fn")
    assert ids(await storage.queues.reserve("q", 1, now_ms=0, fifo=True)) == ["m1"]


async def test_expire_parked_dead_letters_only_past_the_horizon(storage: Storage) -> None:
    await enqueue_all(storage, "m1", "m2", "m3")
    await enqueue_all(storage, "o1", queue="other")
    for queue in ("q", "other"):
        await storage.queues.reserve(queue, 10, now_ms=0)
    await storage.queues.park("m1", 100, "fn missing")
    await storage.queues.park("m2", 200, "fn missing")
    await storage.queues.park("o1", 100, "fn missing")

    assert sorted(await storage.queues.expire_parked("default", "fn", 150, "gave up on fn")) == ["other", "q"]
    assert [(m.id, m.last_error) for m in await storage.queues.dead_letters("q")] == [("m1", "gave up on fn")]
    assert [(m.id, m.last_error) for m in await storage.queues.dead_letters("other")] == [("o1", "gave up on fn")]
    assert await storage.queues.parked() == {("default", "fn"): 200}
    assert await storage.queues.stats("q") == {"ready": 1, "in_flight": 1, "dead": 1}


async def test_sqlite_keeps_parked_messages_across_a_reopen(tmp_path: Path) -> None:
    store = open_sqlite(tmp_path)
    await store.queues.enqueue(message("m1"))
    await store.queues.reserve("q", 1, now_ms=0)
    await store.queues.park("m1", 1000, "fn missing")
    await store.close()

    store = open_sqlite(tmp_path)
    try:
        assert await store.queues.recover() == 0  # parked is not in flight: nothing to redeliver on start
        assert await store.queues.parked() == {("default", "fn"): 1000}
        assert await store.queues.unpark("default", "fn") == ["q"]
        assert ids(await store.queues.reserve("q", 1, now_ms=0)) == ["m1"]
    finally:
        await store.close()


_CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from teamster.storage import QueueMessage, open_sqlite

    async def main() -> None:
        store = open_sqlite(Path(sys.argv[1]))
        await store.state.put("runs", "r1", {"status": "running"})
        await store.state.put("runs", "r1", {"status": "done"})
        for i in range(1, 4):
            await store.queues.enqueue(QueueMessage(id=f"m{i}", queue="q", function_id="fn", data={"i": i}))
        await store.queues.reserve("q", 1, now_ms=0)
        await store.queues.reserve("q", 1, now_ms=0)
        await store.queues.dead_letter("m2", "fatal")
        print("ready", flush=True)
        time.sleep(60)

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_sqlite_survives_kill_9(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHING_WRITER, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), timeout=60) == b"ready\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = open_sqlite(tmp_path)
    try:
        entry = await store.state.get("runs", "r1")
        assert entry is not None
        assert (entry.value, entry.revision) == ({"status": "done"}, 2)
        assert await store.queues.stats("q") == {"ready": 1, "in_flight": 1, "dead": 1}
        [dead] = await store.queues.dead_letters("q")
        assert (dead.id, dead.last_error) == ("m2", "fatal")

        assert await store.queues.recover() == 1
        again = await store.queues.reserve("q", 10, now_ms=0)
        assert [(m.id, m.attempts, m.data) for m in again] == [("m1", 2, {"i": 1}), ("m3", 1, {"i": 3})]
    finally:
        await store.close()
