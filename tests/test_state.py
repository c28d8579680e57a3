"""iii-state over a real WebSocket: functions, update ops, atomicity and the `state` trigger type."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from teamster.engine.config import EngineConfig
from teamster.engine.engine import Engine
from teamster.protocol import InvocationError
from teamster.sdk import Worker
from teamster.storage import Entry, RevisionConflict, Storage, open_memory
from teamster.storage.memory import MemoryState
from tests.conftest import Connect, engine_config, eventually, expect_bad_input, recorder


async def received(calls: list[Any], count: int) -> None:
    """Wait until `calls` holds `count` payloads."""
    await eventually(lambda: len(calls) == count)


@asynccontextmanager
async def running(worker: Worker, config: EngineConfig, storage: Storage | None = None) -> AsyncIterator[Worker]:
    """An engine with its own config (or storage), with `worker` connected to it over WebSocket."""
    async with Engine(config, storage=storage) as engine:
        await worker.open(f"ws://127.0.0.1:{engine.ports['ws']}", wait=5)
        try:
            yield worker
        finally:
            await worker.close()


async def test_set_get_delete_return_shapes(connect: Connect) -> None:
    w = await connect(Worker("client"))
    assert await w.trigger("state::set", {"scope": "users", "key": "u1", "value": {"name": "Ada"}}) == {
        "old_value": None,
        "new_value": {"name": "Ada"},
    }
    assert await w.trigger("state::set", {"scope": "users", "key": "u1", "data": {"name": "Grace"}}) == {
        "old_value": {"name": "Ada"},
        "new_value": {"name": "Grace"},
    }
    assert await w.trigger("state::get", {"scope": "users", "key": "u1"}) == {"name": "Grace"}
    assert await w.trigger("state::get", {"scope": "users", "key": "nobody"}) is None
    assert await w.trigger("state::delete", {"scope": "users", "key": "u1"}) == {"name": "Grace"}
    assert await w.trigger("state::delete", {"scope": "users", "key": "u1"}) is None
    assert await w.trigger("state::get", {"scope": "users", "key": "u1"}) is None


async def test_list_and_list_groups_hide_internal_scopes(engine: Engine, connect: Connect) -> None:
    w = await connect(Worker("client"))
    for scope, key, value in (("b", "k2", 2), ("b", "k1", 1), ("a", "k", "x")):
        await w.trigger("state::set", {"scope": scope, "key": key, "value": value})
    await engine.storage.state.put("__teamster::internal", "k", True)

    assert await w.trigger("state::list", {"scope": "b"}) == [1, 2]
    assert await w.trigger("state::list", {"scope": "empty"}) == []
    assert await w.trigger("state::list_groups", {}) == {"groups": ["a", "b"]}


async def test_update_applies_ops_and_reports_the_failing_one(connect: Connect) -> None:
    w = await connect(Worker("client"))
    old = {"count": 1, "name": "ab", "tags": ["x"], "gone": 0, "deep": {"n": 10}}
    await w.trigger("state::set", {"scope": "s", "key": "k", "value": old})
    result = await w.trigger(
        "state::update",
        {
            "scope": "s",
            "key": "k",
            "ops": [
                {"type": "increment", "path": "count", "by": 2},
                {"type": "increment", "path": "name", "by": 1},  # fails: not a number
                {"type": "decrement", "path": "deep.n", "by": 4},
                {"type": "append", "path": "tags", "value": "y"},
                {"type": "append", "path": "name", "value": "c"},
                {"type": "merge", "path": "", "value": {"merged": True}},
                {"type": "set", "path": "deep.more.flag", "value": "on"},
                {"type": "remove", "path": "gone"},
            ],
        },
    )
    assert result["old_value"] == old
    assert result["new_value"] == {
        "count": 3,
        "name": "abc",
        "tags": ["x", "y"],
        "deep": {"n": 6, "more": {"flag": "on"}},
        "merged": True,
    }
    assert [(e["op_index"], e["code"]) for e in result["errors"]] == [(1, "increment.not_number")]
    assert "name" in result["errors"][0]["message"]
    assert await w.trigger("state::get", {"scope": "s", "key": "k"}) == result["new_value"]


async def test_update_on_a_missing_key_and_type_errors(connect: Connect) -> None:
    w = await connect(Worker("client"))
    counter = {"scope": "s", "key": "counter", "ops": [{"type": "increment", "path": "", "by": 5}]}
    assert await w.trigger("state::update", counter) == {"old_value": None, "new_value": 5}

    result = await w.trigger(
        "state::update",
        {
            "scope": "s",
            "key": "doc",
            "ops": [
                {"type": "append", "path": "log", "value": {"at": 1}},
                {"type": "merge", "path": "log", "value": {"x": 1}},  # fails: log is an array
                {"type": "merge", "path": "meta", "value": [1]},  # fails: value is not an object
                {"type": "set", "path": "log.first", "value": 1},  # fails: log is not an object
            ],
        },
    )
    assert result["old_value"] is None
    assert result["new_value"] == {"log": [{"at": 1}]}
    assert [(e["op_index"], e["code"]) for e in result["errors"]] == [
        (1, "merge.target_not_object"),
        (2, "merge.value.not_an_object"),
        (3, "set.target_not_object"),
    ]


class YieldingState(MemoryState):
    """Yields between read and write like a networked store, so concurrent updates really interleave."""

    def __init__(self) -> None:
        super().__init__()
        self.conflicts = 0

    async def get(self, scope: str, key: str) -> Entry | None:
        entry = await super().get(scope, key)
        await asyncio.sleep(0.001)
        return entry

    async def put(self, scope: str, key: str, value: Any, *, revision: int | None = None) -> Entry:
        try:
            return await super().put(scope, key, value, revision=revision)
        except RevisionConflict:
            self.conflicts += 1
            raise


async def test_concurrent_updates_are_atomic() -> None:
    storage = open_memory()
    storage.state = state = YieldingState()
    async with running(Worker("client"), engine_config(), storage) as w:
        op = {"scope": "s", "key": "hits", "ops": [{"type": "increment", "path": "n", "by": 1}]}
        results = await asyncio.gather(*(w.trigger("state::update", op) for _ in range(60)))
        assert await w.trigger("state::get", {"scope": "s", "key": "hits"}) == {"n": 60}
        assert sorted(r["new_value"]["n"] for r in results) == list(range(1, 61))
        assert state.conflicts > 0  # the compare-and-set did have to retry


async def test_state_trigger_events_in_order(connect: Connect) -> None:
    w = Worker("client")
    events = recorder(w, "on_order")
    w.register_trigger("state", "on_order", {"scope": "orders", "key": "o1"})
    await connect(w)

    await w.trigger("state::set", {"scope": "orders", "key": "o1", "value": {"n": 1}})
    await w.trigger("state::update", {"scope": "orders", "key": "o1", "ops": [{"type": "increment", "path": "n"}]})
    await w.trigger("state::set", {"scope": "orders", "key": "o2", "value": "other key"})
    await w.trigger("state::set", {"scope": "carts", "key": "o1", "value": "other scope"})
    await w.trigger("state::delete", {"scope": "orders", "key": "o1"})

    base = {"type": "state", "scope": "orders", "key": "o1"}
    expected = [
        {**base, "event_type": "state:created", "old_value": None, "new_value": {"n": 1}},
        {**base, "event_type": "state:updated", "old_value": {"n": 1}, "new_value": {"n": 2}},
        {**base, "event_type": "state:deleted", "old_value": {"n": 2}, "new_value": None},
    ]
    await eventually(lambda: len(events) == 3)
    assert events == expected


async def test_state_trigger_filters(engine: Engine, connect: Connect) -> None:
    w = Worker("client")
    everything = recorder(w, "on_everything")
    orders = recorder(w, "on_orders")
    w.register_trigger("state", "on_everything", {})
    w.register_trigger("state", "on_orders", {"scope": "orders"})
    await connect(w)

    writes = [("orders", "o1"), ("carts", "c1"), ("orders", "o2")]
    for n, (scope, key) in enumerate(writes, 1):
        await w.trigger("state::set", {"scope": scope, "key": key, "value": n})
        await received(everything, n)
    await engine.storage.state.put("__teamster::internal", "k", 1)  # not seen by catch-all bindings
    await w.trigger("state::set", {"scope": "carts", "key": "c2", "value": 4})
    await received(everything, 4)

    assert [(e["scope"], e["key"]) for e in everything] == [*writes, ("carts", "c2")]
    assert [(e["scope"], e["key"]) for e in orders] == [("orders", "o1"), ("orders", "o2")]


async def test_condition_false_skips_anything_else_runs(connect: Connect) -> None:
    w = Worker("client")
    skipped = recorder(w, "skipped")
    ran_none = recorder(w, "ran_none")
    ran_zero = recorder(w, "ran_zero")
    conditions = recorder(w, "says_false", returns=False)
    recorder(w, "says_nothing")
    recorder(w, "says_zero", returns=0)
    # Bindings fire in registration order, so once the last handler ran the first was decided.
    w.register_trigger("state", "skipped", {"scope": "s", "condition_function_id": "says_false"})
    w.register_trigger("state", "ran_none", {"scope": "s", "condition_function_id": "says_nothing"})
    w.register_trigger("state", "ran_zero", {"scope": "s", "condition_function_id": "says_zero"})
    await connect(w)

    await w.trigger("state::set", {"scope": "s", "key": "k", "value": 1})
    await eventually(lambda: len(ran_zero) == 1)
    assert len(ran_none) == 1
    assert skipped == []
    assert conditions == [ran_none[0]]  # the condition sees the same event as the handler


async def test_trigger_calls_carry_no_caller_worker_id(connect: Connect) -> None:
    w = Worker("client")
    calls = recorder(w, "probe")
    w.register_trigger("state", "probe", {"scope": "s"})
    await connect(w)

    await w.trigger("probe", {"direct": True})
    await w.trigger("state::set", {"scope": "s", "key": "k", "value": 1})
    await eventually(lambda: len(calls) == 2)
    direct, fired = calls
    assert direct == {"direct": True, "_caller_worker_id": w.worker_id}
    assert "_caller_worker_id" not in fired
    assert fired["event_type"] == "state:created"


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("state::set", {"key": "k", "value": 1}, "scope"),
        ("state::set", {"scope": "s", "key": "k"}, "value"),
        ("state::get", {"scope": "s"}, "key"),
        ("state::update", {"scope": "s", "key": "k"}, "ops"),
        ("state::update", {"scope": "s", "key": "k", "ops": [{"type": "multiply"}]}, "ops.0.type"),
        ("state::list", {}, "scope"),
    ],
)
async def test_bad_input_is_a_deserialization_error(
    connect: Connect, function_id: str, payload: dict[str, Any], field: str
) -> None:
    await expect_bad_input(await connect(Worker("client")), function_id, payload, field)


async def test_max_value_bytes() -> None:
    async with running(Worker("client"), engine_config(iii_state={"max_value_bytes": 16})) as w:
        assert (await w.trigger("state::set", {"scope": "s", "key": "k", "value": "short"}))["new_value"] == "short"
        with pytest.raises(InvocationError) as caught:
            await w.trigger("state::set", {"scope": "s", "key": "k", "value": "x" * 32})
        assert caught.value.code == "VALUE_TOO_LARGE"
        with pytest.raises(InvocationError) as caught:
            await w.trigger("state::update", {"scope": "s", "key": "k", "ops": [{"type": "append", "value": "x" * 16}]})
        assert caught.value.code == "VALUE_TOO_LARGE"
        assert await w.trigger("state::get", {"scope": "s", "key": "k"}) == "short"


def nested(depth: int) -> Any:
    """A value of lists nested `depth` deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


FIVE_MIB = "x" * (5 * 1024 * 1024)


async def test_a_value_over_the_default_cap_is_refused_and_changes_nothing(connect: Connect) -> None:
    w = await connect(Worker("client"))
    await w.trigger("state::set", {"scope": "s", "key": "k", "value": "short"})
    with pytest.raises(InvocationError) as caught:
        await w.trigger("state::set", {"scope": "s", "key": "k", "value": FIVE_MIB})
    assert caught.value.code == "VALUE_TOO_LARGE"
    assert caught.value.message == f"value is {len(FIVE_MIB) + 2} bytes; max_value_bytes is 4194304"
    with pytest.raises(InvocationError) as caught:  # an update whose result would be over the cap
        await w.trigger("state::update", {"scope": "s", "key": "k", "ops": [{"type": "append", "value": FIVE_MIB}]})
    assert caught.value.code == "VALUE_TOO_LARGE"
    assert await w.trigger("state::get", {"scope": "s", "key": "k"}) == "short"


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
async def test_a_value_nested_past_512_levels_is_refused_one_within_them_is_kept(
    storage: Literal["memory", "sqlite"], tmp_path: Path
) -> None:
    async with running(Worker("client"), engine_config(storage, tmp_path)) as w:
        await w.trigger("state::set", {"scope": "s", "key": "k", "value": "short"})
        with pytest.raises(InvocationError) as caught:
            await w.trigger("state::set", {"scope": "s", "key": "k", "value": nested(600)})
        assert caught.value.code == "VALUE_TOO_DEEP"
        assert "512 levels" in caught.value.message
        assert await w.trigger("state::get", {"scope": "s", "key": "k"}) == "short"
        # Deeper than orjson writes (254 levels), within the cap: stored and read back whole.
        await w.trigger("state::set", {"scope": "s", "key": "k", "value": nested(500)})
        assert await w.trigger("state::get", {"scope": "s", "key": "k"}) == nested(500)


async def test_triggers_disabled() -> None:
    w = Worker("client")
    calls = recorder(w, "probe")
    w.register_trigger("state", "probe", {})
    async with running(w, engine_config(iii_state={"triggers_enabled": False})):
        await w.trigger("state::set", {"scope": "s", "key": "k", "value": 1})
        # A later round trip through the same worker: a fired trigger would have reached it first.
        await w.trigger("probe", "after")
        assert calls == ["after"]


async def test_setting_null_is_an_update_not_a_delete(engine: Engine, connect: Any) -> None:
    events: list[dict[str, Any]] = []
    worker = Worker("null-watcher")
    worker.register_function("nulls::seen", lambda event: events.append(event))
    worker.register_trigger("state", "nulls::seen", {"scope": "nulls"})
    await connect(worker)
    await eventually(
        lambda: any(b.function_id == "nulls::seen" and b.provider_key for b in engine.triggers.bindings.values())
    )
    await worker.trigger("state::set", {"scope": "nulls", "key": "k", "value": 1})
    await worker.trigger("state::set", {"scope": "nulls", "key": "k", "value": None})
    await worker.trigger("state::delete", {"scope": "nulls", "key": "k"})
    await eventually(lambda: len(events) == 3)
    assert [e["event_type"] for e in events] == ["state:created", "state:updated", "state:deleted"]
    assert events[1]["new_value"] is None
