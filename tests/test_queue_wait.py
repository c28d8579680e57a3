"""iii-queue waits for a missing worker: its messages are parked, not dead-lettered, until it is back.

The engine runs as `teamster engine` on SQLite and the worker that goes away as `teamster worker FILE`, each
in its own process; retries and backoff are short, so that being away three times as long as the retries
used to last is a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from teamster.engine.config import DEFAULT_WORKERS
from teamster.engine.engine import Engine
from teamster.sdk import Enqueue, Worker
from tests.conftest import engine_config, eventually, retry_call
from tests.engine_proc import EngineProcess
from tests.harness import test_faults
from tests.harness.test_faults import spawn_worker, until_registered
from tests.test_cli import Proc

procs = test_faults.procs  # the fixture: worker subprocesses, killed at teardown

# The retries of one message take 500 + 1000 ms of backoff: the old code dead-lettered it after that.
RETRIES = {"backoff_ms": 500, "max_retries": 2}
OLD_WINDOW_S = 1.5
AWAY_S = 3 * OLD_WINDOW_S
QUEUES = {"jobs": RETRIES, "ordered": {**RETRIES, "type": "fifo", "message_group_field": "group"}}
JOBS = """
import os
from pathlib import Path

from teamster.sdk import Worker

worker = Worker("jobs")


@worker.function("jobs::record", description="Append the message's key to the log: one line per execution")
async def record(data: dict) -> None:
    with Path(os.environ["JOBS_LOG"]).open("a") as log:
        log.write(data["key"] + "\\n")
"""


def engine_with_queues(tmp_path: Path, iii_queue: dict[str, Any]) -> EngineProcess:
    """A SQLite `teamster engine` process with every default worker, and `iii_queue` as the queue module's config."""
    config = tmp_path / "engine.yaml"
    workers = [{"name": name, "config": iii_queue if name == "iii-queue" else {}} for name in DEFAULT_WORKERS]
    config.write_text(yaml.safe_dump({"workers": workers}))
    return EngineProcess(tmp_path / "data", extra=["--config", str(config)])


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = engine_with_queues(tmp_path, {"queue_configs": QUEUES}).start()
    yield proc
    proc.stop()


async def until_gone(client: Worker, function_id: str) -> None:
    """Wait until the engine has noticed that nothing serves `function_id` any more."""

    async def gone() -> bool:
        listed = await client.trigger("engine::functions::list", {})
        return function_id not in {row["function_id"] for row in listed["functions"]}

    await eventually(gone, timeout=10)


async def away_then_back(started: list[Proc], tmp_path: Path, url: str, client: Worker) -> Proc:
    """Start the jobs worker, SIGKILL it and enqueue three messages on each queue while it is gone."""
    env = {"JOBS_LOG": str(tmp_path / "jobs.log")}
    jobs = spawn_worker(started, tmp_path / "jobs.py", JOBS, url, env)
    await until_registered(client, "jobs::record")
    jobs.kill()
    await until_gone(client, "jobs::record")
    for queue in QUEUES:
        for i in range(3):
            await client.trigger("jobs::record", {"key": f"{queue}-{i}", "group": "g"}, action=Enqueue(queue))
    return jobs


def executed(tmp_path: Path) -> list[str]:
    log = tmp_path / "jobs.log"
    return log.read_text().split() if log.exists() else []


async def settled(client: Worker, tmp_path: Path) -> None:
    """Every message executed and acked."""
    await eventually(lambda: len(executed(tmp_path)) == 3 * len(QUEUES), timeout=20)

    async def drained() -> bool:
        counts = [await client.trigger("engine::queue::topic_stats", {"topic": queue}) for queue in QUEUES]
        return all(c["ready"] == c["in_flight"] == c["dead"] == 0 for c in counts)

    await eventually(drained, timeout=10)


def assert_once_in_order(keys: list[str]) -> None:
    assert [k for k in keys if k.startswith("ordered-")] == ["ordered-0", "ordered-1", "ordered-2"]  # fifo order
    assert sorted(k for k in keys if k.startswith("jobs-")) == ["jobs-0", "jobs-1", "jobs-2"]  # each exactly once


@pytest.mark.slow
async def test_killed_worker_gets_its_messages_once_when_it_returns(
    engine_proc: EngineProcess, procs: list[Proc], tmp_path: Path
) -> None:
    client = Worker("client")
    await client.open(engine_proc.ws_url, wait=5)
    try:
        await away_then_back(procs, tmp_path, engine_proc.ws_url, client)
        await asyncio.sleep(AWAY_S)  # away three times as long as the retries of a message last
        assert executed(tmp_path) == []
        spawn_worker(procs, tmp_path / "jobs.py", JOBS, engine_proc.ws_url, {"JOBS_LOG": str(tmp_path / "jobs.log")})

        await settled(client, tmp_path)
        assert await client.trigger("engine::queue::dlq_topics", {}) == {"topics": []}
    finally:
        await client.close()
    assert_once_in_order(executed(tmp_path))


@pytest.mark.slow
async def test_parked_messages_survive_an_engine_kill(
    engine_proc: EngineProcess, procs: list[Proc], tmp_path: Path
) -> None:
    client = Worker("client")
    await client.open(engine_proc.ws_url, wait=5)
    try:
        await away_then_back(procs, tmp_path, engine_proc.ws_url, client)
        await asyncio.sleep(AWAY_S)
        engine_proc.kill()
        engine_proc.start()  # same ports and data; the client reconnects on its own
        spawn_worker(procs, tmp_path / "jobs.py", JOBS, engine_proc.ws_url, {"JOBS_LOG": str(tmp_path / "jobs.log")})

        await retry_call(lambda: settled(client, tmp_path), timeout=30)
        assert await client.trigger("engine::queue::dlq_topics", {}) == {"topics": []}
    finally:
        await client.close()
    assert_once_in_order(executed(tmp_path))


async def test_past_its_horizon_a_message_is_dead_lettered_naming_the_function() -> None:
    config = {"wait_for_function_ms": 200, "queue_configs": {"patient": {"wait_for_function_ms": 3_600_000}}}
    async with Engine(engine_config(iii_queue=config)) as engine:
        client = Worker("client")
        await client.open(f"ws://127.0.0.1:{engine.ports['ws']}", wait=5)
        ghost = Worker("ghost")
        got: list[Any] = []

        @ghost.function("ghost::run")
        async def run(data: Any) -> None:
            got.append(data)

        try:
            for queue in ("brief", "patient"):
                await client.trigger("ghost::run", {"queue": queue}, action=Enqueue(queue))

            async def dead_lettered() -> bool:
                page = await client.trigger("engine::queue::dlq_messages", {"topic": "brief"})
                return bool(page["messages"])

            await eventually(dead_lettered)
            [dead] = (await client.trigger("engine::queue::dlq_messages", {"topic": "brief"}))["messages"]
            assert dead["function_id"] == "ghost::run"
            assert dead["last_error"] == (
                "function_not_found: no worker registered ghost::run in namespace default within wait_for_function_ms"
            )
            assert dead["attempts"] == 0  # no delivery reached a handler
            patient = await client.trigger("engine::queue::topic_stats", {"topic": "patient"})
            assert (patient["ready"], patient["dead"]) == (1, 0)  # its own horizon is an hour: still waiting

            await ghost.open(f"ws://127.0.0.1:{engine.ports['ws']}", wait=5)
            await eventually(lambda: got == [{"queue": "patient"}])
        finally:
            await ghost.close()
            await client.close()


async def test_durable_subscriber_away_gets_its_copy_when_it_subscribes_again() -> None:
    # Named in queue_configs, as a binding's own queue_config leaves with its worker. The old code dead-lettered
    # the copy 10 ms after its subscriber left: one retry, then the DLQ.
    copies = {"__durable::orders::sub::orders": {"max_retries": 1, "backoff_ms": 10}}
    subscription = {"topic": "orders"}
    async with Engine(engine_config(iii_queue={"queue_configs": copies})) as engine:
        url = f"ws://127.0.0.1:{engine.ports['ws']}"
        client, first, second = Worker("client"), Worker("subscriber"), Worker("subscriber")
        started = asyncio.Event()
        got: list[Any] = []

        @first.function("sub::orders")
        async def hold(data: Any) -> None:
            started.set()
            await asyncio.Event().wait()  # still running when its worker leaves

        @second.function("sub::orders")
        async def record(data: Any) -> None:
            got.append(data)

        first.register_trigger("durable:subscriber", "sub::orders", subscription)
        try:
            for worker in (client, first):
                await worker.open(url, wait=5)
            await client.trigger("iii::durable::publish", {"topic": "orders", "data": {"n": 0}})
            await asyncio.wait_for(started.wait(), 5)
            await first.close()
            await asyncio.sleep(0.5)  # fifty times the backoff: long past where the old code gave up

            await second.open(url, wait=5)  # the function first, with no subscription yet
            second.register_trigger("durable:subscriber", "sub::orders", subscription)
            await eventually(lambda: got == [{"n": 0}])
            assert await client.trigger("engine::queue::dlq_topics", {}) == {"topics": []}
        finally:
            for worker in (client, first, second):
                await worker.close()
