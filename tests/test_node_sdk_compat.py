"""The official Node `iii-sdk` (pinned in tests/node/package.json) as a client of a real teamster engine process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from teamster.sdk import InvocationError, Worker
from tests.conftest import eventually, trigger_bound, until_callable
from tests.engine_proc import EngineProcess, tokened_engine

pytestmark = pytest.mark.slow
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """Install the pinned Node SDK once when it is missing; a failure fails the tests rather than skipping them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the Node SDK tests: run scripts/ensure-node")
    modules = NODE_DIR / "node_modules"
    if not modules.is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {NODE_DIR} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return modules


class NodeWorker:
    """`node worker.mjs WS_URL` as a subprocess: the JSON lines it prints, and its stderr for failure messages."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Any] = []
        self.log: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, lambda line: self.events.append(json.loads(line)))),
            asyncio.create_task(self._read(proc.stderr, self.log.append)),
        ]

    @classmethod
    async def start(cls, ws_url: str, token: str | None = None) -> NodeWorker:
        proc = await asyncio.create_subprocess_exec(
            "node",
            "worker.mjs",
            ws_url,
            cwd=NODE_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **({"TEAMSTER_TOKEN": token} if token else {})},
        )
        return cls(proc)

    @staticmethod
    async def _read(stream: asyncio.StreamReader, keep: Callable[[str], object]) -> None:
        async for line in stream:
            keep(line.decode())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        await self.proc.wait()
        await asyncio.gather(*self._readers)


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
async def teamster_worker(engine_proc: EngineProcess) -> AsyncIterator[Worker]:
    worker = Worker("teamster-compat")
    async with worker.connect(engine_proc.ws_url, wait=5):
        yield worker


@pytest.fixture
async def node_worker(
    node_modules: Path, engine_proc: EngineProcess, teamster_worker: Worker
) -> AsyncIterator[NodeWorker]:
    """The Node worker, once the engine routes calls to it."""
    node = await NodeWorker.start(engine_proc.ws_url)
    try:
        await until_callable(teamster_worker, "node::upper", {"text": ""})
    except AssertionError:
        await node.stop()
        pytest.fail(f"the Node worker never served node::upper (exit {node.proc.returncode}):\n{''.join(node.log)}")
    yield node
    await node.stop()


async def node_trigger(worker: Worker, function_id: str, payload: Any, queue: str | None = None) -> Any:
    """Have the Node worker make a call with its `trigger()`; returns its `{result}` or `{error}`."""
    request = {"function_id": function_id, "payload": payload} | ({} if queue is None else {"queue": queue})
    return await worker.trigger("node::trigger", request, timeout=10)


async def test_teamster_calls_node(node_worker: NodeWorker, teamster_worker: Worker) -> None:
    result = await teamster_worker.trigger("node::upper", {"text": "hello"})
    assert result == {"text": "HELLO", "caller": teamster_worker.worker_id}

    with pytest.raises(InvocationError) as caught:
        await teamster_worker.trigger("node::boom", {})
    assert caught.value.code == "invocation_failed"
    assert caught.value.message == "kaboom"
    assert caught.value.stacktrace and caught.value.stacktrace.startswith("Error: kaboom\n")

    info = await teamster_worker.trigger("engine::workers::info", {"name": "node-compat"})
    assert (info["runtime"], info["version"], info["namespace"]) == ("node", "0.22.1", "default")
    assert info["functions"] == ["node::boom", "node::hello", "node::on_change", "node::trigger", "node::upper"]


async def test_node_calls_teamster(node_worker: NodeWorker, teamster_worker: Worker) -> None:
    @teamster_worker.function("teamster::add")
    async def add(data: dict[str, Any]) -> int:
        return int(data["a"]) + int(data["b"])

    await until_callable(teamster_worker, "teamster::add", {"a": 0, "b": 0})
    assert await node_trigger(teamster_worker, "teamster::add", {"a": 2, "b": 40}) == {"result": 42}

    assert await node_trigger(teamster_worker, "nowhere::missing", {}) == {
        "error": {
            "name": "InvocationError",
            "code": "function_not_found",
            "message": "function_not_found: Function nowhere::missing not found in namespace default",
            "function_id": "nowhere::missing",
        }
    }


async def test_node_http_trigger_serves_real_request(engine_proc: EngineProcess, node_worker: NodeWorker) -> None:
    async with aiohttp.ClientSession() as http:

        async def served() -> bool:
            async with http.get(f"{engine_proc.http_url}/hello/ada?q=1") as resp:
                if resp.status == 404:
                    return False
                assert resp.status == 201
                assert await resp.json() == {"hello": "ada", "q": "1"}
                return True

        await eventually(served, timeout=10)


async def test_a_route_another_function_serves_is_refused_to_the_node_sdk(
    node_modules: Path, engine_proc: EngineProcess, teamster_worker: Worker
) -> None:
    teamster_worker.register_function("teamster::hello", lambda req: {"body": "teamster"})
    teamster_worker.register_trigger("http", "teamster::hello", {"api_path": "hello/:who"})
    await eventually(lambda: trigger_bound(teamster_worker, "teamster::hello"))
    node = await NodeWorker.start(engine_proc.ws_url)  # binds GET hello/:name as it starts
    try:
        await eventually(lambda: "conflicts with already-registered route" in "".join(node.log), timeout=10)
        assert "Trigger registration failed" in "".join(node.log)
        async with aiohttp.ClientSession() as http, http.get(f"{engine_proc.http_url}/hello/ada") as resp:
            assert await resp.json() == "teamster"
    finally:
        await node.stop()


async def test_node_state_and_state_trigger(node_worker: NodeWorker, teamster_worker: Worker) -> None:
    await eventually(lambda: trigger_bound(teamster_worker, "node::on_change"), timeout=10)

    put = {"scope": "orders", "key": "o1", "value": {"total": 3}}
    assert await node_trigger(teamster_worker, "state::set", put) == {
        "result": {"old_value": None, "new_value": {"total": 3}}
    }
    got = await node_trigger(teamster_worker, "state::get", {"scope": "orders", "key": "o1"})
    assert got == {"result": {"total": 3}}
    await eventually(lambda: len(node_worker.events) == 1)
    assert node_worker.events == [
        {
            "type": "state",
            "event_type": "state:created",
            "scope": "orders",
            "key": "o1",
            "old_value": None,
            "new_value": {"total": 3},
        }
    ]


async def test_node_enqueue_is_delivered(node_worker: NodeWorker, teamster_worker: Worker) -> None:
    received: list[Any] = []

    @teamster_worker.function("teamster::job")
    async def job(data: Any) -> None:
        received.append(data)

    await until_callable(teamster_worker, "teamster::job", "warm-up")
    receipt = await node_trigger(teamster_worker, "teamster::job", {"n": 1}, queue="jobs")
    assert isinstance(receipt["result"]["messageReceiptId"], str)
    await eventually(lambda: {"n": 1} in received)
    assert received == ["warm-up", {"n": 1}]


async def test_node_worker_comes_back_after_engine_restart(
    engine_proc: EngineProcess, node_worker: NodeWorker, teamster_worker: Worker
) -> None:
    assert await asyncio.to_thread(engine_proc.stop) == 0
    await asyncio.to_thread(engine_proc.start)  # same ports, same data directory
    assert await until_callable(teamster_worker, "node::upper", {"text": "again"}) == {
        "text": "AGAIN",
        "caller": teamster_worker.worker_id,
    }
    async with aiohttp.ClientSession() as http:

        async def served() -> bool:
            async with http.get(f"{engine_proc.http_url}/hello/bo") as resp:
                return resp.status == 201 and await resp.json() == {"hello": "bo", "q": None}

        await eventually(served, timeout=10)
    assert node_worker.proc.returncode is None


async def test_a_tokened_engine_takes_the_node_sdk_with_its_token(
    node_modules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Node SDK's `headers` option carries `Authorization: Bearer <token>` on the upgrade."""
    token = "node-compat-secret"
    async with tokened_engine(tmp_path / "data", token) as proc:
        monkeypatch.setenv("TEAMSTER_TOKEN", token)
        async with Worker("teamster-tokened").connect(proc.ws_url, wait=5) as worker:
            node = await NodeWorker.start(proc.ws_url, token=token)
            try:
                result = await until_callable(worker, "node::upper", {"text": "hi"})
                assert result == {"text": "HI", "caller": worker.worker_id}
                listed = await node_trigger(worker, "engine::functions::list", {"prefix": "node::upper"})
                assert [row["function_id"] for row in listed["result"]["functions"]] == ["node::upper"]
            finally:
                await node.stop()
