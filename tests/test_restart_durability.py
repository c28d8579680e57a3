"""What survives `kill -9` of a SQLite engine, and how a teamster worker comes back after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from teamster.engine.config import DEFAULT_WORKERS
from teamster.sdk import Backoff, Enqueue, InvocationError, Worker
from tests.conftest import eventually
from tests.engine_proc import EngineProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    config = {
        "workers": [
            {"name": name, "config": {"queue_configs": {"fragile": {"max_retries": 0, "backoff_ms": 10}}}}
            if name == "iii-queue"
            else {"name": name}
            for name in DEFAULT_WORKERS
        ]
    }
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = EngineProcess(tmp_path / "data", extra=["--config", str(path)]).start()
    yield proc
    proc.stop()


async def test_kill_9_keeps_state_streams_dead_letters_and_durable_bindings(engine_proc: EngineProcess) -> None:
    changes: list[dict[str, Any]] = []
    worker = Worker("durable", backoff=Backoff(initial_s=0.05, max_s=0.2))

    @worker.function("dur::hello")
    async def hello(req: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": 200, "body": {"hello": req["query_params"].get("who", "world")}}

    @worker.function("dur::on_change")
    async def on_change(event: dict[str, Any]) -> None:
        changes.append(event)

    @worker.function("dur::always_fails")
    async def always_fails(data: Any) -> None:
        raise RuntimeError("nope")

    async with worker.connect(engine_proc.ws_url, wait=5):
        await worker.trigger("state::set", {"scope": "dur", "key": "k", "value": {"v": 1}})
        await worker.trigger("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i", "data": {"d": 2}})
        await worker.trigger(
            "engine::register_trigger",
            {"trigger_type": "http", "function_id": "dur::hello", "config": {"api_path": "durable-hello"}},
        )
        await worker.trigger(
            "engine::register_trigger",
            {"trigger_type": "state", "function_id": "dur::on_change", "config": {"scope": "watched"}},
        )
        await worker.trigger("dur::always_fails", {"n": 7}, action=Enqueue("fragile"))
        await eventually(lambda: _dead(worker), timeout=10)

        engine_proc.kill()
        engine_proc.start()

        # The worker reconnects on its own and replays its functions.
        await eventually(lambda: _answers(worker), timeout=15)
        assert await worker.trigger("state::get", {"scope": "dur", "key": "k"}) == {"v": 1}
        assert await worker.trigger("stream::get", {"stream_name": "s", "group_id": "g", "item_id": "i"}) == {"d": 2}
        dead = await worker.trigger("engine::queue::dlq_messages", {"topic": "fragile"})
        assert [(m["function_id"], m["data"]) for m in dead["messages"]] == [("dur::always_fails", {"n": 7})]

        async with aiohttp.ClientSession() as http, http.get(f"{engine_proc.http_url}/durable-hello?who=ada") as resp:
            assert resp.status == 200
            assert await resp.json() == {"hello": "ada"}

        await worker.trigger("state::set", {"scope": "watched", "key": "x", "value": 1})
        await eventually(lambda: len(changes) == 1)
        assert changes[0]["event_type"] == "state:created"


async def _dead(worker: Worker) -> bool:
    stats = await worker.trigger("engine::queue::topic_stats", {"topic": "fragile"})
    return bool(stats["dead"] == 1)


async def _answers(worker: Worker) -> bool:
    try:
        await worker.trigger("dur::hello", {"query_params": {}}, timeout=1)
    except InvocationError:
        return False
    return True
