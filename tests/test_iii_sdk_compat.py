"""The official `iii-sdk` (pinned in pyproject) as a client of a real teamster engine process."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from iii import InitOptions, TriggerActionEnqueue, register_worker
from iii import InvocationError as IIIInvocationError
from iii.iii import III
from iii_helpers.observability.reconnection import ReconnectionConfig

from teamster.sdk import InvocationError, Worker
from tests.conftest import eventually, retry_call, trigger_bound, until_callable
from tests.engine_proc import EngineProcess, tokened_engine

pytestmark = pytest.mark.slow


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


def iii_options(name: str, namespace: str | None = None, headers: dict[str, str] | None = None) -> InitOptions:
    return InitOptions(
        worker_name=name,
        namespace=namespace,
        headers=headers,
        enable_metrics_reporting=False,
        otel={"enabled": False},
        invocation_timeout_ms=5000,
        reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=500),
    )


@pytest.fixture
async def iii_client(engine_proc: EngineProcess) -> AsyncIterator[III]:
    client = await asyncio.to_thread(register_worker, engine_proc.ws_url, iii_options("iii-compat"))
    yield client
    await asyncio.to_thread(client.shutdown)


@pytest.fixture
async def teamster_worker(engine_proc: EngineProcess) -> AsyncIterator[Worker]:
    worker = Worker("teamster-compat")
    async with worker.connect(engine_proc.ws_url, wait=5):
        yield worker


async def test_calls_both_ways(iii_client: III, teamster_worker: Worker) -> None:
    def upper(data: dict[str, Any]) -> dict[str, Any]:
        return {"text": data["text"].upper(), "caller": data.get("_caller_worker_id")}

    iii_client.register_function("compat::upper", upper, description="Upper-case text")
    result = await until_callable(teamster_worker, "compat::upper", {"text": "hello"})
    assert result == {"text": "HELLO", "caller": teamster_worker.worker_id}

    @teamster_worker.function("teamster::add")
    async def add(data: dict[str, Any]) -> int:
        return int(data["a"]) + int(data["b"])

    await until_callable(teamster_worker, "teamster::add", {"a": 0, "b": 0})
    assert await iii_client.trigger_async({"function_id": "teamster::add", "payload": {"a": 2, "b": 40}}) == 42


async def test_errors_cross_sdks(iii_client: III, teamster_worker: Worker) -> None:
    def boom(data: Any) -> None:
        raise ValueError("kaboom")

    iii_client.register_function("compat::boom", boom)
    await eventually(lambda: _listed(teamster_worker, "compat::boom"))
    with pytest.raises(InvocationError) as caught:
        await teamster_worker.trigger("compat::boom", {})
    assert caught.value.code == "invocation_failed"
    assert "kaboom" in caught.value.message
    assert caught.value.stacktrace and "ValueError" in caught.value.stacktrace

    with pytest.raises(IIIInvocationError) as iii_caught:
        await iii_client.trigger_async({"function_id": "nowhere::missing", "payload": {}})
    assert iii_caught.value.code == "function_not_found"


async def test_http_trigger_serves_real_request(engine_proc: EngineProcess, iii_client: III) -> None:
    def hello(req: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": 201, "body": {"hello": req["path_params"]["name"], "q": req["query_params"].get("q")}}

    iii_client.register_function("compat::hello", hello)
    iii_client.register_trigger(
        {"type": "http", "function_id": "compat::hello", "config": {"api_path": "hello/:name", "http_method": "GET"}}
    )
    async with aiohttp.ClientSession() as http:

        async def served() -> bool:
            async with http.get(f"{engine_proc.http_url}/hello/ada?q=1") as resp:
                if resp.status == 404:
                    return False
                assert resp.status == 201
                assert await resp.json() == {"hello": "ada", "q": "1"}
                return True

        await eventually(served, timeout=10)


async def test_a_route_another_function_serves_is_refused_to_the_iii_sdk(
    engine_proc: EngineProcess, iii_client: III, teamster_worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    teamster_worker.register_function("teamster::hello", lambda req: {"body": "teamster"})
    teamster_worker.register_trigger("http", "teamster::hello", {"api_path": "hello/:name"})
    await eventually(lambda: trigger_bound(teamster_worker, "teamster::hello"))

    iii_client.register_function("compat::hello", lambda req: {"body": "iii"})
    with caplog.at_level(logging.ERROR, logger="iii"):
        iii_client.register_trigger(
            {"type": "http", "function_id": "compat::hello", "config": {"api_path": "hello/:who", "http_method": "GET"}}
        )
        await eventually(lambda: "conflicts with already-registered route" in caplog.text, timeout=10)
    assert "Trigger registration failed" in caplog.text
    async with aiohttp.ClientSession() as http, http.get(f"{engine_proc.http_url}/hello/ada") as resp:
        assert await resp.json() == "teamster"


async def test_state_and_state_trigger(iii_client: III, teamster_worker: Worker) -> None:
    seen: list[dict[str, Any]] = []
    iii_client.register_function("compat::on_change", lambda event: seen.append(event))
    iii_client.register_trigger({"type": "state", "function_id": "compat::on_change", "config": {"scope": "orders"}})
    await eventually(lambda: trigger_bound(teamster_worker, "compat::on_change"))

    put = {"function_id": "state::set", "payload": {"scope": "orders", "key": "o1", "value": {"total": 3}}}
    assert await iii_client.trigger_async(put) == {"old_value": None, "new_value": {"total": 3}}
    got = await iii_client.trigger_async({"function_id": "state::get", "payload": {"scope": "orders", "key": "o1"}})
    assert got == {"total": 3}
    await eventually(lambda: len(seen) == 1)
    assert seen[0] == {
        "type": "state",
        "event_type": "state:created",
        "scope": "orders",
        "key": "o1",
        "old_value": None,
        "new_value": {"total": 3},
    }


async def test_enqueue_from_iii_is_delivered(iii_client: III, teamster_worker: Worker) -> None:
    received: list[Any] = []

    @teamster_worker.function("teamster::job")
    async def job(data: Any) -> None:
        received.append(data)

    await until_callable(teamster_worker, "teamster::job", "warm-up")
    receipt = await iii_client.trigger_async(
        {"function_id": "teamster::job", "payload": {"n": 1}, "action": TriggerActionEnqueue(queue="jobs")}
    )
    assert isinstance(receipt["messageReceiptId"], str)
    await eventually(lambda: {"n": 1} in received)


async def test_function_conflict_keeps_first_owner(iii_client: III, teamster_worker: Worker) -> None:
    @teamster_worker.function("shared::thing")
    async def mine(data: Any) -> str:
        return "teamster"

    await until_callable(teamster_worker, "shared::thing", {})
    iii_client.register_function("shared::thing", lambda data: "iii")
    await asyncio.sleep(0.3)  # give a wrongly accepted takeover the time to happen
    assert await teamster_worker.trigger("shared::thing", {}) == "teamster"


async def test_namespaced_worker(engine_proc: EngineProcess, teamster_worker: Worker) -> None:
    client = await asyncio.to_thread(register_worker, engine_proc.ws_url, iii_options("orders-worker", "orders"))
    try:
        client.register_function("orders::create", lambda data: {"ns": "orders"})
        result = await retry_call(lambda: teamster_worker.trigger("orders::create", {}, namespace="orders"))
        assert result == {"ns": "orders"}
        with pytest.raises(InvocationError) as caught:
            await teamster_worker.trigger("orders::create", {}, namespace="default")
        assert caught.value.code == "function_not_found"
        assert "orders" in caught.value.message
    finally:
        await asyncio.to_thread(client.shutdown)


async def test_reconnects_after_engine_restart(engine_proc: EngineProcess, iii_client: III) -> None:
    iii_client.register_function("compat::ping", lambda data: "pong")
    caller = Worker("restart-caller")
    async with caller.connect(engine_proc.ws_url, wait=5):
        assert await until_callable(caller, "compat::ping", {}) == "pong"
        engine_proc.kill()
        engine_proc.start()  # same ports, same data directory
        assert await until_callable(caller, "compat::ping", {}) == "pong"


@pytest.mark.parametrize("how", ["headers", "III_TOKEN"])
async def test_a_tokened_engine_takes_the_iii_sdk_with_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """`InitOptions.headers`, or the SDK's own `Authorization: Bearer $III_TOKEN`, carries the token."""
    token = "iii-compat-secret"
    async with tokened_engine(tmp_path / "data", token) as proc:
        headers = {"Authorization": f"Bearer {token}"} if how == "headers" else None
        if how == "III_TOKEN":
            monkeypatch.setenv("III_TOKEN", token)
        client = await asyncio.to_thread(register_worker, proc.ws_url, iii_options("iii-tokened", headers=headers))
        try:
            client.register_function("compat::tokened", lambda data: {"iii": data})
            monkeypatch.setenv("TEAMSTER_TOKEN", token)
            async with Worker("teamster-tokened").connect(proc.ws_url, wait=5) as worker:
                assert await until_callable(worker, "compat::tokened", 1) == {"iii": 1}
                worker.register_function("teamster::tokened", lambda data: {"teamster": data})
                await until_callable(worker, "teamster::tokened", 0)
                called = {"function_id": "teamster::tokened", "payload": 2}
                assert await client.trigger_async(called) == {"teamster": 2}
        finally:
            await asyncio.to_thread(client.shutdown)


async def _listed(worker: Worker, function_id: str) -> bool:
    listing = await worker.trigger("engine::functions::list", {"prefix": function_id})
    return any(row["function_id"] == function_id for row in listing["functions"])


@pytest.fixture
def deep_encoding() -> Iterator[None]:
    """Room for both SDKs' JSON encoders (the standard library's, past orjson) to write a 1,100-deep payload."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    yield
    sys.setrecursionlimit(limit)


async def test_a_call_too_deep_for_the_engine_fails_at_once_in_both_sdks(
    iii_client: III, teamster_worker: Worker, deep_encoding: None
) -> None:
    deep: list[Any] = []
    for _ in range(1100):
        deep = [deep]
    with pytest.raises(IIIInvocationError) as iii_caught:
        await iii_client.trigger_async({"function_id": "state::get", "payload": {"tree": deep}})
    assert iii_caught.value.code == "payload_too_deep"
    with pytest.raises(InvocationError) as caught:
        await teamster_worker.trigger("state::get", {"tree": deep}, timeout=5)
    assert caught.value.code == "payload_too_deep"
    assert "1024 levels" in caught.value.message
