"""iii-stream over a real WebSocket: functions, custom streams and the `stream` trigger type."""

from __future__ import annotations

from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.protocol import InvocationError
from teamster.sdk import Worker
from tests.conftest import Connect, eventually, expect_bad_input, recorder


def item(item_id: str, group: str = "g1", stream: str = "chat") -> dict[str, Any]:
    return {"stream_name": stream, "group_id": group, "item_id": item_id}


async def test_functions_return_shapes(connect: Connect) -> None:
    w = await connect(Worker("client"))
    assert await w.trigger("stream::set", {**item("b"), "data": {"text": "hi"}}) == {
        "old_value": None,
        "new_value": {"text": "hi"},
    }
    assert await w.trigger("stream::set", {**item("b"), "data": {"text": "hey"}}) == {
        "old_value": {"text": "hi"},
        "new_value": {"text": "hey"},
    }
    await w.trigger("stream::set", {**item("a"), "data": 1})
    await w.trigger("stream::set", {**item("c", group="g2"), "data": 2})
    await w.trigger("stream::set", {**item("d", stream="other"), "data": 3})

    assert await w.trigger("stream::get", item("b")) == {"text": "hey"}
    assert await w.trigger("stream::get", item("missing")) is None
    assert await w.trigger("stream::list", {"stream_name": "chat", "group_id": "g1"}) == [1, {"text": "hey"}]
    assert await w.trigger("stream::list_groups", {"stream_name": "chat"}) == ["g1", "g2"]
    assert await w.trigger("stream::list_all", {}) == {
        "stream": [{"id": "chat", "groups": ["g1", "g2"]}, {"id": "other", "groups": ["g1"]}],
        "count": 2,
    }
    assert await w.trigger("stream::delete", item("b")) == {"old_value": {"text": "hey"}}
    assert await w.trigger("stream::delete", item("b")) == {"old_value": None}
    assert await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "type": "typing"}) is None


async def test_update_ops(connect: Connect) -> None:
    w = await connect(Worker("client"))
    await w.trigger("stream::set", {**item("i"), "data": {"n": 1, "text": "a"}})
    result = await w.trigger(
        "stream::update",
        {
            **item("i"),
            "ops": [
                {"type": "increment", "path": "n", "by": 4},
                {"type": "append", "path": "n", "value": "x"},  # fails: n is a number
                {"type": "append", "path": "text", "value": "b"},
            ],
        },
    )
    assert result == {
        "old_value": {"n": 1, "text": "a"},
        "new_value": {"n": 5, "text": "ab"},
        "errors": [{"op_index": 1, "code": "append.type_mismatch", "message": "cannot append string to number at n"}],
    }
    assert await w.trigger("stream::get", item("i")) == {"n": 5, "text": "ab"}
    assert await w.trigger("stream::update", {**item("new"), "ops": [{"type": "set", "path": "k", "value": 1}]}) == {
        "old_value": None,
        "new_value": {"k": 1},
    }


async def test_stream_trigger_events(connect: Connect) -> None:
    w = Worker("client")
    group = recorder(w, "on_group")
    one = recorder(w, "on_item")
    w.register_trigger("stream", "on_group", {"stream_name": "chat", "group_id": "g1"})
    w.register_trigger("stream", "on_item", {"stream_name": "chat", "item_id": "m2"})
    await connect(w)

    await w.trigger("stream::set", {**item("m1"), "data": {"v": 1}})
    await w.trigger("stream::update", {**item("m1"), "ops": [{"type": "increment", "path": "v"}]})
    await w.trigger("stream::send", {"stream_name": "chat", "group_id": "g1", "id": "m1", "type": "typing", "data": 7})
    await w.trigger("stream::set", {**item("m2", group="g2"), "data": "elsewhere"})
    await w.trigger("stream::set", {**item("m1", stream="other"), "data": "other stream"})
    await w.trigger("stream::delete", item("m1"))
    await w.trigger("stream::delete", item("m1"))  # nothing deleted: no event

    await eventually(lambda: len(group) == 4 and len(one) == 1)
    assert all(isinstance(e.pop("timestamp"), int) for e in [*group, *one])
    base = {"type": "stream", "streamName": "chat", "groupId": "g1", "id": "m1"}
    assert group == [
        {**base, "event": {"type": "create", "data": {"v": 1}}},
        {**base, "event": {"type": "update", "data": {"v": 2}}},
        {**base, "event": {"type": "event", "event": {"type": "typing", "data": 7}}},
        {**base, "event": {"type": "delete", "data": {"v": 2}}},
    ]
    assert one == [{**base, "groupId": "g2", "id": "m2", "event": {"type": "create", "data": "elsewhere"}}]


async def test_custom_stream_delegation(engine: Engine, connect: Connect) -> None:
    w = Worker("custom")
    gets = recorder(w, "stream::get(remote)", returns={"from": "custom"})
    sets = recorder(w, "stream::set(remote)", returns={"old_value": None, "new_value": "stored elsewhere"})
    recorder(w, "stream::list_groups(remote)", returns={"groups": ["x"]})
    events = recorder(w, "on_remote")
    w.register_trigger("stream", "on_remote", {"stream_name": "remote"})
    await connect(w)

    assert await w.trigger("stream::get", item("i", stream="remote")) == {"from": "custom"}
    assert gets == [item("i", stream="remote")]  # the parsed input, no `_caller_worker_id`
    assert await w.trigger("stream::set", {**item("i", stream="remote"), "data": 1}) == {
        "old_value": None,
        "new_value": "stored elsewhere",
    }
    assert sets == [{**item("i", stream="remote"), "data": 1}]
    assert await w.trigger("stream::list_groups", {"stream_name": "remote"}) == {"groups": ["x"]}
    # Ops the custom stream does not serve fall back to the built-in store.
    assert await w.trigger("stream::list", {"stream_name": "remote", "group_id": "g1"}) == []
    assert await engine.storage.streams.streams() == []

    await eventually(lambda: len(events) == 1)
    assert events[0]["event"] == {"type": "create", "data": "stored elsewhere"}


async def test_custom_stream_errors_pass_through(connect: Connect) -> None:
    w = Worker("custom")

    async def refuse(data: Any) -> Any:
        raise InvocationError("NOPE", "read-only stream")

    w.register_function("stream::delete(locked)", refuse)
    await connect(w)
    with pytest.raises(InvocationError) as caught:
        await w.trigger("stream::delete", item("i", stream="locked"))
    assert (caught.value.code, caught.value.message) == ("NOPE", "read-only stream")


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("stream::set", {"stream_name": "s", "group_id": "g", "data": 1}, "item_id"),
        ("stream::get", {"stream_name": "s", "item_id": "i"}, "group_id"),
        ("stream::list_groups", {}, "stream_name"),
        ("stream::send", {"stream_name": "s", "group_id": "g"}, "type"),
        ("stream::update", {**item("i"), "ops": "increment"}, "ops"),
    ],
)
async def test_bad_input_is_a_deserialization_error(
    connect: Connect, function_id: str, payload: dict[str, Any], field: str
) -> None:
    await expect_bad_input(await connect(Worker("client")), function_id, payload, field)


async def test_trigger_without_stream_name_is_refused(engine: Engine, connect: Connect) -> None:
    w = Worker("client")
    recorder(w, "handler")
    binding_id = w.register_trigger("stream", "handler", {"group_id": "g1"})
    await connect(w)
    await w.trigger("stream::list_all", {})  # registrations ahead of this call have been applied
    assert binding_id not in engine.triggers.bindings


FIVE_MIB = "x" * (5 * 1024 * 1024)


async def test_an_item_or_event_over_the_cap_is_refused_and_changes_nothing(connect: Connect) -> None:
    w = await connect(Worker("client"))
    events = recorder(w, "on_item")
    w.register_trigger("stream", "on_item", {"stream_name": "chat"})
    await w.trigger("stream::set", {**item("a"), "data": "short"})
    await received(events, 1)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("stream::set", {**item("a"), "data": FIVE_MIB}),
        ("stream::update", {**item("a"), "ops": [{"type": "append", "value": FIVE_MIB}]}),
        ("stream::send", {"stream_name": "chat", "group_id": "g1", "type": "big", "data": FIVE_MIB}),
    ]
    for function_id, payload in calls:
        with pytest.raises(InvocationError) as caught:
            await w.trigger(function_id, payload)
        assert caught.value.code == "VALUE_TOO_LARGE"
        assert "max_value_bytes is 4194304" in caught.value.message
    nest: Any = []
    for _ in range(600):
        nest = [nest]
    with pytest.raises(InvocationError) as caught:
        await w.trigger("stream::set", {**item("a"), "data": nest})
    assert caught.value.code == "VALUE_TOO_DEEP"
    assert await w.trigger("stream::get", item("a")) == "short"
    await w.trigger("stream::set", {**item("b"), "data": "after"})  # the trigger saw nothing in between
    await received(events, 2)
    assert [event["event"]["data"] for event in events] == ["short", "after"]


async def received(calls: list[Any], count: int) -> None:
    await eventually(lambda: len(calls) >= count)
