"""Who `iii-http` answers: browser origins, `Host` names, the bearer token, deep bodies, slow clients.

Real engines on real sockets; the routes are a worker's, registered over the WebSocket as any worker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from teamster.engine.access import Unguarded
from teamster.engine.engine import Engine
from tests.conftest import engine_config
from tests.test_http import serve, tuned_engine, ws_worker

TOKEN = "tok-http-listener"
EVIL = "https://evil.example"


def recorder(seen: list[dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A route's function that answers the body it was sent, remembering each request in `seen`."""

    def handler(req: dict[str, Any]) -> dict[str, Any]:
        seen.append(req)
        return {"body": {"got": req["body"]}}

    return handler


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


# ---- browsers --------------------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_and_its_simple_post_runs_nothing(http: aiohttp.ClientSession) -> None:
    async with tuned_engine() as (engine, url), ws_worker(engine, "shop") as worker:
        seen: list[dict[str, Any]] = []
        await serve(engine, worker, "shop::buy", recorder(seen), api_path="buy", http_method="POST")
        # A form-like cross-site POST: a browser sends it without a preflight.
        headers = {"Origin": EVIL, "Content-Type": "text/plain"}
        async with http.post(f"{url}/buy", data="x", headers=headers) as resp:
            assert resp.status == 403
            assert await resp.json() == {"error": f"origin '{EVIL}' is not allowed", "code": "forbidden_origin"}
            assert "Access-Control-Allow-Origin" not in resp.headers
        preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        async with http.options(f"{url}/buy", headers=preflight) as resp:
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
        assert seen == []

        async with http.post(f"{url}/buy", json={"n": 1}, headers={"Origin": url}) as resp:  # same origin
            assert resp.status == 200
            assert await resp.json() == {"got": {"n": 1}}
            assert "Access-Control-Allow-Origin" not in resp.headers  # same origin needs none
        assert len(seen) == 1


@pytest.mark.parametrize(
    "config",
    [{"allowed_origins": ["https://app.example"]}, {"cors": {"allowed_origins": ["https://app.example"]}}],
    ids=["allowed_origins", "iii-cors-spelling"],
)
async def test_an_allowed_origin_gets_itself_back_and_others_still_nothing(
    http: aiohttp.ClientSession, config: dict[str, Any]
) -> None:
    async with tuned_engine(**config) as (engine, url), ws_worker(engine, "shop") as worker:
        seen: list[dict[str, Any]] = []
        await serve(engine, worker, "shop::list", recorder(seen), api_path="list")
        async with http.get(f"{url}/list", headers={"Origin": "https://app.example"}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.get(f"{url}/list", headers={"Origin": EVIL}) as resp:
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
        assert len(seen) == 1


async def test_any_origin_only_when_star_is_configured(http: aiohttp.ClientSession) -> None:
    async with tuned_engine(allowed_origins=["*"]) as (engine, url), ws_worker(engine, "open") as worker:
        await serve(engine, worker, "open::list", recorder([]), api_path="list")
        async with http.get(f"{url}/list", headers={"Origin": EVIL}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_rebound_host_name_is_refused_on_a_listener_without_a_token(http: aiohttp.ClientSession) -> None:
    async with tuned_engine(allowed_hosts=["teamster.lan"]) as (engine, url), ws_worker(engine, "h") as worker:
        seen: list[dict[str, Any]] = []
        await serve(engine, worker, "h::read", recorder(seen), api_path="read")
        async with http.get(f"{url}/read", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 421
            assert (await resp.json())["code"] == "unknown_host"
        assert seen == []
        port = engine.ports["http"]
        for host in (f"localhost:{port}", f"teamster.lan:{port}", f"127.0.0.1:{port}"):
            async with http.get(f"{url}/read", headers={"Host": host}) as resp:
                assert resp.status == 200, host
        assert len(seen) == 3


# ---- the token ---------------------------------------------------------------------------------


async def test_with_a_token_every_worker_route_needs_it_unless_declared_public(http: aiohttp.ClientSession) -> None:
    async with tuned_engine(token=TOKEN, token_env=None) as (engine, url), ws_worker(engine, "echo") as worker:
        seen: list[dict[str, Any]] = []
        await serve(engine, worker, "echo::post", recorder(seen), api_path="echo", http_method="POST")
        await serve(engine, worker, "echo::ping", lambda req: {"body": "pong"}, api_path="ping", public=True)

        async with http.post(f"{url}/echo", json={"hi": 1}) as resp:
            assert resp.status == 401
            assert await resp.json() == {
                "error": "unauthorized: missing bearer token; send Authorization: Bearer <TEAMSTER_TOKEN>",
                "code": "unauthorized",
            }
        async with http.post(f"{url}/echo", json={"hi": 1}, headers={"Authorization": "Bearer guess"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"].startswith("unauthorized: wrong token")
        assert seen == []

        async with http.post(f"{url}/echo", json={"hi": 1}, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"got": {"hi": 1}}
        [req] = seen
        assert "authorization" not in req["headers"]  # the listener's token is the engine's, no function's

        async with http.get(f"{url}/ping") as resp:
            assert resp.status == 200
            assert await resp.json() == "pong"


async def test_the_token_is_checked_before_the_body_is_read() -> None:
    """A 401 arrives while the client still holds back a body it announced: nothing waited for it."""
    async with tuned_engine(token=TOKEN, token_env=None) as (engine, _), ws_worker(engine, "up") as worker:
        await serve(engine, worker, "up::load", recorder([]), api_path="load", http_method="POST")
        head = (
            b"POST /load HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n"
        )
        status = await first_line(engine.ports["http"], head + b"\r\n[")
        assert status.startswith(b"HTTP/1.1 401"), status
        # A client that asks first (curl does, for big uploads) is told before it sends anything.
        status = await first_line(engine.ports["http"], head + b"Expect: 100-continue\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 401"), status  # not "100 Continue"


async def first_line(port: int, sent: bytes) -> bytes:
    """The first line the server answers `sent` with, on a raw connection that sends nothing more."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.readline()
    finally:
        writer.close()


async def test_a_deep_json_body_is_a_400_after_the_token_and_the_server_serves_on(
    http: aiohttp.ClientSession,
) -> None:
    async with tuned_engine(token=TOKEN, token_env=None) as (engine, url), ws_worker(engine, "deep") as worker:
        seen: list[dict[str, Any]] = []
        await serve(engine, worker, "deep::take", recorder(seen), api_path="take", http_method="POST")
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for depth in (200_000, 600):  # past the decoder's own stack, and past MAX_JSON_DEPTH only
            body = "[" * depth + "]" * depth
            async with http.post(f"{url}/take", data=body, headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 401
            async with http.post(f"{url}/take", data=body, headers=auth) as resp:
                assert resp.status == 400
                reply = await resp.json()
                assert reply["code"] == "bad_request" and "deeper than 512" in reply["error"]
        assert seen == []
        async with http.post(f"{url}/take", data="[[1]]", headers=auth) as resp:
            assert await resp.json() == {"got": [[1]]}


async def test_iii_http_will_not_listen_beyond_loopback_without_a_token() -> None:
    with pytest.raises(Unguarded, match=r"iii-http listens on 0\.0\.0\.0"):
        async with Engine(engine_config(iii_http={"host": "0.0.0.0", "token_env": None})):
            pass
    async with Engine(engine_config(iii_http={"host": "0.0.0.0", "token": TOKEN})) as engine:
        assert engine.ports["http"] > 0


# ---- slow clients ------------------------------------------------------------------------------


async def test_a_half_sent_request_head_is_closed_by_the_header_timeout() -> None:
    async with tuned_engine(header_timeout_ms=300) as (engine, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.ports["http"])
        writer.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # the server hung up
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed_by_the_same_timeout() -> None:
    async with tuned_engine(header_timeout_ms=300) as (engine, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.ports["http"])
        writer.write(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            assert (await reader.readline()).startswith(b"HTTP/1.1 404")
            while await reader.read(65536):  # the rest of the 404, then the close
                pass
        writer.close()
