"""The iii-stream client socket: real aiohttp WebSocket clients against an engine with its real listeners."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from teamster.engine.config import ConfigError
from teamster.engine.engine import Engine
from teamster.protocol import InvocationError
from teamster.sdk import Worker
from tests.conftest import Connect, engine_config, eventually, recorder


@asynccontextmanager
async def stream_engine(**stream: Any) -> AsyncIterator[Engine]:
    """An engine whose stream socket listens on an ephemeral port, with `stream` over the module config."""
    async with Engine(engine_config(iii_stream={"port": 0, **stream})) as running:
        yield running


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with stream_engine() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def subscriber(
    http: aiohttp.ClientSession, engine: Engine, path: str = "/", **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    ws: aiohttp.ClientWebSocketResponse = await http.ws_connect(
        f"ws://127.0.0.1:{engine.ports['stream']}{path}", **kwargs
    )
    return ws


def item(item_id: str, group: str = "g1", stream: str = "chat") -> dict[str, Any]:
    return {"stream_name": stream, "group_id": group, "item_id": item_id}


def subscription(sub_id: str, stream: str = "chat", group: str = "g1", item_id: str | None = None) -> dict[str, Any]:
    data = {"subscriptionId": sub_id, "streamName": stream, "groupId": group}
    return data if item_id is None else {**data, "id": item_id}


async def join(ws: aiohttp.ClientWebSocketResponse, sub_id: str, **where: Any) -> None:
    await ws.send_json({"type": "join", "data": subscription(sub_id, **where)})


async def leave(ws: aiohttp.ClientWebSocketResponse, sub_id: str, **where: Any) -> None:
    await ws.send_json({"type": "leave", "data": subscription(sub_id, **where)})


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    frame = await ws.receive(timeout=5)
    assert frame.type is WSMsgType.TEXT, frame
    message: dict[str, Any] = json.loads(frame.data)
    return message


async def next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next pushed message, its timestamp checked and dropped."""
    message = await next_message(ws)
    assert isinstance(message.pop("timestamp"), int)
    return message


def pushed(event: dict[str, Any], stream: str = "chat", group: str = "g1", item_id: str | None = None) -> Any:
    """A message the socket sends, without its timestamp."""
    return {"type": "stream", "streamName": stream, "groupId": group, "id": item_id, "event": event}


def presence(
    sub_id: str, stream: str = "chat", group: str = "g1", item_id: str | None = None, context: Any = None
) -> dict[str, Any]:
    """A `stream:join`/`stream:leave` payload."""
    return {"subscription_id": sub_id, "stream_name": stream, "group_id": group, "id": item_id, "context": context}


async def live(worker: Worker) -> None:
    """Once this call returns, the worker's earlier registrations have been applied."""
    await worker.trigger("stream::list_all", {})


# ---- pushes -------------------------------------------------------------------------------------


async def test_group_subscriber_gets_a_sync_then_every_change(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    w = await connect(Worker("writer"))
    await w.trigger("stream::set", {**item("a"), "data": {"n": 1}})
    await w.trigger("stream::set", {**item("b"), "data": "two"})
    ws = await subscriber(http, engine)
    await join(ws, "s1")
    assert await next_event(ws) == pushed({"type": "sync", "data": [{"n": 1}, "two"]})

    await w.trigger("stream::set", {**item("c", group="g2"), "data": "other group"})
    await w.trigger("stream::set", {**item("c", stream="other"), "data": "other stream"})
    await w.trigger("stream::set", {**item("c"), "data": {"v": 1}})
    await w.trigger("stream::set", {**item("c"), "data": {"v": 2}})
    await w.trigger("stream::update", {**item("c"), "ops": [{"type": "increment", "path": "v", "by": 3}]})
    await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "type": "typing", "data": {"who": "a"}})
    await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "id": "c", "type": "seen", "data": 1})
    await w.trigger("stream::delete", item("c"))
    await w.trigger("stream::delete", item("c"))  # nothing was deleted: nothing is pushed
    await w.trigger("stream::set", {**item("z"), "data": "last"})

    assert [await next_event(ws) for _ in range(7)] == [
        pushed({"type": "create", "data": {"v": 1}}, item_id="c"),
        pushed({"type": "update", "data": {"v": 2}}, item_id="c"),
        pushed({"type": "update", "data": {"v": 5}}, item_id="c"),
        pushed({"type": "event", "event": {"type": "typing", "data": {"who": "a"}}}),
        pushed({"type": "event", "event": {"type": "seen", "data": 1}}, item_id="c"),
        pushed({"type": "delete", "data": {"v": 5}}, item_id="c"),
        pushed({"type": "create", "data": "last"}, item_id="z"),
    ]


async def test_item_subscriber_gets_only_that_item(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    w = await connect(Worker("writer"))
    await w.trigger("stream::set", {**item("m1"), "data": {"text": "hi"}})
    ws = await subscriber(http, engine)
    await join(ws, "one", item_id="m1")
    assert await next_event(ws) == pushed({"type": "sync", "data": {"text": "hi"}}, item_id="m1")
    await join(ws, "missing", item_id="nope")
    assert await next_event(ws) == pushed({"type": "sync", "data": None}, item_id="nope")

    await w.trigger("stream::set", {**item("m2"), "data": "another item"})
    await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "type": "typing"})  # no id
    await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "id": "m2", "type": "typing"})
    await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "id": "m1", "type": "seen"})
    await w.trigger("stream::set", {**item("m1"), "data": {"text": "edited"}})

    assert await next_event(ws) == pushed({"type": "event", "event": {"type": "seen", "data": None}}, item_id="m1")
    assert await next_event(ws) == pushed({"type": "update", "data": {"text": "edited"}}, item_id="m1")


async def test_a_client_gets_one_copy_however_many_of_its_subscriptions_match(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    w = await connect(Worker("writer"))
    ws = await subscriber(http, engine)
    await join(ws, "group")
    await join(ws, "item", item_id="m1")
    await join(ws, "group again")
    assert [(await next_event(ws))["event"]["type"] for _ in range(3)] == ["sync", "sync", "sync"]

    await w.trigger("stream::set", {**item("m1"), "data": 1})
    await w.trigger("stream::set", {**item("m2"), "data": 2})
    assert await next_event(ws) == pushed({"type": "create", "data": 1}, item_id="m1")
    assert await next_event(ws) == pushed({"type": "create", "data": 2}, item_id="m2")


async def test_stream_triggers_get_the_message_subscribers_get(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    w = Worker("writer")
    events = recorder(w, "on_chat")
    w.register_trigger("stream", "on_chat", {"stream_name": "chat"})
    await connect(w)
    ws = await subscriber(http, engine)
    await join(ws, "s1")
    await next_event(ws)  # the sync

    await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "type": "typing", "data": [1]})
    message = await next_message(ws)
    assert message["event"] == {"type": "event", "event": {"type": "typing", "data": [1]}}
    await eventually(lambda: len(events) == 1)
    assert events == [message]


async def test_sync_reads_custom_streams_and_a_failed_read_sends_no_sync(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    w = Worker("custom")
    recorder(w, "stream::list(remote)", returns=["from", "custom"])

    async def broken(data: Any) -> Any:
        raise InvocationError("DOWN", "backend unavailable")

    w.register_function("stream::get(remote)", broken)
    await connect(w)
    ws = await subscriber(http, engine)
    await join(ws, "group", stream="remote")
    assert await next_event(ws) == pushed({"type": "sync", "data": ["from", "custom"]}, stream="remote")

    await join(ws, "item", stream="remote", group="g2", item_id="i")  # subscribed, but no sync
    await w.trigger("stream::set", {**item("i", group="g2", stream="remote"), "data": 1})
    assert await next_event(ws) == pushed({"type": "create", "data": 1}, stream="remote", group="g2", item_id="i")


async def test_a_value_json_cannot_carry_is_not_pushed_and_the_socket_goes_on(
    engine: Engine, http: aiohttp.ClientSession
) -> None:
    ws = await subscriber(http, engine)
    await join(ws, "s1")
    await next_event(ws)
    async with Worker("local").attach(engine) as w:  # in-process: payloads are not encoded on the way in
        await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "type": "t", "data": {1, 2}})
        await w.trigger("stream::set", {**item("b"), "data": [1, 2]})
    assert await next_event(ws) == pushed({"type": "create", "data": [1, 2]}, item_id="b")


# ---- join and leave -----------------------------------------------------------------------------


async def join_leave_worker(connect: Connect) -> tuple[Worker, list[Any], list[Any]]:
    """A connected worker bound to `stream:join` and `stream:leave`, with what each of them receives."""
    w = Worker("presence")
    joins = recorder(w, "on_join")
    leaves = recorder(w, "on_leave")
    w.register_trigger("stream:join", "on_join", {})
    w.register_trigger("stream:leave", "on_leave", {})
    await connect(w)
    await live(w)
    return w, joins, leaves


async def test_join_and_leave_triggers_and_leaving_stops_pushes(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    w, joins, leaves = await join_leave_worker(connect)

    ws = await subscriber(http, engine)
    await join(ws, "s1")
    await join(ws, "s2", group="g2", item_id="m1")
    await next_event(ws)
    await next_event(ws)
    # Join handlers finish before the subscription starts, so both are in by the second sync.
    assert joins == [presence("s1"), presence("s2", group="g2", item_id="m1")]

    await leave(ws, "s1")
    await eventually(lambda: len(leaves) == 1)
    assert leaves == [presence("s1")]
    await w.trigger("stream::set", {**item("x"), "data": "g1 is no longer watched"})
    await w.trigger("stream::set", {**item("m1", group="g2"), "data": 2})
    assert await next_event(ws) == pushed({"type": "create", "data": 2}, group="g2", item_id="m1")

    await ws.close()  # the subscriptions still open leave with the socket
    await eventually(lambda: len(leaves) == 2)
    assert leaves[1] == presence("s2", group="g2", item_id="m1")
    assert len(joins) == 2


async def test_a_join_refused_by_a_trigger_gets_unauthorized_and_no_pushes(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    w = Worker("gate")
    leaves = recorder(w, "on_leave")

    async def gate(data: Any) -> Any:
        if data["stream_name"] == "broken":
            raise InvocationError("BUG", "the gate failed")
        # Only a literal `true` refuses.
        return {"unauthorized": True} if data["stream_name"] == "secret" else {"unauthorized": "yes"}

    w.register_function("gate", gate)
    w.register_trigger("stream:join", "gate", {})
    w.register_trigger("stream:leave", "on_leave", {})
    await connect(w)
    await live(w)

    ws = await subscriber(http, engine)
    await join(ws, "s1", stream="secret", item_id="k")
    assert await next_event(ws) == pushed({"type": "unauthorized"}, stream="secret", item_id="k")
    await join(ws, "s2", stream="broken")  # a failing join handler refuses too
    assert await next_event(ws) == pushed({"type": "unauthorized"}, stream="broken")
    await join(ws, "s3")
    assert await next_event(ws) == pushed({"type": "sync", "data": []})

    await w.trigger("stream::set", {**item("k", stream="secret"), "data": "hidden"})
    await w.trigger("stream::set", {**item("k", stream="broken"), "data": "hidden"})
    await w.trigger("stream::set", {**item("k"), "data": "open"})
    assert await next_event(ws) == pushed({"type": "create", "data": "open"}, item_id="k")
    await leave(ws, "s1", stream="secret", item_id="k")  # never joined: no leave event
    await leave(ws, "s3")
    await eventually(lambda: len(leaves) >= 1)
    assert leaves == [presence("s3")]


async def test_auth_function_grants_the_context_or_refuses_the_upgrade(http: aiohttp.ClientSession) -> None:
    requests: list[Any] = []

    async def auth(data: Any) -> Any:
        requests.append(data)
        token = data["query_params"].get("token")
        if token == ["anonymous"]:
            return None
        if token == ["odd"]:
            return "yes"
        if token != ["good"]:
            raise InvocationError("DENIED", "bad token")
        return {"context": {"user": data["headers"]["x-user"]}}

    w = Worker("auth")
    w.register_function("auth::stream", auth)
    joins = recorder(w, "on_join")
    w.register_trigger("stream:join", "on_join", {})
    async with stream_engine(auth_function="auth::stream") as engine:
        await w.open(f"ws://127.0.0.1:{engine.ports['ws']}", wait=5)
        try:
            await live(w)
            ws = await subscriber(http, engine, "/stream/chat/g1/?token=good", headers={"X-User": "ann"})
            await join(ws, "s1")
            await next_event(ws)
            assert joins == [presence("s1", context={"user": "ann"})]
            request = requests[0]
            assert sorted(request) == ["addr", "headers", "path", "query_params"]
            assert (request["path"], request["query_params"]) == ("/stream/chat/g1/", {"token": ["good"]})
            assert request["headers"]["x-user"] == "ann"
            assert request["headers"]["upgrade"] == "websocket"
            host, port = ws.get_extra_info("sockname")[:2]
            assert request["addr"] == f"{host}:{port}"

            for token, status in (("bad", 401), ("odd", 401)):
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await subscriber(http, engine, f"/?token={token}")
                assert caught.value.status == status

            anonymous = await subscriber(http, engine, "/?token=anonymous")
            await join(anonymous, "s2")
            await next_event(anonymous)
            assert joins[1] == presence("s2", context=None)
        finally:
            await w.close()


# ---- bad input and configuration ----------------------------------------------------------------


async def test_bad_frames_change_nothing_and_the_socket_keeps_working(
    engine: Engine, connect: Connect, http: aiohttp.ClientSession
) -> None:
    _, joins, leaves = await join_leave_worker(connect)

    ws = await subscriber(http, engine)
    for text in ("not json", "", "   ", "[1, 2]", "{"):
        await ws.send_str(text)
    await ws.send_bytes(b"\xff\x00")
    for frame in (
        {"type": "subscribe", "data": subscription("s0")},
        {"type": "join"},
        {"type": "join", "data": {"streamName": "chat", "groupId": "g1"}},
        {"type": "join", "data": {**subscription("s0"), "subscriptionId": 7}},
        {"type": "join", "data": {**subscription("s0"), "id": ["m1"]}},
        {"type": "leave", "data": subscription("never joined")},
    ):
        await ws.send_json(frame)
    await ws.send_bytes(json.dumps({"type": "join", "data": subscription("s1")}).encode())  # binary JSON is read

    assert await next_event(ws) == pushed({"type": "sync", "data": []})
    assert joins == [presence("s1")]
    await leave(ws, "s1")
    await eventually(lambda: len(leaves) >= 1)
    assert leaves == [presence("s1")]


async def test_paths(engine: Engine, http: aiohttp.ClientSession) -> None:
    for path in ("/", "/stream/chat/g1/", "/stream/chat/g1"):
        ws = await subscriber(http, engine, path)
        await join(ws, "s1")
        assert (await next_event(ws))["event"] == {"type": "sync", "data": []}
        await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await subscriber(http, engine, "/elsewhere")
    assert caught.value.status == 404


async def test_stopping_the_engine_closes_subscribers(http: aiohttp.ClientSession) -> None:
    async with stream_engine() as engine:
        ws = await subscriber(http, engine)
        await join(ws, "s1")
        await next_event(ws)
        closing = asyncio.ensure_future(ws.receive(timeout=5))  # reading lets the client answer the close
    frame = await closing
    assert (frame.type, frame.data) == (WSMsgType.CLOSE, 1001)


async def test_socket_is_off_without_a_port() -> None:
    async with Engine(engine_config()) as engine, Worker("w").attach(engine) as w:
        assert "stream" not in engine.ports
        await w.trigger("stream::set", {**item("a"), "data": 1})  # the functions work without the socket
        assert await w.trigger("stream::get", item("a")) == 1


async def test_config_is_checked() -> None:
    async with stream_engine(host="127.0.0.1", adapter={"name": "kv"}) as engine:  # iii's `adapter` is accepted
        assert engine.ports["stream"] > 0
    with pytest.raises(ConfigError, match="worker iii-stream: prot: Extra inputs are not permitted"):
        await Engine(engine_config(iii_stream={"prot": 3112})).start()
    with pytest.raises(ConfigError, match="worker iii-stream: port: Input should be less than or equal to 65535"):
        await Engine(engine_config(iii_stream={"port": 70000})).start()


async def test_a_web_page_from_another_origin_is_refused(engine: Engine, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await subscriber(http, engine, headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    own = f"http://127.0.0.1:{engine.ports['stream']}"
    ws = await subscriber(http, engine, headers={"Origin": own})  # the socket's own origin
    await ws.close()


async def test_a_rebound_host_name_is_refused_without_an_auth_function(
    engine: Engine, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await subscriber(http, engine, headers={"Host": f"evil.example:{engine.ports['stream']}"})
    assert refused.value.status == 403


async def test_allowed_origins_and_hosts_are_let_in(http: aiohttp.ClientSession) -> None:
    async with stream_engine(allowed_origins=["https://app.example"], allowed_hosts=["teamster.internal"]) as running:
        port = running.ports["stream"]
        headers = {"Origin": "https://app.example", "Host": f"teamster.internal:{port}"}
        ws = await subscriber(http, running, headers=headers)
        await join(ws, "s1")
        assert (await next_message(ws))["event"]["type"] == "sync"
        await ws.close()
