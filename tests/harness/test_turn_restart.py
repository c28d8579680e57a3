"""A turn parked on approval survives `kill -9` of a SQLite engine and finishes after the decision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.sdk import InvocationError, Worker
from tests.conftest import eventually
from tests.engine_proc import EngineProcess
from tests.harness.test_turns import Harness

pytestmark = pytest.mark.slow


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


async def test_parked_approval_survives_engine_kill(engine_proc: EngineProcess, tmp_path: Path) -> None:
    ran: list[Any] = []
    demo = Worker("demo")

    @demo.function("demo::mystery")
    async def mystery(data: Any) -> str:
        ran.append(data)
        return "done"

    workers = [*harness_workers("thick", HarnessOptions(data_dir=tmp_path)), demo, Worker("client")]
    for worker in workers:
        await worker.open(engine_proc.ws_url, wait=5)
    try:
        harness = Harness(workers[-1], [])
        ask = {"id": "ask-1", "function_id": "agent_trigger", "arguments": {"function": "demo::mystery", "payload": {}}}
        model = await harness.script("restart", [{"function_calls": [ask]}, {"text": "finished"}])
        await harness.start("s-restart", "please", model=model)
        await harness.until("s-restart", "function_awaiting_approval")

        engine_proc.kill()
        engine_proc.start()  # same ports and data: every worker reconnects and replays on its own

        async def resolved() -> bool:
            try:
                reply = await harness.client.trigger(
                    "approval::resolve",
                    {"session_id": "s-restart", "function_call_id": "ask-1", "decision": "allow"},
                    timeout=2,
                )
            except InvocationError:
                return False
            return bool(reply == {"ok": True})

        await eventually(resolved, timeout=20)
        view = await harness.until("s-restart", "stopped", timeout=20)
        assert view["turn_count"] == 2
        assert len(ran) == 1  # approved once, run once
        roles = [m["role"] for m in await harness.transcript("s-restart")]
        assert roles == ["user", "assistant", "function_result", "assistant"]
    finally:
        for worker in workers:
            await worker.close()
