"""Who may open the worker socket: a real engine, plain aiohttp clients (no teamster code) and the SDK.

With a token, an upgrade without it gets 401 before any frame; a web page's `Origin` gets 403 on every
path; a tokenless listener answers only loopback `Host` names, so a DNS-rebound page gets 403 too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from teamster.engine.config import ConfigError
from teamster.engine.engine import Engine
from teamster.engine.modules import worker_manager
from teamster.sdk import Worker
from tests.conftest import engine_config
from tests.engine_proc import EngineProcess

TOKEN = "worker-socket-secret"
PROVIDER_TOKEN = "provider-secret"
ADMIN_TOKEN = "operator-secret"
EVIL = "https://evil.example"


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The roles the engine gives the sessions it opens, in order."""
    seen: list[str] = []
    real = worker_manager.role_session

    def spy(role: str, *args: Any) -> Any:
        seen.append(role)
        return real(role, *args)

    monkeypatch.setattr(worker_manager, "role_session", spy)
    return seen


@pytest.fixture
async def tokened(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Engine]:
    """An engine whose worker socket takes TOKEN (role `worker`), $PROVIDER_TOKEN (role `provider`) and the
    operator's $TEAMSTER_ADMIN_TOKEN (role `admin`)."""
    monkeypatch.setenv("PROVIDER_TOKEN", PROVIDER_TOKEN)
    monkeypatch.setenv("TEAMSTER_ADMIN_TOKEN", ADMIN_TOKEN)
    access = {"token": TOKEN, "credentials": [{"token_env": "PROVIDER_TOKEN", "role": "provider"}]}
    async with Engine(engine_config(iii_worker_manager=access)) as running:
        yield running


def url(engine: Engine, path: str = "/") -> str:
    return f"ws://127.0.0.1:{engine.ports['ws']}{path}"


async def upgrade(target: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """101 and the first frame's JSON, or the refusal's status and headers (then no frame exists)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(target, headers=headers) as ws:
                first = await ws.receive(timeout=5)
                return 101, orjson.loads(first.data) if first.type is aiohttp.WSMsgType.TEXT else first.type
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status, refused.headers


@pytest.mark.parametrize("path", ["/", "/otel"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "empty", "not-bearer"],
)
async def test_an_upgrade_without_the_token_gets_401_and_nothing_else(
    tokened: Engine, path: str, headers: dict[str, str]
) -> None:
    status, answer = await upgrade(url(tokened, path), headers)
    assert status == 401
    assert answer["WWW-Authenticate"] == "Bearer"
    assert tokened.connections == {}  # never a worker, never a frame


async def test_a_wrong_token_in_the_query_gets_401(tokened: Engine) -> None:
    assert (await upgrade(url(tokened, f"/?token={TOKEN[:-1]}")))[0] == 401


@pytest.mark.parametrize(
    ("how", "role"),
    [
        ({"headers": {"Authorization": f"Bearer {TOKEN}"}}, "worker"),
        ({"query": f"?token={TOKEN}"}, "worker"),  # for clients that cannot set headers
        ({"headers": {"Authorization": f"Bearer {PROVIDER_TOKEN}"}}, "provider"),
        ({"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}, "admin"),
    ],
    ids=["header", "query", "credential", "operator"],
)
async def test_the_token_opens_the_socket_with_its_role(
    tokened: Engine, roles: list[str], how: dict[str, Any], role: str
) -> None:
    status, first = await upgrade(url(tokened, "/" + how.get("query", "")), how.get("headers"))
    assert status == 101
    assert first["type"] == "workerregistered"
    assert roles == [role]


@pytest.mark.parametrize("credential", ["header", "query"])
async def test_the_token_opens_the_telemetry_socket(tokened: Engine, credential: str) -> None:
    """`/otel` too: the Node SDK's telemetry can only carry the token in the engine URL's query."""
    headers = {"Authorization": f"Bearer {TOKEN}"} if credential == "header" else {}
    query = f"?token={TOKEN}" if credential == "query" else ""
    target = url(tokened, f"/otel{query}")
    async with aiohttp.ClientSession() as session, session.ws_connect(target, headers=headers) as ws:  # 101 or raise
        assert not ws.closed


async def test_the_operator_token_must_differ_from_the_worker_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMSTER_ADMIN_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match=r"\$TEAMSTER_ADMIN_TOKEN must differ from the worker token"):
        async with Engine(engine_config(iii_worker_manager={"token": TOKEN})):
            pass


async def test_a_tokenless_loopback_listener_admits_same_machine_workers_as_admin(
    engine: Engine, roles: list[str]
) -> None:
    status, first = await upgrade(url(engine))
    assert (status, first["type"]) == (101, "workerregistered")
    assert roles == ["admin"]


async def test_with_an_auth_function_the_token_comes_first_then_the_function_decides(roles: list[str]) -> None:
    asked: list[Any] = []
    gate = Worker("gate")

    @gate.function("gate::auth")
    async def auth(request: Any) -> Any:
        asked.append(request)
        if request["headers"].get("x-team") != "blue":
            raise PermissionError("not on the team")
        return {"allowed_functions": []}

    access = {"token": TOKEN, "rbac": {"auth_function_id": "gate::auth"}}
    async with Engine(engine_config(iii_worker_manager=access)) as running, gate.attach(running):
        assert (await upgrade(url(running), {"X-Team": "blue"}))[0] == 401
        assert asked == []  # refused before the auth function hears of it

        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, first = await upgrade(url(running), {**bearer, "X-Team": "red"})
        assert (status, first["error"]["code"]) == (101, "AUTH_ERROR")
        status, first = await upgrade(url(running), {**bearer, "X-Team": "blue"})
        assert (status, first["type"]) == (101, "workerregistered")
    assert len(asked) == 2
    assert roles == []  # the auth function's grants are the session, not the token's role


async def test_the_sdk_sends_teamster_token(tokened: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEAMSTER_TOKEN", raising=False)
    with pytest.raises(ConnectionError, match=r"refused this worker: .*401.*set TEAMSTER_TOKEN"):
        await Worker("no-token").open(url(tokened), wait=5)

    monkeypatch.setenv("TEAMSTER_TOKEN", TOKEN)
    async with Worker("with-token").connect(url(tokened), wait=5) as worker:
        # Channels open without the token: their unguessable key is what admits them.
        writer, reader = await worker.create_channel()
        await writer.write(b"through the channel socket")
        await writer.close()
        assert await reader.read_all() == b"through the channel socket"


async def test_a_channel_with_a_wrong_key_gets_nothing(tokened: Engine) -> None:
    channel = tokened.channels.create(owner=None)
    status, _ = await upgrade(url(tokened, f"/ws/channels/{channel.id}?key={channel.access_key}x&dir=read"))
    assert status == 404
    assert not channel.reader_taken


def paths(engine: Engine) -> list[str]:
    channel = engine.channels.create(owner=None)
    return ["/", "/otel", f"/ws/channels/{channel.id}?key={channel.access_key}&dir=read"]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["worker", "otel", "channel"])
async def test_a_web_page_is_refused_on_every_path(engine: Engine, which: int) -> None:
    target = url(engine, paths(engine)[which])
    status, _ = await upgrade(target, {"Origin": EVIL})
    assert status == 403
    assert engine.connections == {}
    assert not any(c.reader_taken for c in engine.channels.channels.values())


async def test_a_page_rebinding_its_name_to_loopback_is_refused_on_every_path(engine: Engine) -> None:
    port = engine.ports["ws"]
    for path in paths(engine):
        # Same-origin as far as the browser knows: its Origin and Host both name evil.example.
        headers = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        assert (await upgrade(url(engine, path), headers))[0] == 403, path
    assert engine.connections == {}


async def test_the_listeners_own_origin_and_allowed_ones_are_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    access = {"allowed_origins": ["https://console.example"], "allowed_hosts": ["teamster.lan"]}
    async with Engine(engine_config(iii_worker_manager=access)) as running:
        port = running.ports["ws"]
        for headers in (
            {"Origin": f"http://127.0.0.1:{port}"},
            {"Origin": "https://console.example"},
            {"Host": f"teamster.lan:{port}", "Origin": f"http://teamster.lan:{port}"},
        ):
            assert (await upgrade(url(running), headers))[0] == 101, headers


async def test_a_tokened_listener_answers_any_host_name(tokened: Engine) -> None:
    """The token already stops a rebound page (it cannot know it), so names are not checked."""
    headers = {"Host": "engine.lan", "Authorization": f"Bearer {TOKEN}"}
    assert (await upgrade(url(tokened), headers))[0] == 101


@pytest.fixture
def wildcard_engine(tmp_path: Path) -> Iterator[EngineProcess]:
    """`teamster engine` with its worker socket on 0.0.0.0 and TEAMSTER_TOKEN set."""
    config = tmp_path / "teamster.yaml"
    config.write_text(yaml.safe_dump({"workers": [{"name": "iii-worker-manager", "config": {"host": "0.0.0.0"}}]}))
    proc = EngineProcess(tmp_path / "data", extra=["--config", str(config)], env={"TEAMSTER_TOKEN": TOKEN}).start()
    yield proc
    proc.stop()


@pytest.mark.slow
async def test_an_engine_beyond_loopback_demands_its_token(wildcard_engine: EngineProcess) -> None:
    assert (await upgrade(wildcard_engine.ws_url))[0] == 401
    status, first = await upgrade(wildcard_engine.ws_url, {"Authorization": f"Bearer {TOKEN}"})
    assert (status, first["type"]) == (101, "workerregistered")
