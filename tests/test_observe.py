"""observe.v1 on a real engine, with the official Python SDK as every client, over real sockets.

One plain listener (no session: trusted, like the iii engine's) and one guarded by roles (the auth
function answers the role the URL names), so the tests can show who may observe what.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from iii import ObserveRejection, register_worker
from iii.filter import FilterError as SdkFilterError
from iii.filter import compile_filter as sdk_filter
from iii.iii import III

from teamster.engine.engine import Engine
from teamster.engine.modules.observe.filters import Filter, FilterError
from teamster.engine.modules.worker_manager import WorkerManager
from teamster.protocol.access import mark
from teamster.sdk import Worker
from tests.conftest import engine_config
from tests.test_iii_sdk_compat import iii_options


@dataclass
class Bus:
    plain: str
    guarded: str
    local: Worker

    def as_(self, role: str) -> str:
        return f"{self.guarded}/?role={role}"


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    config = engine_config(iii_observe={"max_observers_per_connection": 3})
    guarded = config.workers[0].model_copy(deep=True)
    guarded.config["rbac"] = {"auth_function_id": "observe-test::auth"}
    config.workers.append(guarded)
    async with Engine(config) as engine:
        local = Worker("authority", tracing=False)

        @local.function("observe-test::auth")
        async def auth(request: Any) -> Any:
            [role] = request["query_params"]["role"]
            return {"role": role}

        await local.open_local(engine)
        plain, guarded_manager = [m for m in engine.modules if isinstance(m, WorkerManager)]
        try:
            yield Bus(f"ws://127.0.0.1:{plain.port}", f"ws://127.0.0.1:{guarded_manager.port}", local)
        finally:
            await local.close()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[str], III]]:
    """`connect(url)`: an official SDK worker, registered, shut down after the test (off the loop the
    engine runs on, which its close handshake needs)."""
    clients: list[III] = []

    def make(url: str) -> III:
        client = register_worker(url, iii_options(f"observe-{uuid.uuid4().hex[:6]}"))
        clients.append(client)
        wait_for(lambda: client._registered_on_connection, "workerregistered")
        return client

    yield make
    for client in clients:
        if client._thread.is_alive():
            await asyncio.to_thread(client.shutdown)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def collector(client: III, function_id: str) -> list[Any]:
    got: list[Any] = []
    client.register_function(function_id, lambda data: got.append(data))
    return got


def call(client: III, function_id: str, payload: Any) -> Any:
    return client.trigger({"function_id": function_id, "payload": payload, "dispatch": "remote"})


def rejection(handle: Any) -> str:
    with pytest.raises(ObserveRejection) as raised:
        handle.ready(timeout=5)
    return str(raised.value.code)


async def test_an_observer_sees_the_calls_its_filter_selects_and_no_others(
    bus: Bus, connect: Callable[[str], III]
) -> None:
    def scenario() -> None:
        owner, watcher = connect(bus.plain), connect(bus.plain)
        owner.register_function("shop::charge", lambda data: {"charged": data["amount"]})
        got = collector(watcher, "audit::big-charge")
        handle = watcher.observe(
            {"function_id": "shop::charge", "filters": {"input.amount": {"$gte": 500}}, "capture": ["input", "output"]},
            "audit::big-charge",
            {"metadata": {"team": "payments"}},
        )
        handle.ready(timeout=5)
        for amount in (10, 750, 499, 900):
            assert call(watcher, "shop::charge", {"amount": amount}) == {"charged": amount}
        wait_for(lambda: len(got) == 2, "two activations")
        assert sorted(envelope["input"]["amount"] for envelope in got) == [750, 900]
        assert {envelope["output"]["charged"] for envelope in got} == {750, 900}
        assert all(envelope["observer_id"] == handle.id and "caller" not in envelope for envelope in got)

    await asyncio.to_thread(scenario)


async def test_an_observer_stops_after_max_fires_and_after_it_expires(bus: Bus, connect: Callable[[str], III]) -> None:
    def scenario() -> None:
        owner, watcher = connect(bus.plain), connect(bus.plain)
        owner.register_function("shop::ping", lambda data: "pong")
        twice = collector(watcher, "audit::twice")
        lease = collector(watcher, "audit::lease")
        counted = watcher.observe({"function_id": "shop::ping"}, "audit::twice", {"max_fires": 2})
        leased = watcher.observe({"function_id": "shop::ping"}, "audit::lease", {"expires_in_ms": 300})
        counted.ready(timeout=5)
        leased.ready(timeout=5)
        call(owner, "shop::ping", {})
        wait_for(lambda: len(lease) == 1, "the leased observer's one activation")
        wait_for(lambda: leased.state == "disposed", "the lease to run out")
        assert leased.reason is not None and leased.reason["code"] == "EXPIRED"
        call(owner, "shop::ping", {})
        call(owner, "shop::ping", {})
        wait_for(lambda: counted.state == "disposed", "max_fires")
        assert counted.reason is not None and counted.reason["code"] == "MAX_FIRES"
        call(owner, "shop::ping", {})
        time.sleep(0.2)  # room for an activation that must not come
        assert (len(twice), len(lease)) == (2, 1)

    await asyncio.to_thread(scenario)


async def test_only_admin_observes_a_secret_function(bus: Bus, connect: Callable[[str], III]) -> None:
    def scenario() -> None:
        vault = connect(bus.as_("admin"))
        vault.register_function("vault::read", lambda data: {"key": "sk-live-secret"}, metadata=mark("secret"))
        for role in ("worker", "provider"):
            spy = connect(bus.as_(role))
            seen = collector(spy, f"spy-{role}::seen")
            handle = spy.observe({"function_id": "vault::read", "capture": ["output"]}, f"spy-{role}::seen")
            assert rejection(handle) == "FORBIDDEN"
            assert handle.reason is not None and "marked secret" in handle.reason["message"]
        auditor = connect(bus.as_("admin"))
        audited = collector(auditor, "auditor::seen")
        auditor.observe({"function_id": "vault::read", "capture": ["output"]}, "auditor::seen").ready(timeout=5)
        call(vault, "vault::read", {})
        wait_for(lambda: len(audited) == 1, "the admin's activation")
        assert audited[0]["output"] == {"key": "sk-live-secret"}
        assert seen == []

    await asyncio.to_thread(scenario)


async def test_bad_filters_and_too_many_observers_get_typed_errors(bus: Bus, connect: Callable[[str], III]) -> None:
    def scenario() -> None:
        owner, watcher = connect(bus.plain), connect(bus.plain)
        owner.register_function("shop::tick", lambda data: None)
        collector(watcher, "audit::tick")
        literal = watcher.observe({"function_id": "shop::tick", "filters": {"input.op": "insert"}}, "audit::tick")
        assert rejection(literal) == "INVALID_FILTER"
        deep: dict[str, Any] = {"input.n": {"$eq": 1}}
        for _ in range(8):
            deep = {"$not": deep}
        nested = watcher.observe({"function_id": "shop::tick", "filters": deep}, "audit::tick")
        assert rejection(nested) == "INVALID_FILTER"
        held = [watcher.observe({"function_id": "shop::tick"}, "audit::tick") for _ in range(3)]
        for handle in held:
            handle.ready(timeout=5)
        extra = watcher.observe({"function_id": "shop::tick"}, "audit::tick")
        assert rejection(extra) == "TOO_MANY_OBSERVERS"

    await asyncio.to_thread(scenario)


async def test_observers_die_with_their_connection(bus: Bus, connect: Callable[[str], III]) -> None:
    def scenario() -> III:
        owner, watcher = connect(bus.plain), connect(bus.plain)
        owner.register_function("shop::work", lambda data: None)
        collector(watcher, "audit::work")
        watcher.observe({"function_id": "shop::work"}, "audit::work").ready(timeout=5)
        watcher.shutdown()
        return owner

    owner = await asyncio.to_thread(scenario)

    async def observers() -> list[Any]:
        listed = await bus.local.trigger("engine::observers::list", {})
        return list(listed["observers"])

    deadline = time.monotonic() + 5
    while await observers():
        assert time.monotonic() < deadline, "the observer outlived its connection"
        await asyncio.sleep(0.02)
    # and the owner was told: its SDK no longer reports calls for it
    await asyncio.to_thread(wait_for, lambda: not owner._functions["shop::work"].observe.is_observed(), "removal")


FILTERS: list[Any] = [
    {},
    {"input.amount": {"$gte": 500}},
    {"input.amount": {"$gt": 1, "$lt": 10}},
    {"input.sku": {"$prefix": "A-"}},
    {"input.tags": {"$any": {"$eq": "red"}}},
    {"input.items": {"$any": {"@.qty": {"$gte": 2}}}},
    {"input.items.0.qty": {"$eq": 1}},
    {"$or": [{"input.amount": {"$lt": 5}}, {"caller.function_id": {"$eq": "shop::checkout"}}]},
    {"$not": {"output.ok": {"$exists": True}}},
    {"$and": [{"input.amount": {"$ne": 3}}, {"metadata.channel": {"$in": ["web", "app"]}}]},
    {"input.amount": {"$nin": [1, 2.0]}},
    {"error.code": {"$eq": "invocation_failed"}},
    {"input.a\\.b": {"$eq": 1}},
    {"input.name": {"$gte": "m"}},
    {"input.amount": {"$eq": None}},
    # refused by both
    {"input.op": "insert"},
    {"input.amount": {}},
    {"nowhere.x": {"$eq": 1}},
    {"$or": []},
    {"input.x": {"$regex": "a"}},
    {"input.x": {"$gt": True}},
    {"$eq": 1},
    {"input..x": {"$eq": 1}},
    {"input.x": {"$in": list(range(257))}},
    {"input.x": {"$any": {"input.y": {"$eq": 1}}}},
    {"$not": {"$not": {"$not": {"$not": {"$not": {"$not": {"$not": {"$not": {"input.x": {"$eq": 1}}}}}}}}}},
]
DOCUMENTS: list[dict[str, Any]] = [
    {},
    {"input": {"amount": 750, "sku": "A-1", "tags": ["red", "blue"], "items": [{"qty": 1}, {"qty": 3}]}},
    {"input": {"amount": 3, "name": "zed", "a.b": 1}, "metadata": {"channel": "web"}},
    {"input": {"amount": 2.0, "items": [{"qty": 1}]}, "output": {"ok": True}, "metadata": {"channel": "cli"}},
    {"input": {"amount": None}, "error": {"code": "invocation_failed"}, "caller": {"function_id": "shop::checkout"}},
    {"input": "not an object", "output": None},
]


@pytest.mark.parametrize("source", FILTERS)
def test_the_filter_language_agrees_with_the_official_sdks_evaluator(source: Any) -> None:
    try:
        official = sdk_filter(source)
    except SdkFilterError:
        with pytest.raises(FilterError):
            Filter(source)
        return
    ours = Filter(source)
    assert [ours.matches(doc) for doc in DOCUMENTS] == [official.matches(doc) for doc in DOCUMENTS]
    # the owner gets a normal form the SDK accepts, and it means the same
    normal = sdk_filter(ours.normal, trusted=True)
    assert [normal.matches(doc) for doc in DOCUMENTS] == [official.matches(doc) for doc in DOCUMENTS]
