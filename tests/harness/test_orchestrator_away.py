"""An orchestrator that is away for longer than its step's retries last still finishes its turn.

The engine runs as `teamster engine` on SQLite and the orchestrator as `teamster worker FILE`, each in its
own process; the other harness workers connect from this process. The `turn-step` queue retries with short
backoff, so "longer than the retries last" (what dead-lettered the step before) is a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.sdk import Worker
from tests.conftest import eventually
from tests.engine_proc import EngineProcess
from tests.harness import test_faults
from tests.harness.test_faults import open_all, spawn_worker, until_registered
from tests.harness.test_turns import Harness, text_of
from tests.test_cli import Proc
from tests.test_queue_wait import engine_with_queues

pytestmark = pytest.mark.slow

procs = test_faults.procs  # the fixture: worker subprocesses, killed at teardown

# 200 + 400 + 800 ms of backoff between the step's four deliveries: the old code dead-lettered it after that.
TURN_STEP = {"turn-step": {"backoff_ms": 200, "max_retries": 3}}
OLD_WINDOW_S = 1.4
AWAY_S = 3 * OLD_WINDOW_S
ORCHESTRATOR = """
from teamster.app.profiles import THIN
from teamster.harness.orchestrator import create_worker

worker = create_worker(THIN)
"""
TEXT = "x" * 400  # streamed a character every 5 ms: the kill lands in the middle of it


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = engine_with_queues(tmp_path, {"queue_configs": TURN_STEP}).start()
    yield proc
    proc.stop()


async def test_orchestrator_away_longer_than_the_retries_still_finishes_its_turn(
    engine_proc: EngineProcess, procs: list[Proc], tmp_path: Path
) -> None:
    url = engine_proc.ws_url
    options = HarnessOptions(data_dir=tmp_path)
    workers = [w for w in harness_workers("thin", options) if w.name != "turn-orchestrator"]
    workers.append(Worker("client"))
    await open_all(workers, url)
    try:
        orchestrator = spawn_worker(procs, tmp_path / "orchestrator.py", ORCHESTRATOR, url)
        harness = Harness(workers[-1], [])
        await until_registered(harness.client, "run::start", "provider::scripted::load")
        model = await harness.script("slow", [{"text": TEXT, "chunk_size": 1, "chunk_delay_ms": 5}])
        await harness.start("s-away", "talk", model=model)

        async def streaming() -> bool:
            return any(e.get("llm_event", {}).get("type") == "text_delta" for e in await harness.events("s-away"))

        await eventually(streaming, timeout=10)
        orchestrator.kill()  # SIGKILL, mid-step: the step's delivery fails and the queue retries it
        await asyncio.sleep(AWAY_S)  # away three times as long as those retries last
        spawn_worker(procs, tmp_path / "orchestrator.py", ORCHESTRATOR, url)

        view = await harness.until("s-away", "stopped", "failed", timeout=30)
        transcript = await harness.transcript("s-away")
        dead = await harness.client.trigger("engine::queue::dlq_topics", {})
    finally:
        for worker in workers:
            await worker.close()

    assert view["state"] == "stopped"
    assert [m["role"] for m in transcript] == ["user", "assistant"]
    assert text_of(transcript[-1]) == TEXT
    assert dead == {"topics": []}
