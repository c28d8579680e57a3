"""The engine's wire behaviour, frame by frame (iii protocol §1–§3), over a real socket."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from teamster.engine.engine import Engine
from teamster.sdk import InvocationError, Worker
from tests.conftest import engine_config, eventually
from tests.raw import RawPeer


async def test_first_frame_is_workerregistered_with_the_engines_features(ws_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        frame = await ws.receive_json(timeout=5)
    assert set(frame) == {"type", "worker_id", "reattach_token", "features"}
    assert frame["type"] == "workerregistered"
    assert frame["features"] == ["observe.v1", "local-dispatch.v1"]  # iii-observe runs by default


async def test_bad_frames_get_no_reply_and_change_nothing(ws_url: str, engine: Engine) -> None:
    async with RawPeer(ws_url) as peer:
        await peer.name("raw")
        await peer.send_raw("{not json")
        await peer.send_raw("[1, 2, 3]")
        await peer.send_raw("")
        await peer.send({"type": "no-such-type", "id": "x"})
        await peer.send({"type": "registerfunction"})  # missing id
        await peer.send({"type": "registerfunction", "id": 42})  # id of the wrong type
        await peer.send({"type": "invokefunction"})  # missing function_id, and no invocation id to answer
        await peer.nothing()
        assert [e.id for e in engine.functions.all() if e.owner is not None] == []
        # …and the connection still routes calls.
        reply = await peer.call("engine::health::check", {})
        assert reply["result"]["status"] == "healthy"


def nested(depth: int) -> str:
    """JSON text of arrays nested `depth` deep."""
    return "[" * depth + "]" * depth


TOO_DEEP = nested(1100)  # past the 1,024 levels the engine decodes


@pytest.mark.parametrize(
    "frame",
    [
        # the teamster SDK's field order, and the official iii-sdk's (data before the invocation id),
        # with a decoy invocation id nested in the payload
        '{"type":"invokefunction","function_id":"state::get","invocation_id":"deep-1","data":DEEP}',
        '{"type":"invokefunction","function_id":"state::get","data":{"invocation_id":"decoy","x":DEEP},'
        '"invocation_id":"deep-1"}',
    ],
    ids=["id-first", "data-first-with-decoy"],
)
async def test_a_call_too_deep_to_decode_is_answered_and_the_engine_serves_on(ws_url: str, frame: str) -> None:
    async with RawPeer(ws_url) as peer, RawPeer(ws_url) as other:
        await peer.send_raw(frame.replace("DEEP", TOO_DEEP))
        reply = await peer.recv_type("invocationresult")
        assert reply["invocation_id"] == "deep-1"
        assert reply["function_id"] == "state::get"
        assert reply["error"]["code"] == "payload_too_deep"
        assert "1024 levels" in reply["error"]["message"]
        assert (await other.call("engine::health::check", {}))["result"]["status"] == "healthy"
        assert (await peer.call("engine::health::check", {}))["result"]["status"] == "healthy"


async def test_an_undecodable_call_with_an_invocation_id_is_answered(ws_url: str) -> None:
    async with RawPeer(ws_url) as peer:
        await peer.send({"type": "invokefunction", "invocation_id": "i"})  # missing function_id
        reply = await peer.recv_type("invocationresult")
    assert reply["invocation_id"] == "i"
    assert reply["error"]["code"] == "deserialization_error"
    assert "function_id" in reply["error"]["message"]


async def test_a_result_too_deep_to_decode_fails_the_call_instead_of_leaving_it_waiting(
    ws_url: str, engine: Engine, connect: Any
) -> None:
    async with RawPeer(ws_url) as executor:
        await executor.name("exec")
        await executor.send({"type": "registerfunction", "id": "raw::deep"})
        caller = await connect(Worker("caller"))
        await eventually(lambda: engine.functions.get("default", "raw::deep") is not None)
        call = asyncio.ensure_future(caller.trigger("raw::deep", {}, timeout=10))
        invocation = await executor.recv_type("invokefunction")
        await executor.send_raw(
            f'{{"type":"invocationresult","invocation_id":"{invocation["invocation_id"]}","result":{TOO_DEEP}}}'
        )
        with pytest.raises(InvocationError) as caught:
            await call
    assert caught.value.code == "payload_too_deep"
    assert "could not decode the result" in caught.value.message


async def test_unknown_function(ws_url: str) -> None:
    async with RawPeer(ws_url) as peer:
        reply = await peer.call("nobody::home", {}, invocation_id="abc")
    assert reply == {
        "type": "invocationresult",
        "invocation_id": "abc",
        "function_id": "nobody::home",
        "error": {"code": "function_not_found", "message": "Function nobody::home not found in namespace default"},
    }


async def test_blank_namespace_is_refused(ws_url: str) -> None:
    async with RawPeer(ws_url) as peer:
        reply = await peer.call("engine::health::check", {}, namespace="  ")
        assert reply["error"]["code"] == "INVALID_NAMESPACE"
        await peer.send(
            {
                "type": "registertrigger",
                "id": "t1",
                "trigger_type": "state",
                "function_id": "f",
                "config": {},
                "namespace": "",
            }
        )
        refused = await peer.recv_type("triggerregistrationresult")
    assert refused["id"] == "t1"
    assert refused["error"]["code"] == "INVALID_NAMESPACE"


async def test_call_reaches_executor_with_caller_id_and_same_invocation_id(ws_url: str) -> None:
    async with RawPeer(ws_url) as executor, RawPeer(ws_url) as caller:
        await executor.name("exec")
        await executor.send({"type": "registerfunction", "id": "raw::echo"})
        await asyncio.sleep(0.1)
        await caller.send(
            {
                "type": "invokefunction",
                "function_id": "raw::echo",
                "invocation_id": "inv-7",
                "data": {"x": 1},
                "metadata": {"tenant": "acme"},
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            }
        )
        call = await executor.recv_type("invokefunction")
        assert call == {
            "type": "invokefunction",
            "invocation_id": "inv-7",
            "function_id": "raw::echo",
            "data": {"x": 1, "_caller_worker_id": caller.worker_id},
            "metadata": {"tenant": "acme"},
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        await executor.send(
            {"type": "invocationresult", "invocation_id": "inv-7", "function_id": "raw::echo", "result": {"ok": True}}
        )
        reply = await caller.recv_type("invocationresult")
    assert reply == {
        "type": "invocationresult",
        "invocation_id": "inv-7",
        "function_id": "raw::echo",
        "result": {"ok": True},
    }


async def test_void_gets_no_reply_but_runs(ws_url: str, connect: Any) -> None:
    hits: list[Any] = []
    worker = Worker("void-target")

    @worker.function("void::hit")
    async def hit(data: Any) -> str:
        hits.append(data)
        return "ignored"

    await connect(worker)
    async with RawPeer(ws_url) as peer:
        await peer.send(
            {"type": "invokefunction", "function_id": "void::hit", "data": {"n": 1}, "action": {"type": "void"}}
        )
        await eventually(lambda: len(hits) == 1)
        await peer.nothing()


async def test_executor_vanishing_mid_call_stops_the_invocation(ws_url: str) -> None:
    async with RawPeer(ws_url) as caller:
        executor = RawPeer(ws_url)
        await executor.__aenter__()
        await executor.name("vanisher")
        await executor.send({"type": "registerfunction", "id": "raw::slow"})
        await asyncio.sleep(0.1)
        await caller.send({"type": "invokefunction", "function_id": "raw::slow", "invocation_id": "v1", "data": {}})
        await executor.recv_type("invokefunction")
        await executor.__aexit__(None, None, None)
        reply = await caller.recv_type("invocationresult")
        assert reply["error"] == {"code": "invocation_stopped", "message": "Invocation stopped"}
        # The function went with its owner.
        again = await caller.call("raw::slow", {}, invocation_id="v2")
        assert again["error"]["code"] == "function_not_found"


async def test_second_registrant_gets_conflict_and_first_keeps_the_function(ws_url: str) -> None:
    async with RawPeer(ws_url) as first, RawPeer(ws_url) as second:
        await first.name("first")
        await second.name("second")
        await first.send({"type": "registerfunction", "id": "dup::fn"})
        await asyncio.sleep(0.1)
        await second.send({"type": "registerfunction", "id": "dup::fn"})
        rejected = await second.recv_type("registrationrejected")
        assert rejected == {
            "type": "registrationrejected",
            "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default",
            "function_id": "dup::fn",
            "owner_worker_id": first.worker_id,
        }
        await second.send({"type": "invokefunction", "function_id": "dup::fn", "invocation_id": "d1", "data": {}})
        assert (await first.recv_type("invokefunction"))["invocation_id"] == "d1"


async def test_takeover_after_owner_disconnects(ws_url: str, engine: Engine) -> None:
    async with RawPeer(ws_url) as second:
        async with RawPeer(ws_url) as first:
            await first.name("first")
            await first.send({"type": "registerfunction", "id": "lease::fn"})
            await eventually(lambda: engine.functions.get("default", "lease::fn") is not None)
        await second.name("second")
        await second.send({"type": "registerfunction", "id": "lease::fn"})
        await eventually(
            lambda: (
                (e := engine.functions.get("default", "lease::fn")) is not None
                and e.owner is not None
                and e.owner.name == "second"
            )
        )
        await second.nothing(0.2)


async def test_registrations_wait_for_the_namespace(ws_url: str, engine: Engine) -> None:
    async with RawPeer(ws_url) as peer:
        await peer.send({"type": "registerfunction", "id": "orders::create"})
        await asyncio.sleep(0.1)
        assert engine.functions.namespaces_of("orders::create") == []  # held until the worker names itself
        await peer.name("orders-worker", namespace="orders")
        await eventually(lambda: engine.functions.namespaces_of("orders::create") == ["orders"])


async def test_registrations_fall_back_to_default_after_the_grace(ws_url: str, engine: Engine) -> None:
    async with RawPeer(ws_url) as peer:
        await peer.send({"type": "registerfunction", "id": "anon::fn"})
        await eventually(lambda: engine.functions.namespaces_of("anon::fn") == ["default"], timeout=3)


async def test_worker_name_conflict_is_fatal(ws_url: str) -> None:
    async with RawPeer(ws_url) as first, RawPeer(ws_url) as second:
        await first.name("unique")
        await asyncio.sleep(0.05)
        await second.name("unique")
        rejected = await second.recv_type("registrationrejected")
        assert rejected["code"] == "WORKER_NAMESPACE_CONFLICT"
        assert rejected["worker_name"] == "unique"
        assert rejected["owner_worker_id"] == first.worker_id
        assert second.ws is not None
        closing = await second.ws.receive(5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_reattach_evicts_the_old_connection_first(ws_url: str, engine: Engine) -> None:
    old = RawPeer(ws_url)
    await old.__aenter__()
    await old.name("phoenix")
    await old.send({"type": "registerfunction", "id": "phoenix::fn"})
    await eventually(lambda: engine.functions.get("default", "phoenix::fn") is not None)
    async with RawPeer(ws_url) as new:
        await new.send({"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": "wrong"})
        await asyncio.sleep(0.1)
        assert old.worker_id in engine.connections  # a wrong token does nothing
        await new.send({"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": old.reattach_token})
        await new.name("phoenix")
        await new.send({"type": "registerfunction", "id": "phoenix::fn"})
        await eventually(
            lambda: (
                (e := engine.functions.get("default", "phoenix::fn")) is not None
                and e.owner is not None
                and e.owner.worker_id == new.worker_id
            )
        )
        assert old.worker_id not in engine.connections
        await new.nothing(0.2)  # no conflict: the old owner was cleaned up before the replay
    await old.__aexit__(None, None, None)


async def test_json_ping_gets_pong(ws_url: str) -> None:
    async with RawPeer(ws_url) as peer:
        await peer.send({"type": "ping"})
        assert await peer.recv() == {"type": "pong"}


async def test_binary_frames_carry_messages_and_telemetry(ws_url: str, engine: Engine) -> None:
    async with RawPeer(ws_url) as peer:
        await peer.send(
            {"type": "invokefunction", "function_id": "engine::health::check", "invocation_id": "b1", "data": {}},
            binary=True,
        )
        assert (await peer.recv_type("invocationresult"))["result"]["status"] == "healthy"
        assert peer.ws is not None
        await peer.ws.send_bytes(b'OTLP{"resourceSpans":[]}')
        await eventually(lambda: engine.telemetry_frames.get("OTLP") == 1)
        await peer.nothing(0.1)


async def test_trigger_types_from_workers_park_and_replay_bindings(ws_url: str) -> None:
    async with RawPeer(ws_url) as user:
        await user.name("user")
        await user.send(
            {
                "type": "registertrigger",
                "id": "hook-1",
                "trigger_type": "webhook",
                "function_id": "user::on_hook",
                "config": {"url": "/x"},
            }
        )
        await user.nothing(0.1)  # parked: no provider yet, and no error
        async with RawPeer(ws_url) as provider:
            await provider.name("provider")
            await provider.send({"type": "registertriggertype", "id": "webhook", "description": "Incoming webhook"})
            got = await provider.recv_type("registertrigger")
            assert got == {
                "type": "registertrigger",
                "id": "hook-1",
                "trigger_type": "webhook",
                "function_id": "user::on_hook",
                "config": {"url": "/x"},
            }
            # A provider refusing the binding: the registrant hears about it.
            await provider.send(
                {
                    "type": "triggerregistrationresult",
                    "id": "hook-1",
                    "trigger_type": "webhook",
                    "function_id": "user::on_hook",
                    "error": {"code": "bad", "message": "bad url"},
                }
            )
            refused = await user.recv_type("triggerregistrationresult")
            assert refused["error"]["message"] == "bad url"
        async with RawPeer(ws_url) as provider2:
            await provider2.name("provider2")
            await provider2.send({"type": "registertriggertype", "id": "webhook"})
            assert (await provider2.recv_type("registertrigger"))["id"] == "hook-1"
            await user.send({"type": "unregistertrigger", "id": "hook-1", "trigger_type": "webhook"})
            assert (await provider2.recv_type("unregistertrigger"))["id"] == "hook-1"


@pytest.fixture
async def small_engine() -> Any:
    config = engine_config(iii_worker_manager={"max_message_bytes": 64 * 1024})
    async with Engine(config) as running:
        yield running


async def test_frames_over_the_limit_close_only_that_connection(small_engine: Engine) -> None:
    url = f"ws://127.0.0.1:{small_engine.ports['ws']}"
    async with RawPeer(url) as bystander, RawPeer(url) as offender:
        await offender.send(
            {
                "type": "invokefunction",
                "function_id": "engine::health::check",
                "invocation_id": "big",
                "data": {"pad": "x" * 100_000},
            }
        )
        assert offender.ws is not None
        closing = await offender.ws.receive(5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert offender.ws.close_code == 1009
        reply = await bystander.call("engine::health::check", {})
        assert reply["result"]["status"] == "healthy"


async def test_unencodable_values_are_typed_errors(connect: Any) -> None:
    server = Worker("odd-results")

    @server.function("odd::set")
    async def returns_a_set(data: Any) -> Any:
        return {1, 2}

    await connect(server)
    caller = await connect(Worker("odd-caller"))
    with pytest.raises(InvocationError) as unencodable:
        await caller.trigger("odd::set", {})
    assert unencodable.value.code == "serialization_error"
    assert "not JSON-encodable" in unencodable.value.message


async def test_integers_past_64_bits_cross_exactly(connect: Any) -> None:
    server = Worker("big-ints")

    @server.function("big::echo")
    async def echo(data: Any) -> Any:
        return data["n"]

    await connect(server)
    caller = await connect(Worker("big-caller"))
    for n in (2**70 + 1, -(2**70) - 1, 2**64 + 3):  # none of them a float exactly
        back = await caller.trigger("big::echo", {"n": n})
        assert type(back) is int and back == n


async def test_deeply_nested_values_cross_the_wire(connect: Any) -> None:
    server = Worker("deep")

    @server.function("deep::echo")
    async def echo(data: Any) -> Any:
        return data

    await connect(server)
    caller = await connect(Worker("deep-caller"))
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(400):  # beyond orjson's 254 levels
        node["child"] = {}
        node = node["child"]
    result = await caller.trigger("deep::echo", {"tree": deep})
    depth, node = 0, result["tree"]
    while node:
        node, depth = node["child"], depth + 1
    assert depth == 400


async def test_a_large_frame_does_not_overtake_small_ones_queued_before_it(engine: Engine, ws_url: str) -> None:
    """The engine batches small frames until the end of the loop iteration; a large one sent in the
    same iteration must leave after them, not ahead."""
    async with RawPeer(ws_url) as executor:
        await executor.name("exec")
        await executor.send({"type": "registerfunction", "id": "raw::take"})
        await asyncio.sleep(0.1)
        async with Worker("caller").attach(engine) as caller:
            payloads = [{"n": "small-1"}, {"n": "x" * 100_000}, {"n": "small-2"}]
            calls = [asyncio.ensure_future(caller.trigger("raw::take", p, timeout=5)) for p in payloads]
            received = [await executor.recv_type("invokefunction") for _ in payloads]
            assert [frame["data"]["n"][:7] for frame in received] == ["small-1", "x" * 7, "small-2"]
            for frame in received:
                await executor.send(
                    {"type": "invocationresult", "invocation_id": frame["invocation_id"], "result": None}
                )
            await asyncio.gather(*calls)


async def test_two_callers_with_the_same_invocation_id_each_get_their_own_result(ws_url: str) -> None:
    async with RawPeer(ws_url) as executor, RawPeer(ws_url) as first, RawPeer(ws_url) as second:
        await executor.name("exec")
        await executor.send({"type": "registerfunction", "id": "raw::whoami"})
        await asyncio.sleep(0.1)
        for caller in (first, second):
            await caller.send(
                {"type": "invokefunction", "function_id": "raw::whoami", "invocation_id": "same", "data": {}}
            )
        calls = [await executor.recv_type("invokefunction") for _ in range(2)]
        ids = [call["invocation_id"] for call in calls]
        assert ids[0] == "same" and ids[1] != "same"  # the second is renamed toward the executor
        for call in reversed(calls):  # answered in the other order
            await executor.send(
                {
                    "type": "invocationresult",
                    "invocation_id": call["invocation_id"],
                    "result": call["data"]["_caller_worker_id"],
                }
            )
        for caller in (first, second):
            reply = await caller.recv_type("invocationresult")
            assert reply == {
                "type": "invocationresult",
                "invocation_id": "same",
                "function_id": "raw::whoami",
                "result": caller.worker_id,
            }


async def test_an_executors_error_reaches_the_caller_as_sent(ws_url: str) -> None:
    error = {"code": "card_declined", "message": "insufficient funds", "stacktrace": "Traceback ..."}
    async with RawPeer(ws_url) as executor, RawPeer(ws_url) as caller:
        await executor.name("exec")
        await executor.send({"type": "registerfunction", "id": "raw::charge"})
        await asyncio.sleep(0.1)
        await caller.send({"type": "invokefunction", "function_id": "raw::charge", "invocation_id": "c1", "data": {}})
        call = await executor.recv_type("invokefunction")
        await executor.send({"type": "invocationresult", "invocation_id": call["invocation_id"], "error": error})
        reply = await caller.recv_type("invocationresult")
        assert reply == {
            "type": "invocationresult",
            "invocation_id": "c1",
            "function_id": "raw::charge",
            "error": error,
        }


async def test_a_large_result_is_relayed_whole(ws_url: str) -> None:
    async with RawPeer(ws_url) as executor, RawPeer(ws_url) as caller:
        await executor.name("exec")
        await executor.send({"type": "registerfunction", "id": "raw::blob"})
        await asyncio.sleep(0.1)
        sizes = {"b0": 10, "b1": 300_000, "b2": 10}
        for iid in sizes:
            await caller.send({"type": "invokefunction", "function_id": "raw::blob", "invocation_id": iid, "data": {}})
        for _ in sizes:
            call = await executor.recv_type("invokefunction")
            result = "x" * sizes[call["invocation_id"]]
            await executor.send({"type": "invocationresult", "invocation_id": call["invocation_id"], "result": result})
        replies = [await caller.recv_type("invocationresult") for _ in sizes]
        assert [reply["invocation_id"] for reply in replies] == ["b0", "b1", "b2"]
        assert [reply["result"] for reply in replies] == ["x" * size for size in sizes.values()]


async def test_a_result_for_a_caller_that_left_is_dropped_and_frees_the_executor(ws_url: str) -> None:
    async with RawPeer(ws_url) as executor:
        await executor.name("exec")
        await executor.send({"type": "registerfunction", "id": "raw::late"})
        await asyncio.sleep(0.1)
        async with RawPeer(ws_url) as caller:
            await caller.send({"type": "invokefunction", "function_id": "raw::late", "invocation_id": "l1", "data": {}})
            call = await executor.recv_type("invokefunction")
        await executor.send({"type": "invocationresult", "invocation_id": call["invocation_id"], "result": "late"})
        listed = await executor.call("engine::workers::list", {})
        workers = {w["name"]: w for w in listed["result"]["workers"]}
        assert workers["exec"]["active_invocations"] == 0
        async with RawPeer(ws_url) as caller:  # and the function still serves the next caller
            await caller.send({"type": "invokefunction", "function_id": "raw::late", "invocation_id": "l2", "data": {}})
            call = await executor.recv_type("invokefunction")
            await executor.send({"type": "invocationresult", "invocation_id": call["invocation_id"], "result": "ok"})
            assert (await caller.recv_type("invocationresult"))["result"] == "ok"
