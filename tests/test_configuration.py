"""The `configuration` worker over a real socket: register/set/get/list/schema, its trigger, errors, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from iii import InvocationError as IIIInvocationError
from iii import register_worker

from teamster.engine.config import load_config
from teamster.engine.engine import Engine
from teamster.sdk import InvocationError, Worker
from tests.conftest import Connect, eventually, expect_bad_input, recorder
from tests.engine_proc import EngineProcess
from tests.test_iii_sdk_compat import iii_options

pytestmark = pytest.mark.slow

PORT_SCHEMA = {
    "type": "object",
    "required": ["port"],
    "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}, "host": {"type": "string"}},
    "additionalProperties": False,
}


def stream_entry(**extra: Any) -> dict[str, Any]:
    return {"id": "iii-stream", "name": "Stream", "description": "Stream settings", "schema": PORT_SCHEMA, **extra}


@pytest.fixture
def engine_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineProcess]:
    monkeypatch.setenv("CFG_TEST_HOST", "db.local")  # the engine process inherits it
    monkeypatch.delenv("CFG_TEST_PORT", raising=False)
    monkeypatch.delenv("CFG_TEST_UNSET", raising=False)
    proc = EngineProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
async def client(engine_proc: EngineProcess) -> AsyncIterator[Worker]:
    worker = Worker("config-client")
    async with worker.connect(engine_proc.ws_url, wait=5):
        yield worker


async def error_of(worker: Worker, function_id: str, payload: Any) -> InvocationError:
    with pytest.raises(InvocationError) as caught:
        await worker.trigger(function_id, payload)
    return caught.value


async def test_register_set_get_list_schema(client: Worker) -> None:
    entry = await client.trigger(
        "configuration::register", stream_entry(initial_value={"port": 3112}, metadata={"owner": "ops"})
    )
    assert entry == stream_entry(value={"port": 3112}, metadata={"owner": "ops"})
    assert await client.trigger("configuration::set", {"id": "iii-stream", "value": {"port": 4000, "host": "h"}}) == {
        "old_value": {"port": 3112},
        "new_value": {"port": 4000, "host": "h"},
    }
    assert await client.trigger("configuration::get", {"id": "iii-stream"}) == {
        "id": "iii-stream",
        "value": {"port": 4000, "host": "h"},
    }

    # No initial value: a new entry starts as null; re-registering keeps the stored value.
    queue = {"id": "a-queue", "name": "Queue", "description": "", "schema": {"type": ["object", "null"]}}
    assert await client.trigger("configuration::register", queue) == {**queue, "value": None}
    assert await client.trigger("configuration::get", {"id": "a-queue"}) == {"id": "a-queue", "value": None}
    assert await client.trigger("configuration::register", stream_entry(name="Streams")) == stream_entry(
        name="Streams", value={"port": 4000, "host": "h"}
    )

    view = stream_entry(name="Streams")  # metadata was not given again, so it is gone
    assert await client.trigger("configuration::list", {}) == {"configurations": [queue, view]}
    assert await client.trigger("configuration::schema", {"id": "iii-stream"}) == view


async def test_get_expands_placeholders_unless_raw(client: Worker) -> None:
    raw = {"host": "${CFG_TEST_HOST:fallback}", "port": "${CFG_TEST_PORT:3111}"}
    # Checked as applied: the port placeholder reads as the integer 3111, which the schema wants.
    await client.trigger("configuration::register", stream_entry(initial_value=raw))
    assert await client.trigger("configuration::get", {"id": "iii-stream"}) == {
        "id": "iii-stream",
        "value": {"host": "db.local", "port": 3111},
    }
    assert await client.trigger("configuration::get", {"id": "iii-stream", "raw": True}) == {
        "id": "iii-stream",
        "value": raw,
    }

    # A variable with no value and no default cannot be applied yet: stored, but get says why.
    unset = {"port": "${CFG_TEST_UNSET}"}
    await client.trigger("configuration::set", {"id": "iii-stream", "value": unset})
    error = await error_of(client, "configuration::get", {"id": "iii-stream"})
    assert error.code == "EXPAND_FAILED"
    assert error.message == (
        "configuration::get: 'iii-stream': environment variable CFG_TEST_UNSET is not set and has no default "
        "(${CFG_TEST_UNSET:default})"
    )
    assert await client.trigger("configuration::get", {"id": "iii-stream", "raw": True}) == {
        "id": "iii-stream",
        "value": unset,
    }


async def test_trigger_fires_with_the_value_filtered_by_id(engine_proc: EngineProcess) -> None:
    watcher = Worker("config-watcher")
    streams = recorder(watcher, "on_stream")
    updates = recorder(watcher, "on_any_update")
    watcher.register_trigger("configuration", "on_stream", {"configuration_id": "iii-stream"})
    watcher.register_trigger("configuration", "on_any_update", {"event_types": ["configuration:updated"]})
    async with watcher.connect(engine_proc.ws_url, wait=5):
        await watcher.trigger("configuration::register", stream_entry(initial_value={"port": 1}))
        await watcher.trigger("configuration::register", {**stream_entry(), "id": "other"})
        await watcher.trigger("configuration::set", {"id": "other", "value": {"port": 7}})
        await watcher.trigger("configuration::set", {"id": "iii-stream", "value": {"port": "${CFG_TEST_PORT:2}"}})
        await eventually(lambda: len(streams) == 2 and len(updates) == 2)

    described = {"type": "configuration", **stream_entry()}
    assert streams == [
        {**described, "event_type": "configuration:registered", "old_value": None, "new_value": {"port": 1}},
        {**described, "event_type": "configuration:updated", "old_value": {"port": 1}, "new_value": {"port": 2}},
    ]
    assert [(e["id"], e["new_value"]) for e in updates] == [("other", {"port": 7}), ("iii-stream", {"port": 2})]


async def test_bad_input_gets_a_typed_error_and_changes_nothing(engine_proc: EngineProcess) -> None:
    client = Worker("config-client")
    events = recorder(client, "on_change")
    client.register_trigger("configuration", "on_change", {})
    async with client.connect(engine_proc.ws_url, wait=5):
        await client.trigger("configuration::register", stream_entry(initial_value={"port": 3112}))
        await eventually(lambda: len(events) == 1)

        cases: list[tuple[str, dict[str, Any], str, str]] = [
            (
                "configuration::set",
                {"id": "nobody", "value": {"port": 1}},
                "NOT_REGISTERED",
                "configuration::set: 'nobody' is not registered; call configuration::register first",
            ),
            (
                "configuration::set",
                {"id": "iii-stream", "value": {"port": "wrong", "extra": 1}},
                "SCHEMA_INVALID",
                "configuration::set: the value of 'iii-stream' does not match its schema: "
                "$: Additional properties are not allowed ('extra' was unexpected); "
                "$.port: 'wrong' is not of type 'integer'",
            ),
            (
                "configuration::set",
                {"id": "", "value": {"port": 1}},
                "INVALID_ID",
                "configuration::set: invalid configuration id '': it must match [a-z0-9_-]{1,64}",
            ),
            (
                "configuration::register",
                {**stream_entry(), "id": "Not Valid"},
                "INVALID_ID",
                "configuration::register: invalid configuration id 'Not Valid': it must match [a-z0-9_-]{1,64}",
            ),
            (
                "configuration::register",
                stream_entry(schema={"type": "whole number"}),
                "SCHEMA_INVALID",
                "configuration::register: invalid JSON Schema: $.type: 'whole number' is not valid under any of the "
                "given schemas",
            ),
            (
                "configuration::register",
                stream_entry(initial_value={"port": 0}),
                "SCHEMA_INVALID",
                "configuration::register: the value of 'iii-stream' does not match its schema: "
                "$.port: 0 is less than the minimum of 1",
            ),
            (
                "configuration::get",
                {"id": "nobody"},
                "NOT_FOUND",
                "configuration::get: 'nobody' is not registered",
            ),
            (
                "configuration::schema",
                {"id": "nobody"},
                "NOT_FOUND",
                "configuration::schema: 'nobody' is not registered",
            ),
        ]
        for function_id, payload, code, message in cases:
            error = await error_of(client, function_id, payload)
            assert (error.code, error.message) == (code, message)
        await expect_bad_input(client, "configuration::set", {"id": "iii-stream"}, "value")
        await expect_bad_input(client, "configuration::register", {"id": "x", "name": "x", "description": ""}, "schema")

        stored = await client.trigger("configuration::get", {"id": "iii-stream"})
        assert stored == {"id": "iii-stream", "value": {"port": 3112}}
        assert await client.trigger("configuration::schema", {"id": "iii-stream"}) == stream_entry()
        assert [c["id"] for c in (await client.trigger("configuration::list", {}))["configurations"]] == ["iii-stream"]
        # The next change is the first event since the registration: no failed call fired one.
        await client.trigger("configuration::set", {"id": "iii-stream", "value": {"port": 5}})
        await eventually(lambda: len(events) == 2)
        assert [e["new_value"] for e in events] == [{"port": 3112}, {"port": 5}]


async def test_unknown_event_type_in_a_binding_is_refused(engine: Engine, connect: Connect) -> None:
    w = Worker("client")
    recorder(w, "on_change")
    refused = w.register_trigger("configuration", "on_change", {"event_types": ["configuration:changed"]})
    kept = w.register_trigger("configuration", "on_change", {"event_types": ["configuration:updated"]})
    await connect(w)
    await w.trigger("configuration::list", {})  # a round trip: the engine has applied both registrations
    assert refused not in engine.triggers.bindings
    assert kept in engine.triggers.bindings


async def test_entries_survive_an_engine_restart(tmp_path: Path) -> None:
    proc = EngineProcess(tmp_path / "data").start()
    try:
        async with Worker("before").connect(proc.ws_url, wait=5) as before:
            await before.trigger("configuration::register", stream_entry(initial_value={"port": 3112}))
            await before.trigger("configuration::set", {"id": "iii-stream", "value": {"port": 4242}})
        assert proc.stop() == 0
        proc.start()  # same ports, same data directory
        async with Worker("after").connect(proc.ws_url, wait=5) as after:
            assert await after.trigger("configuration::get", {"id": "iii-stream"}) == {
                "id": "iii-stream",
                "value": {"port": 4242},
            }
            assert await after.trigger("configuration::list", {}) == {"configurations": [stream_entry()]}
            # The schema came back too: set still checks against it without a new register.
            error = await error_of(after, "configuration::set", {"id": "iii-stream", "value": {"port": -1}})
            assert error.code == "SCHEMA_INVALID"
            assert await after.trigger("configuration::set", {"id": "iii-stream", "value": {"port": 1}}) == {
                "old_value": {"port": 4242},
                "new_value": {"port": 1},
            }
    finally:
        proc.stop()


async def test_official_iii_sdk_client(engine_proc: EngineProcess) -> None:
    iii = await asyncio.to_thread(register_worker, engine_proc.ws_url, iii_options("iii-config"))
    try:
        await iii.trigger_async({"function_id": "configuration::register", "payload": stream_entry()})
        set_port = {"function_id": "configuration::set", "payload": {"id": "iii-stream", "value": {"port": 8080}}}
        assert await iii.trigger_async(set_port) == {"old_value": None, "new_value": {"port": 8080}}
        get = {"function_id": "configuration::get", "payload": {"id": "iii-stream"}}
        assert await iii.trigger_async(get) == {"id": "iii-stream", "value": {"port": 8080}}
        with pytest.raises(IIIInvocationError) as caught:
            await iii.trigger_async({"function_id": "configuration::set", "payload": {"id": "iii-stream", "value": 1}})
        assert caught.value.code == "SCHEMA_INVALID"
        assert await iii.trigger_async(get) == {"id": "iii-stream", "value": {"port": 8080}}
    finally:
        await asyncio.to_thread(iii.shutdown)


async def test_deleting_the_stored_entry_fires_deleted(engine: Engine, connect: Connect) -> None:
    w = Worker("client")
    events = recorder(w, "on_change")
    w.register_trigger("configuration", "on_change", {"event_types": ["configuration:deleted"]})
    await connect(w)
    await w.trigger("configuration::register", stream_entry(initial_value={"port": 9}))
    await engine.storage.state.delete("__teamster::configuration", "iii-stream")  # as iii's TTL cleanup would

    await eventually(lambda: len(events) == 1)
    assert events == [
        {
            "type": "configuration",
            "event_type": "configuration:deleted",
            **stream_entry(),
            "old_value": {"port": 9},
            "new_value": None,
        }
    ]
    assert (await error_of(w, "configuration::get", {"id": "iii-stream"})).code == "NOT_FOUND"


async def test_always_on_and_accepts_iii_adapter_block(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("storage: memory\nworkers: [{name: iii-state}]\n")
    async with Engine(load_config(path)) as engine, Worker("local").attach(engine) as worker:
        assert await worker.trigger("configuration::list", {}) == {"configurations": []}

    path.write_text(
        "storage: memory\nworkers: [{name: configuration, config: {adapter: {name: fs, config: {directory: x}}}}]\n"
    )
    async with Engine(load_config(path)) as engine, Worker("local").attach(engine) as worker:
        assert await worker.trigger("configuration::list", {}) == {"configurations": []}
