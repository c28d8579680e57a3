"""`iii-http-functions`: targets registered with the official iii SDK, called by a real engine over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from iii import InitOptions, register_worker
from iii import InvocationError as IIIInvocationError
from iii.iii import III
from iii_helpers.http import HttpAuthBearer, HttpInvocationConfig

from teamster.engine.config import WorkerEntry
from teamster.engine.engine import Engine
from tests.conftest import engine_config, eventually


@dataclass
class Target:
    """A real HTTP server standing in for a Lambda: records each request, answers `reply`."""

    reply: Any = field(default_factory=lambda: {"ok": True})
    delay_s: float = 0.0
    chunked: bool = False  # send the reply in small pieces, flushed one by one, as a slow network would
    seen: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.seen.append((request.method, dict(request.headers), body))
        await asyncio.sleep(self.delay_s)
        if not self.chunked:
            return web.json_response(self.reply)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        data = json.dumps(self.reply).encode()
        for start in range(0, len(data), 1000):
            await response.write(data[start : start + 1000])
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response


@asynccontextmanager
async def target_server(target: Target) -> AsyncIterator[Target]:
    app = web.Application()
    app.router.add_route("*", "/hook", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    target.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield target
    finally:
        await runner.cleanup()


@asynccontextmanager
async def hosting(headers: dict[str, str] | None = None, **config: Any) -> AsyncIterator[III]:
    """An engine running iii-http-functions with `config` (plus any worker-manager settings), and an iii client."""
    manager = config.pop("worker_manager", {})
    base = engine_config(iii_worker_manager=manager)
    base.workers.append(WorkerEntry(name="iii-http-functions", config=config))
    async with Engine(base) as engine:
        options = InitOptions(
            worker_name="http-fn", headers=headers, enable_metrics_reporting=False, otel={"enabled": False}
        )
        client = await asyncio.to_thread(register_worker, f"ws://127.0.0.1:{engine.ports['ws']}", options)
        try:
            yield client
        finally:
            await asyncio.to_thread(client.shutdown)


LOCAL = {"url_allowlist": ["http://127.0.0.1:"], "block_private_ips": False, "require_https": False}


async def call(client: III, function_id: str, payload: Any) -> Any:
    """Call once the registration has reached the engine (registration frames are not acknowledged)."""
    result: list[Any] = []

    async def attempt() -> bool:
        try:
            result.append(await asyncio.to_thread(client.trigger, {"function_id": function_id, "payload": payload}))
        except IIIInvocationError as exc:
            if exc.code == "function_not_found":
                return False
            raise
        return True

    await eventually(attempt, timeout=10)
    return result[0]


async def refusal(client: III, function_id: str) -> IIIInvocationError:
    with pytest.raises(IIIInvocationError) as caught:
        await call(client, function_id, {"x": 1})
    return caught.value


async def test_a_call_is_sent_to_the_target_and_answered_with_its_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    async with (
        target_server(Target(reply={"charged": 42})) as target,
        hosting(security=LOCAL, secret_env=["HOOK_TOKEN"]) as client,
    ):
        invocation = HttpInvocationConfig(
            url=target.url, method="PUT", headers={"X-Team": "payments"}, auth=HttpAuthBearer(token_key="HOOK_TOKEN")
        )
        client.register_function("lambda::charge", invocation)
        assert await call(client, "lambda::charge", {"amount": 42}) == {"charged": 42}
    [(method, headers, body)] = target.seen
    assert method == "PUT"
    assert body["amount"] == 42
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Team"] == "payments"


async def test_a_target_outside_the_allowlist_is_never_called() -> None:
    async with (
        target_server(Target()) as allowed,
        target_server(Target()) as other,
        hosting(security={**LOCAL, "url_allowlist": [allowed.url]}) as client,
    ):
        client.register_function("lambda::other", HttpInvocationConfig(url=other.url))
        refused = await refusal(client, "lambda::other")
    assert refused.code == "function_not_invokable"
    assert "url_allowlist" in str(refused)
    assert other.seen == []


async def test_loopback_targets_are_refused_while_private_addresses_are_blocked() -> None:
    security = {"url_allowlist": ["*"], "require_https": False}  # block_private_ips stays on, the default
    async with target_server(Target()) as target, hosting(security=security) as client:
        client.register_function("lambda::literal", HttpInvocationConfig(url=target.url))
        by_name = target.url.replace("127.0.0.1", "localhost")
        client.register_function("lambda::named", HttpInvocationConfig(url=by_name))
        literal = await refusal(client, "lambda::literal")
        named = await refusal(client, "lambda::named")
    assert literal.code == "function_not_invokable" and "block_private_ips" in str(literal)
    assert named.code == "http_invocation_failed" and "no public address" in str(named)  # checked where it connects
    assert target.seen == []


async def test_plain_http_is_refused_unless_allowed() -> None:
    security = {"url_allowlist": ["*"], "block_private_ips": False}  # require_https stays on, the default
    async with target_server(Target()) as target, hosting(security=security) as client:
        client.register_function("lambda::plain", HttpInvocationConfig(url=target.url))
        refused = await refusal(client, "lambda::plain")
    assert "require_https" in str(refused)
    assert target.seen == []


async def test_a_worker_token_may_not_register_targets() -> None:
    manager = {"port": 0, "token": "worker-secret"}
    async with (
        target_server(Target()) as target,
        hosting(headers={"Authorization": "Bearer worker-secret"}, security=LOCAL, worker_manager=manager) as client,
    ):
        client.register_function("lambda::mine", HttpInvocationConfig(url=target.url))
        refused = await refusal(client, "lambda::mine")
    assert "allowed_roles" in str(refused)
    assert target.seen == []


async def test_auth_may_only_name_the_variables_in_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_DB_PASSWORD", "hunter2")
    async with target_server(Target()) as target, hosting(security=LOCAL) as client:
        invocation = HttpInvocationConfig(url=target.url, auth=HttpAuthBearer(token_key="ENGINE_DB_PASSWORD"))
        client.register_function("lambda::leak", invocation)
        refused = await refusal(client, "lambda::leak")
    assert "secret_env" in str(refused)
    assert target.seen == []


async def test_a_reply_that_arrives_in_pieces_is_read_whole() -> None:
    reply = {"rows": [{"n": n, "text": "x" * 50} for n in range(400)]}  # about 30 KB, in 1 KB pieces
    async with target_server(Target(reply=reply, chunked=True)) as target, hosting(security=LOCAL) as client:
        client.register_function("lambda::rows", HttpInvocationConfig(url=target.url))
        assert await call(client, "lambda::rows", {}) == reply


async def test_an_oversized_reply_and_a_slow_target_fail_the_call() -> None:
    async with (
        target_server(Target(reply={"blob": "x" * 2000})) as big,
        target_server(Target(delay_s=2)) as slow,
        hosting(security=LOCAL, max_response_bytes=1000) as client,
    ):
        client.register_function("lambda::big", HttpInvocationConfig(url=big.url))
        client.register_function("lambda::slow", HttpInvocationConfig(url=slow.url, timeout_ms=200))
        too_big = await refusal(client, "lambda::big")
        too_slow = await refusal(client, "lambda::slow")
    assert too_big.code == "http_invocation_failed" and "max_response_bytes" in str(too_big)
    assert too_slow.code == "TIMEOUT"


async def test_without_the_module_a_target_is_not_invokable() -> None:
    async with Engine(engine_config()) as engine, target_server(Target()) as target:
        options = InitOptions(worker_name="http-fn", enable_metrics_reporting=False, otel={"enabled": False})
        client = await asyncio.to_thread(register_worker, f"ws://127.0.0.1:{engine.ports['ws']}", options)
        try:
            client.register_function("lambda::off", HttpInvocationConfig(url=target.url))
            refused = await refusal(client, "lambda::off")
        finally:
            await asyncio.to_thread(client.shutdown)
    assert refused.code == "function_not_invokable"
    assert target.seen == []
