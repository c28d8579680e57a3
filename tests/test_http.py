"""`iii-http`: real HTTP requests against the engine, served by workers over WebSocket and in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from teamster.engine.engine import Engine
from teamster.sdk import Worker
from tests.conftest import Connect, engine_config, eventually


def routed(engine: Engine, binding_id: str) -> Callable[[], bool]:
    """True once the binding is live with its provider (the route is served)."""

    def check() -> bool:
        binding = engine.triggers.bindings.get(binding_id)
        return binding is not None and binding.provider_key is not None

    return check


async def serve(engine: Engine, worker: Worker, function_id: str, fn: Any, **config: Any) -> str:
    """Register `fn` behind an `http` trigger on an open worker; returns once the route is live."""
    metadata = config.pop("metadata", None)
    worker.register_function(function_id, fn)
    binding_id = worker.register_trigger("http", function_id, config, metadata=metadata)
    await eventually(routed(engine, binding_id))
    return binding_id


@asynccontextmanager
async def tuned_engine(**http: Any) -> AsyncIterator[tuple[Engine, str]]:
    """An engine whose `iii-http` config is overridden; yields it with its HTTP base URL."""
    async with Engine(engine_config(iii_http=http)) as engine:
        yield engine, f"http://127.0.0.1:{engine.ports['http']}"


@asynccontextmanager
async def ws_worker(engine: Engine, name: str) -> AsyncIterator[Worker]:
    async with Worker(name).connect(f"ws://127.0.0.1:{engine.ports['ws']}", wait=5) as worker:
        yield worker


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# ---- requests ----------------------------------------------------------------------------------


async def test_json_post_reaches_the_function_as_the_iii_payload(
    engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await connect(Worker("orders"))
    seen: list[tuple[Any, Any]] = []

    async def create(req: dict[str, Any], metadata: Any) -> dict[str, Any]:
        seen.append((req, metadata))
        return {"status_code": 201, "body": {"id": req["path_params"]["id"]}}

    await serve(
        engine, worker, "orders::create", create, api_path="/orders/:id", http_method="post", metadata={"src": "api"}
    )

    async with http.post(
        f"{http_url}/orders/42?q=x&page=2", json={"item": "tea"}, headers={"X-Tenant": "acme"}
    ) as resp:
        assert resp.status == 201
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"id": "42"}

    [(req, metadata)] = seen
    assert metadata == {"src": "api"}
    assert set(req) == {
        "path",
        "method",
        "path_params",
        "query_params",
        "headers",
        "body",
        "trigger",
        "request_body",
        "response",
    }
    assert req["path"] == "orders/:id"
    assert req["method"] == "POST"
    assert req["path_params"] == {"id": "42"}
    assert req["query_params"] == {"q": "x", "page": "2"}
    assert req["headers"]["x-tenant"] == "acme"
    assert req["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() and isinstance(value, str) for name, value in req["headers"].items())
    assert req["body"] == {"item": "tea"}
    assert req["trigger"] == {"type": "http", "path": "orders/:id", "method": "POST"}
    assert set(req["request_body"]) == {"channel_id", "access_key", "direction"}
    assert req["request_body"]["direction"] == "read"
    assert req["response"]["direction"] == "write"
    assert "_caller_worker_id" not in req


async def test_non_json_body_arrives_on_the_request_body_channel(
    engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await connect(Worker("upload"))
    blob = bytes(range(256)) * 1000  # several 64 KiB frames

    async def upload(req: dict[str, Any]) -> dict[str, Any]:
        data = await worker.channel_reader(req["request_body"]).read_all()
        return {"body": {"size": len(data), "same": data == blob, "parsed": req["body"]}}

    await serve(engine, worker, "files::upload", upload, api_path="files", http_method="PUT")

    async with http.put(f"{http_url}/files", data=blob, headers={"Content-Type": "application/octet-stream"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"size": len(blob), "same": True, "parsed": None}


# ---- returned responses --------------------------------------------------------------------------

RETURNED: dict[str, Any] = {
    "dict-headers": {"status_code": 202, "headers": {"X-A": "one"}, "body": {"ok": True}},
    "list-headers": {"headers": ["Content-Type: text/xml", "X-B:  two "], "body": "<r/>"},
    "plain-string": {"body": "hi"},
    "text-dict": {"headers": {"Content-Type": "text/plain"}, "body": {"k": 1}},
    "nothing": None,
    "defaults": {},
}


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body", "extra"),
    [
        ("dict-headers", 202, "application/json", b'{"ok":true}', ("X-A", "one")),
        ("list-headers", 200, "text/xml", b"<r/>", ("X-B", "two")),
        ("plain-string", 200, "application/json", b'"hi"', None),
        ("text-dict", 200, "text/plain", b'{"k":1}', None),
        ("nothing", 200, "application/json", b"{}", None),
        ("defaults", 200, "application/json", b"{}", None),
    ],
)
async def test_returned_values_become_responses(
    engine: Engine,
    connect: Connect,
    http_url: str,
    http: aiohttp.ClientSession,
    kind: str,
    status: int,
    content_type: str,
    body: bytes,
    extra: tuple[str, str] | None,
) -> None:
    worker = await connect(Worker("responder"))
    await serve(engine, worker, "resp::kind", lambda req: RETURNED[req["path_params"]["kind"]], api_path="resp/:kind")

    async with http.get(f"{http_url}/resp/{kind}") as resp:
        assert resp.status == status
        assert resp.headers["Content-Type"] == content_type
        assert await resp.read() == body
        if extra is not None:
            assert resp.headers[extra[0]] == extra[1]


# ---- streamed responses --------------------------------------------------------------------------


async def stream_three(worker: Worker, req: dict[str, Any], go_on: asyncio.Event) -> None:
    writer = worker.channel_writer(req["response"])
    await writer.send_text(json.dumps({"type": "set_status", "status_code": 201}))
    await writer.send_text(json.dumps({"type": "set_headers", "headers": {"content-type": "text/plain", "x-s": "1"}}))
    await writer.write(b"one,")
    await go_on.wait()  # the client reads the first chunk before the rest exists
    await writer.write(b"two,")
    await writer.write(b"three")
    await writer.close()


async def read_streamed(http: aiohttp.ClientSession, url: str, go_on: asyncio.Event) -> None:
    async with http.get(url) as resp:
        assert resp.status == 201
        assert resp.headers["Content-Type"] == "text/plain"
        assert resp.headers["X-S"] == "1"
        assert await resp.content.readexactly(4) == b"one,"
        go_on.set()
        assert await resp.content.read() == b"two,three"


async def test_streamed_response_over_a_websocket_worker(
    engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await connect(Worker("streamer"))
    go_on = asyncio.Event()

    async def download(req: dict[str, Any]) -> None:
        await stream_three(worker, req, go_on)

    await serve(engine, worker, "files::download", download, api_path="download")
    await read_streamed(http, f"{http_url}/download", go_on)


async def test_in_process_worker_serves_returned_and_streamed_routes(
    engine: Engine, http_url: str, http: aiohttp.ClientSession
) -> None:
    go_on = asyncio.Event()
    async with Worker("local").attach(engine) as worker:

        async def download(req: dict[str, Any]) -> None:
            await stream_three(worker, req, go_on)

        await serve(engine, worker, "local::download", download, api_path="local/download")
        await serve(engine, worker, "local::hello", lambda req: {"body": {"hi": req["method"]}}, api_path="local/hi")
        background: list[asyncio.Task[None]] = []

        async def stream_later(req: dict[str, Any]) -> None:
            writer = worker.channel_writer(req["response"])

            async def finish() -> None:
                await asyncio.sleep(0.05)
                await writer.send_text(json.dumps({"type": "set_status", "status_code": 203}))
                await writer.write(b"late")
                await writer.close()

            background.append(asyncio.create_task(finish()))  # returns before streaming anything

        await serve(engine, worker, "local::later", stream_later, api_path="local/later")

        await read_streamed(http, f"{http_url}/local/download", go_on)
        async with http.get(f"{http_url}/local/hi") as resp:
            assert (resp.status, await resp.json()) == (200, {"hi": "GET"})
        async with http.get(f"{http_url}/local/later") as resp:
            assert (resp.status, await resp.read()) == (203, b"late")


@pytest.mark.parametrize("over", ["websocket", "in-process"])
async def test_a_client_leaving_mid_stream_makes_the_writer_fail(
    over: str, engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    """An endless stream (SSE) learns its reader left: its next write raises, instead of running forever."""
    worker = await connect(Worker("ticker")) if over == "websocket" else Worker("ticker")
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def tick(req: dict[str, Any]) -> None:
        writer = worker.channel_writer(req["response"])
        try:
            while True:
                await writer.write(b"tick\n")
                await asyncio.sleep(0.01)
        except (ConnectionResetError, ConnectionError, RuntimeError) as exc:
            ended.set_result(type(exc).__name__)

    async with contextlib.AsyncExitStack() as stack:
        if over == "in-process":
            await stack.enter_async_context(worker.attach(engine))
        await serve(engine, worker, "ticker::tick", tick, api_path="tick")
        async with http.get(f"{http_url}/tick") as resp:
            assert await resp.content.readline() == b"tick\n"
        assert await asyncio.wait_for(ended, 10)  # the client closed the response: the writer was told


# ---- routing -------------------------------------------------------------------------------------


async def test_unknown_route_is_404(http_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{http_url}/nowhere") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "NOT_FOUND"


async def test_unregistering_removes_the_route_live(
    engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await connect(Worker("pinger"))
    binding_id = await serve(engine, worker, "ping", lambda req: {"body": "pong"}, api_path="ping")
    async with http.get(f"{http_url}/ping") as resp:
        assert resp.status == 200

    worker.unregister_trigger(binding_id)

    async def gone() -> bool:
        async with http.get(f"{http_url}/ping") as resp:
            return resp.status == 404

    await eventually(gone)


async def test_literal_segments_win_and_a_function_binding_its_route_again_serves_newest(
    engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await connect(Worker("users"))
    await serve(engine, worker, "users::me", lambda req: {"body": "me"}, api_path="users/me")

    def by_id(req: dict[str, Any], metadata: Any) -> dict[str, Any]:
        return {"body": [metadata["v"], req["path_params"]]}

    await serve(engine, worker, "users::by_id", by_id, api_path="users/:id", metadata={"v": "old"})
    newer = worker.register_trigger("http", "users::by_id", {"api_path": "/users/:uid/"}, metadata={"v": "new"})
    await eventually(routed(engine, newer))  # its own route again, as a reconnecting worker binds it

    async with http.get(f"{http_url}/users/me") as resp:
        assert await resp.json() == "me"
    async with http.get(f"{http_url}/users/a%20b") as resp:
        assert await resp.json() == ["new", {"uid": "a b"}]

    worker.unregister_trigger(newer)  # the earlier binding takes the route back

    async def old_serves() -> bool:
        async with http.get(f"{http_url}/users/7") as resp:
            return bool(await resp.json() == ["old", {"id": "7"}])

    await eventually(old_serves)


# ---- pipeline ------------------------------------------------------------------------------------


async def test_condition_false_skips_the_handler_with_422(
    engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await connect(Worker("guarded"))
    conditions: list[dict[str, Any]] = []
    handled: list[str] = []

    def allow(req: dict[str, Any]) -> Any:
        conditions.append(req)
        return {"yes": True, "no": False}.get(req["query_params"].get("allow", ""))

    worker.register_function("guard::allow", allow)
    await serve(
        engine,
        worker,
        "guard::handle",
        lambda req: handled.append(req["query_params"].get("allow", "")),
        api_path="guarded",
        condition_function_id="guard::allow",
    )

    for allow_value, expected in (("no", 422), ("yes", 200), ("", 200)):  # only a literal false skips
        async with http.get(f"{http_url}/guarded", params={"allow": allow_value}) as resp:
            assert resp.status == expected
            if expected == 422:
                body = await resp.json()
                assert body["skipped"] is True
                assert body["error"]["code"] == "CONDITION_NOT_MET"
    assert handled == ["yes", ""]
    assert "request_body" not in conditions[0] and "response" not in conditions[0]
    assert conditions[0]["trigger"] == {"type": "http", "path": "guarded", "method": "GET"}


async def test_middleware_runs_in_order_and_can_respond(http: aiohttp.ClientSession) -> None:
    global_mw = [
        {"function_id": "mw::second", "priority": 20},
        {"function_id": "mw::first", "phase": "preHandler", "priority": 10},
    ]
    async with tuned_engine(middleware=global_mw) as (engine, url), ws_worker(engine, "mw") as worker:
        calls: list[str] = []
        inputs: list[dict[str, Any]] = []

        def middleware(name: str, stop_param: str) -> Callable[[dict[str, Any]], Any]:
            def run(data: dict[str, Any]) -> Any:
                calls.append(name)
                inputs.append(data)
                if stop_param in data["request"]["query_params"]:
                    return {"action": "respond", "response": {"status_code": 401, "body": {"by": name}}}
                return None if name == "second" else {"action": "continue"}

            return run

        worker.register_function("mw::first", middleware("first", "stop-first"))
        worker.register_function("mw::second", middleware("second", "stop-second"))
        worker.register_function("mw::route", middleware("route", "stop-route"))
        worker.register_function("mw::cond", lambda req: calls.append("condition"))
        await serve(
            engine,
            worker,
            "mw::handler",
            lambda req: calls.append("handler"),
            api_path="items/:id",
            condition_function_id="mw::cond",
            middleware_function_ids=["mw::route"],
        )

        async with http.get(f"{url}/items/7?x=1") as resp:
            assert resp.status == 200
        assert calls == ["first", "second", "condition", "route", "handler"]
        assert inputs[0] == {
            "phase": "preHandler",
            "request": {
                "path_params": {"id": "7"},
                "query_params": {"x": "1"},
                "headers": inputs[0]["request"]["headers"],
                "method": "GET",
            },
            "context": {},
        }

        for stop, expected_calls in (
            ("stop-first", ["first"]),
            ("stop-second", ["first", "second"]),
            ("stop-route", ["first", "second", "condition", "route"]),
        ):
            calls.clear()
            async with http.get(f"{url}/items/7", params={stop: ""}) as resp:
                assert resp.status == 401
                assert await resp.json() == {"by": expected_calls[-1]}
            assert calls == expected_calls


async def test_function_error_is_a_500_with_its_code(
    engine: Engine, connect: Connect, http_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await connect(Worker("broken"))

    def boom(req: dict[str, Any]) -> None:
        raise ValueError("kaboom")

    await serve(engine, worker, "broken::boom", boom, api_path="boom")
    async with http.get(f"{http_url}/boom") as resp:
        assert resp.status == 500
        assert await resp.json() == {"error": {"code": "invocation_failed", "message": "kaboom"}}


async def test_slow_function_times_out_with_504(http: aiohttp.ClientSession) -> None:
    async with tuned_engine(default_timeout=300) as (engine, url), ws_worker(engine, "slow") as worker:

        async def slow(req: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(3)
            return {}

        await serve(engine, worker, "slow::fn", slow, api_path="slow")
        started = time.monotonic()
        async with http.get(f"{url}/slow") as resp:
            assert resp.status == 504
            assert (await resp.json())["error"]["code"] == "TIMEOUT"
        assert time.monotonic() - started < 2


async def test_requests_beyond_the_concurrency_limit_get_503(http: aiohttp.ClientSession) -> None:
    async with tuned_engine(concurrency_request_limit=1) as (engine, url), ws_worker(engine, "busy") as worker:
        entered, release = asyncio.Event(), asyncio.Event()

        async def hold(req: dict[str, Any]) -> dict[str, Any]:
            entered.set()
            await release.wait()
            return {"body": "done"}

        await serve(engine, worker, "busy::hold", hold, api_path="hold")
        first = asyncio.create_task(http.get(f"{url}/hold"))
        await entered.wait()
        async with http.get(f"{url}/hold") as resp:
            assert resp.status == 503
        release.set()
        async with await first as resp:
            assert await resp.json() == "done"


async def test_cors_preflight_and_allowed_origins(http: aiohttp.ClientSession) -> None:
    cors = {"allowed_origins": ["https://app.example"], "allowed_methods": ["GET", "POST"]}
    async with tuned_engine(cors=cors) as (engine, url), ws_worker(engine, "cors") as worker:
        await serve(engine, worker, "cors::fn", lambda req: {"body": "ok"}, api_path="c")
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        async with http.options(f"{url}/c", headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST"
        async with http.get(f"{url}/c", headers={"Origin": "https://app.example"}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"


# ---- registration --------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{"http_method": "GET"}, {"api_path": "x", "http_method": "FETCH"}])
async def test_bad_trigger_config_is_refused(
    engine: Engine, connect: Connect, caplog: pytest.LogCaptureFixture, config: dict[str, Any]
) -> None:
    worker = await connect(Worker("careless"))
    worker.register_function("careless::fn", lambda req: None)
    with caplog.at_level(logging.ERROR, logger="teamster.sdk"):
        binding_id = worker.register_trigger("http", "careless::fn", config)
        await eventually(lambda: f"trigger {binding_id}" in caplog.text and "refused" in caplog.text)
    listed = await worker.trigger("engine::registered-triggers::list", {})
    assert binding_id not in [t["id"] for t in listed["registered_triggers"]]
