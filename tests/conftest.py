"""Shared fixtures: a real engine on ephemeral ports, and workers connected to it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from teamster.engine.config import DEFAULT_WORKERS, EngineConfig, WorkerEntry
from teamster.engine.engine import Engine
from teamster.sdk import InvocationError, Worker

# Engines read their token from TEAMSTER_TOKEN (and the iii SDK sends III_TOKEN): a developer's own must
# not guard every engine the tests start, in this process or a child. Tests that want a token set one.
for _name in ("TEAMSTER_TOKEN", "TEAMSTER_ADMIN_TOKEN", "III_TOKEN"):
    os.environ.pop(_name, None)


def engine_config(
    storage: Literal["memory", "sqlite"] = "memory", data_dir: Path | None = None, **module_config: dict[str, Any]
) -> EngineConfig:
    """Every built-in worker, listeners on ephemeral ports; `module_config` overrides per worker name."""
    workers = []
    for name in DEFAULT_WORKERS:
        config: dict[str, Any] = {"port": 0} if name in ("iii-worker-manager", "iii-http") else {}
        config.update(module_config.get(name.replace("-", "_"), {}))
        workers.append(WorkerEntry(name=name, config=config))
    return EngineConfig(
        storage=storage, data_dir=data_dir or Path(".teamster"), workers=workers, registration_namespace_grace_ms=500
    )


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(engine_config()) as running:
        yield running


@pytest.fixture
def ws_url(engine: Engine) -> str:
    return f"ws://127.0.0.1:{engine.ports['ws']}"


Opener = Callable[[Worker], Awaitable[Worker]]


@pytest.fixture(params=["websocket", "inproc"])
async def open_worker(request: pytest.FixtureRequest, engine: Engine, ws_url: str) -> AsyncIterator[Opener]:
    """Open workers over a real socket, or attached in-process; all are closed at teardown."""
    opened: list[Worker] = []

    async def _open(worker: Worker) -> Worker:
        if request.param == "websocket":
            await worker.open(ws_url, wait=5)
        else:
            await worker.open_local(engine)
        opened.append(worker)
        return worker

    yield _open
    for worker in opened:
        await worker.close()


@pytest.fixture
def http_url(engine: Engine) -> str:
    return f"http://127.0.0.1:{engine.ports['http']}"


@pytest.fixture
async def connect(ws_url: str) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Factory: `await connect(worker)` opens it over WebSocket; all are closed at teardown."""
    opened: list[Worker] = []

    async def _connect(worker: Worker) -> Worker:
        await worker.open(ws_url, wait=5)
        opened.append(worker)
        return worker

    yield _connect
    for worker in opened:
        await worker.close()


Connect = Callable[[Worker], Awaitable[Worker]]


def recorder(worker: Worker, function_id: str, returns: Any = None) -> list[Any]:
    """Serve `function_id` on `worker`, keeping every payload it receives."""
    calls: list[Any] = []

    async def record(data: Any) -> Any:
        calls.append(data)
        return returns

    worker.register_function(function_id, record)
    return calls


async def expect_bad_input(worker: Worker, function_id: str, payload: Any, field: str) -> InvocationError:
    """The call fails with a deserialization_error that names the offending field; returns the error."""
    with pytest.raises(InvocationError) as caught:
        await worker.trigger(function_id, payload)
    assert caught.value.code == "deserialization_error"
    assert f"{function_id}: {field}:" in caught.value.message
    return caught.value


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0, interval: float = 0.02) -> None:
    """Poll until `check` is true; fail with a clear message after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


# Not registered yet, or the engine is restarting: worth another try.
RETRYABLE = {"function_not_found", "CONNECTION_LOST", "TIMEOUT"}


async def retry_call(call: Callable[[], Awaitable[Any]], timeout: float = 10) -> Any:
    """`call()`'s result once it stops failing with a retryable code."""
    result: list[Any] = []

    async def attempt() -> bool:
        try:
            result.append(await call())
        except InvocationError as exc:
            if exc.code not in RETRYABLE:
                raise
            return False
        return True

    await eventually(attempt, timeout=timeout)
    return result[0]


async def until_callable(worker: Worker, function_id: str, payload: Any) -> Any:
    """Registration frames are fire-and-forget: poll until the engine routes the call."""
    return await retry_call(lambda: worker.trigger(function_id, payload, timeout=2))


async def trigger_bound(worker: Worker, function_id: str) -> bool:
    """Whether an active trigger binding targets `function_id`."""
    listing = await worker.trigger("engine::registered-triggers::list", {})
    return any(row["function_id"] == function_id and row["active"] for row in listing["registered_triggers"])
