"""The `hook-fanout` worker against a real engine, with subscriber workers bound by `durable:subscriber`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.engine.registry import Invocation
from teamster.harness.hooks import BEFORE_FUNCTION_CALL, REPLY_STREAM, create_worker
from teamster.sdk import TriggerInfo, Worker
from tests.conftest import Connect, engine_config, eventually, expect_bad_input

Respond = Callable[[Worker, dict[str, Any]], Awaitable[Any]]  # (subscriber, envelope) -> its reply


def replying(reply: Any) -> Respond:
    async def respond(worker: Worker, envelope: dict[str, Any]) -> Any:
        return reply

    return respond


def replying_after(first: str, reply: Any) -> Respond:
    """Reply once subscriber `first` has, so the order replies arrive in is known."""

    async def respond(worker: Worker, envelope: dict[str, Any]) -> Any:
        item = {"stream_name": REPLY_STREAM, "group_id": envelope["event_id"], "item_id": first}

        async def first_replied() -> bool:
            return await worker.trigger("stream::get", item) is not None

        await eventually(first_replied)
        await asyncio.sleep(0.05)  # the stream trigger delivers `first`'s reply in the background
        return reply

    return respond


def subscriber(name: str, topic: str, respond: Respond | None) -> tuple[Worker, list[Any]]:
    """A worker bound to `topic` that replies through the reply stream (or stays silent); and what it received."""
    worker = Worker(name)
    received: list[Any] = []

    async def on_hook(envelope: dict[str, Any]) -> None:
        received.append(envelope)
        if respond is not None:
            reply = {
                "stream_name": envelope["reply_stream"],
                "group_id": envelope["event_id"],
                "item_id": name,
                "data": await respond(worker, envelope),
            }
            await worker.trigger("stream::set", reply)

    worker.register_function(f"{name}::on_hook", on_hook)
    worker.register_trigger("durable:subscriber", f"{name}::on_hook", {"topic": topic})
    return worker, received


async def bound(client: Worker, *function_ids: str) -> None:
    """Wait until each function has an active trigger binding (the presence check caches its answers)."""

    async def active() -> bool:
        listing = await client.trigger("engine::registered-triggers::list", {})
        live = {t["function_id"] for t in listing["registered_triggers"] if t["active"]}
        return set(function_ids) <= live

    await eventually(active)


@pytest.fixture
async def fanout(connect: Connect) -> Worker:
    """The hook-fanout worker over WebSocket; tests call through it."""
    worker = await connect(create_worker())
    await bound(worker, "hook-fanout::reply_handler")
    return worker


async def subscribe(connect: Connect, fanout: Worker, *subscribers: tuple[Worker, list[Any]]) -> None:
    for worker, _ in subscribers:
        await connect(worker)
    await bound(fanout, *(f"{worker.name}::on_hook" for worker, _ in subscribers))


def spy(engine: Engine, function_id: str) -> list[Any]:
    """Record every call of an engine built-in, still running it."""
    entry = engine.functions.get("default", function_id)
    assert entry is not None
    calls: list[Any] = []
    run = entry.execute

    async def recorded(inv: Invocation) -> Any:
        calls.append(inv.data)
        return await run(inv)

    entry.execute = recorded
    return calls


# ---- merge rules -----------------------------------------------------------------------------


async def test_first_block_wins(connect: Connect, fanout: Worker) -> None:
    deny = {"block": True, "reason": "rm -rf is not allowed", "denial": {"rule_id": "no-rm"}}
    a = subscriber("allow", "t.block", replying({"block": False}))
    b = subscriber("deny", "t.block", replying(deny))
    await subscribe(connect, fanout, a, b)

    payload = {"function_call": {"id": "c1", "function_id": "shell::run"}}
    reply = await fanout.trigger(
        "hook-fanout::publish_collect",
        {
            "topic": "t.block",
            "payload": payload,
            "merge_rule": "first_block_wins",
            "expected_replies": 2,
            "quiescence_ms": 0,
        },
    )
    assert reply["merged"] == deny
    assert reply["resolved_by"] == "expected"
    assert sorted(reply["replies"], key=str) == sorted([{"block": False}, deny], key=str)
    assert (reply["publish"], reply["publish_failed"]) == ({"ok": True, "error": None}, False)
    envelope = {"event_id": reply["event_id"], "reply_stream": "agent::hook_reply", "payload": payload}
    assert a[1] == b[1] == [envelope]
    # The replies were only transport: they are gone from the stream once the call returned.
    group = {"stream_name": REPLY_STREAM, "group_id": reply["event_id"]}

    async def cleaned_up() -> bool:
        return not await fanout.trigger("stream::list", group)

    await eventually(cleaned_up)


async def test_field_merge(connect: Connect, fanout: Worker) -> None:
    first = {"details": {"nested": {"y": 2}, "shared": "first"}, "terminate": False}
    second = {"content": [{"type": "text", "text": "rewritten"}], "details": {"shared": "second"}, "terminate": True}
    await subscribe(
        connect,
        fanout,
        subscriber("first", "t.merge", replying(first)),
        subscriber("second", "t.merge", replying_after("first", second)),
    )
    payload = {"content": [{"type": "text", "text": "original"}], "details": {"a": 1, "nested": {"x": 1}}, "keep": 1}
    reply = await fanout.trigger(
        "hook-fanout::publish_collect",
        {
            "topic": "t.merge",
            "payload": payload,
            "merge_rule": "field_merge",
            "expected_replies": 2,
            "quiescence_ms": 0,
        },
    )
    assert reply["replies"] == [first, second]
    assert reply["merged"] == {
        "content": [{"type": "text", "text": "rewritten"}],
        "details": {"a": 1, "nested": {"x": 1, "y": 2}, "shared": "second"},
        "terminate": True,
        "keep": 1,
    }


async def test_pipeline_last_wins(connect: Connect, fanout: Worker) -> None:
    await subscribe(
        connect,
        fanout,
        subscriber("first", "t.pipe", replying({"messages": [{"role": "user", "content": "first"}]})),
        subscriber("second", "t.pipe", replying_after("first", [{"role": "user", "content": "second"}])),
        subscriber("observer", "t.observe", replying({"seen": True})),
    )
    original = [{"role": "user", "content": "original"}]
    request = {"payload": original, "merge_rule": "pipeline_last_wins", "expected_replies": 2, "quiescence_ms": 0}
    reply = await fanout.trigger("hook-fanout::publish_collect", {**request, "topic": "t.pipe"})
    assert reply["merged"] == [{"role": "user", "content": "second"}]
    # A reply that is no replacement leaves the original in place.
    reply = await fanout.trigger(
        "hook-fanout::publish_collect", {**request, "topic": "t.observe", "expected_replies": 1}
    )
    assert (reply["replies"], reply["merged"]) == ([{"seen": True}], original)


# ---- resolution --------------------------------------------------------------------------------


async def test_quiescence_resolves_before_the_deadline(connect: Connect, fanout: Worker) -> None:
    await subscribe(connect, fanout, subscriber("only", "t.quiet", replying({"block": False})))
    started = time.monotonic()
    reply = await fanout.trigger(
        "hook-fanout::publish_collect",
        {"topic": "t.quiet", "merge_rule": "first_block_wins", "timeout_ms": 10_000, "quiescence_ms": 200},
    )
    assert (reply["resolved_by"], reply["replies"]) == ("quiescence", [{"block": False}])
    assert 0.2 <= time.monotonic() - started < 5


async def test_deadline_with_and_without_replies(connect: Connect, fanout: Worker) -> None:
    silent = subscriber("silent", "t.slow", None)
    await subscribe(connect, fanout, silent, subscriber("talker", "t.mixed", replying({"details": {"n": 1}})))
    await subscribe(connect, fanout, subscriber("mute", "t.mixed", None))

    started = time.monotonic()
    reply = await fanout.trigger(
        "hook-fanout::publish_collect",
        {"topic": "t.slow", "payload": {"keep": True}, "merge_rule": "field_merge", "timeout_ms": 300},
    )
    assert time.monotonic() - started >= 0.3
    assert (reply["resolved_by"], reply["replies"], reply["merged"]) == ("deadline_no_replies", [], {"keep": True})
    assert len(silent[1]) == 1  # it did receive the event

    reply = await fanout.trigger(
        "hook-fanout::publish_collect",
        {"topic": "t.mixed", "merge_rule": "field_merge", "timeout_ms": 1000, "quiescence_ms": 0},
    )
    assert (reply["resolved_by"], reply["merged"]) == ("deadline", {"details": {"n": 1}})


async def test_timeout_has_a_floor(connect: Connect, fanout: Worker) -> None:
    await subscribe(connect, fanout, subscriber("silent", "t.floor", None))
    started = time.monotonic()
    reply = await fanout.trigger(
        "hook-fanout::publish_collect", {"topic": "t.floor", "merge_rule": "first_block_wins", "timeout_ms": 0}
    )
    assert reply["resolved_by"] == "deadline_no_replies"
    assert time.monotonic() - started >= 0.05


async def test_no_subscribers_short_circuits_without_publishing(
    engine: Engine, connect: Connect, fanout: Worker
) -> None:
    await subscribe(connect, fanout, subscriber("elsewhere", "t.other", replying({"block": True})))
    published = spy(engine, "iii::durable::publish")
    listed = spy(engine, "engine::registered-triggers::list")
    request = {"topic": "t.nobody", "payload": {"x": 1}, "merge_rule": "field_merge", "timeout_ms": 10_000}

    started = time.monotonic()
    reply = await fanout.trigger("hook-fanout::publish_collect", request)
    assert time.monotonic() - started < 1
    assert {k: reply[k] for k in ("replies", "merged", "resolved_by")} == {
        "replies": [],
        "merged": None,
        "resolved_by": "no_subscribers",
    }
    assert await fanout.trigger("hook-fanout::before", {"topic": "t.nobody", "payload": {}}) == {"block": False}
    assert published == []
    assert len(listed) == 1  # the second call was answered from the presence cache
    topics = await fanout.trigger("engine::queue::list_topics", {})
    assert not [t for t in topics["topics"] if "t.nobody" in t["name"]]


async def test_a_subscriber_gone_since_the_presence_check_ends_the_wait(connect: Connect, fanout: Worker) -> None:
    worker, _ = leaving = subscriber("leaving", "t.gone", replying({"block": False}))
    await subscribe(connect, fanout, leaving)
    request = {"topic": "t.gone", "merge_rule": "first_block_wins", "timeout_ms": 10_000}
    assert (await fanout.trigger("hook-fanout::publish_collect", request))["resolved_by"] == "quiescence"
    await worker.close()

    async def unbound() -> bool:
        listing = await fanout.trigger("engine::registered-triggers::list", {})
        return all(t["function_id"] != "leaving::on_hook" for t in listing["registered_triggers"])

    await eventually(unbound)
    started = time.monotonic()
    reply = await fanout.trigger("hook-fanout::publish_collect", request)  # the cache still says "subscribed"
    assert (reply["resolved_by"], reply["merged"]) == ("no_subscribers", None)
    assert time.monotonic() - started < 1


# ---- before-hooks ------------------------------------------------------------------------------


async def test_before_hook(connect: Connect, fanout: Worker) -> None:
    pending = {"block": True, "status": "pending", "reason": "needs approval"}
    await subscribe(
        connect,
        fanout,
        subscriber("gate", BEFORE_FUNCTION_CALL, replying(pending)),
        subscriber("allow", "t.allow", replying({"block": False})),
        subscriber("silent", "t.silent", None),
    )
    call = {"session_id": "s1", "function_call": {"id": "c1", "function_id": "fs::write"}, "approval_required": True}
    assert await fanout.trigger("hook-fanout::before", {"topic": BEFORE_FUNCTION_CALL, "payload": call}) == pending
    assert await fanout.trigger("hook-fanout::before", {"topic": "t.allow", "payload": call}) == {"block": False}
    silent = await fanout.trigger("hook-fanout::before", {"topic": "t.silent", "payload": call, "timeout_ms": 200})
    assert silent["block"] is True
    assert silent["reason"].startswith("hook_unavailable: ")


class _AnyBinding:
    """Provides `durable:subscriber` on an engine without iii-queue, so the binding looks live."""

    async def register_trigger(self, trigger: TriggerInfo) -> None:
        pass

    async def unregister_trigger(self, trigger: TriggerInfo) -> None:
        pass


async def test_before_hook_fails_closed_when_publishing_fails() -> None:
    # An engine without iii-queue has no iii::durable::publish. A worker provides the durable:subscriber
    # trigger type, so a subscriber's binding is active: the presence check sees a subscriber, the
    # publish call then fails with function_not_found, and the before-hook must deny.
    config = engine_config()
    config.workers = [w for w in config.workers if w.name != "iii-queue"]
    async with Engine(config) as engine, AsyncExitStack() as stack:
        url = f"ws://127.0.0.1:{engine.ports['ws']}"
        shim = Worker("shim")
        shim.register_trigger_type("durable:subscriber", _AnyBinding())
        gate, _ = subscriber("gate", BEFORE_FUNCTION_CALL, replying({"block": False}))
        fanout = create_worker()
        for worker in (shim, gate, fanout):
            await stack.enter_async_context(worker.connect(url, wait=5))
        await bound(fanout, "gate::on_hook", "hook-fanout::reply_handler")

        verdict = await fanout.trigger("hook-fanout::before", {"topic": BEFORE_FUNCTION_CALL, "payload": {}})
        assert verdict["block"] is True
        assert verdict["reason"].startswith("hook_unavailable: function_not_found")

        reply = await fanout.trigger(
            "hook-fanout::publish_collect", {"topic": BEFORE_FUNCTION_CALL, "merge_rule": "first_block_wins"}
        )
        assert (reply["publish"]["ok"], reply["publish_failed"], reply["resolved_by"]) == (
            False,
            True,
            "publish_failed",
        )
        assert reply["publish"]["error"].startswith("function_not_found")


# ---- bad input and in-process ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("hook-fanout::publish_collect", {"merge_rule": "field_merge"}, "topic"),
        ("hook-fanout::publish_collect", {"topic": "t"}, "merge_rule"),
        ("hook-fanout::publish_collect", {"topic": "t", "merge_rule": "majority"}, "merge_rule"),
        ("hook-fanout::publish_collect", {"topic": "t", "merge_rule": "field_merge", "timeout_ms": -1}, "timeout_ms"),
        (
            "hook-fanout::publish_collect",
            {"topic": "t", "merge_rule": "field_merge", "expected_replies": 0},
            "expected_replies",
        ),
        ("hook-fanout::before", {"topic": ""}, "topic"),
    ],
)
async def test_bad_input_is_a_deserialization_error(fanout: Worker, function_id: str, payload: Any, field: str) -> None:
    await expect_bad_input(fanout, function_id, payload, field)


async def test_in_process(engine: Engine) -> None:
    fanout = create_worker()
    gate, received = subscriber("gate", "t.local", replying({"block": True, "reason": "local"}))
    async with fanout.attach(engine), gate.attach(engine):
        await bound(fanout, "gate::on_hook", "hook-fanout::reply_handler")
        reply = await fanout.trigger(
            "hook-fanout::publish_collect",
            {"topic": "t.local", "payload": 1, "merge_rule": "first_block_wins", "expected_replies": 1},
        )
        assert (reply["merged"], reply["resolved_by"]) == ({"block": True, "reason": "local"}, "expected")
        assert received[0]["payload"] == 1
