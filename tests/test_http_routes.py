"""No route takeover on `iii-http`: a bound route stays its function's, and reserved routes stay out of reach.

Real engine, workers over the WebSocket, real HTTP requests.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from teamster.app.worker import AppWorker
from teamster.engine.config import ConfigError
from teamster.engine.engine import Engine
from teamster.sdk import InvocationError, Worker
from tests.conftest import Connect, engine_config, eventually
from tests.test_http import serve

CONFLICT = "conflicts with already-registered route"


async def refusal_of(worker: Worker, caplog: pytest.LogCaptureFixture, function_id: str, config: Any) -> str:
    """Register an `http` trigger that the engine is expected to refuse; the refusal the worker logged."""
    worker.register_function(function_id, lambda req: {"body": "taken over"})
    with caplog.at_level(logging.ERROR, logger="teamster.sdk"):
        binding_id = worker.register_trigger("http", function_id, config)
        await eventually(lambda: f"trigger {binding_id}" in caplog.text)
    [line] = [r.getMessage() for r in caplog.records if f"trigger {binding_id}" in r.getMessage()]
    listed = await worker.trigger("engine::registered-triggers::list", {})
    assert binding_id not in [t["id"] for t in listed["registered_triggers"]]
    return line


async def durable_refusal(worker: Worker, function_id: str, config: Any) -> str:
    """`engine::register_trigger` for an `http` route that the engine is expected to refuse; its message."""
    with pytest.raises(InvocationError) as caught:
        await worker.trigger(
            "engine::register_trigger", {"trigger_type": "http", "function_id": function_id, "config": config}
        )
    assert caught.value.code == "trigger_registration_failed"
    return caught.value.message


async def test_another_function_cannot_take_a_bound_route(
    engine: Engine, connect: Connect, http_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner, intruder = await connect(Worker("owner")), await connect(Worker("intruder"))
    await serve(engine, owner, "owner::keys", lambda req: {"body": "owner"}, api_path="keys", http_method="PUT")
    await serve(engine, owner, "owner::item", lambda req: {"body": req["path_params"]}, api_path="items/:list/:user")

    same = await refusal_of(intruder, caplog, "intruder::keys", {"api_path": "/keys", "http_method": "put"})
    assert CONFLICT in same and "owner::keys" in same
    shape = await refusal_of(intruder, caplog, "intruder::item", {"api_path": "items/:user/:list"})
    assert CONFLICT in shape
    assert CONFLICT in await durable_refusal(intruder, "intruder::keys", {"api_path": "keys", "http_method": "PUT"})

    async with aiohttp.ClientSession() as http:
        async with http.put(f"{http_url}/keys", json={"key": "sk-1"}) as resp:
            assert await resp.json() == "owner"
        async with http.get(f"{http_url}/items/a/b") as resp:
            assert await resp.json() == {"list": "a", "user": "b"}
        await serve(engine, intruder, "intruder::other", lambda req: {"body": "mine"}, api_path="keys")  # a GET
        async with http.get(f"{http_url}/keys") as resp:
            assert await resp.json() == "mine"

        await owner.close()  # its routes go with it, and are free to bind
        await serve(engine, intruder, "intruder::put", lambda req: {"body": "next"}, api_path="keys", http_method="PUT")
        async with http.put(f"{http_url}/keys") as resp:
            assert await resp.json() == "next"


async def test_the_apps_routes_are_reserved_while_the_app_is_away(caplog: pytest.LogCaptureFixture) -> None:
    config = engine_config()
    AppWorker().reserve_routes(config)  # as `teamster up` does; this app never connects
    async with Engine(config) as engine:
        url = f"ws://127.0.0.1:{engine.ports['ws']}"
        async with Worker("intruder").connect(url, wait=5) as intruder:
            for n, (method, path) in enumerate([("GET", "credentials"), ("PUT", ":a/:b"), ("GET", ":anything")]):
                route = {"api_path": path, "http_method": method}
                assert "reserved for functions app::*" in await refusal_of(intruder, caplog, f"intruder::{n}", route)
            route = {"api_path": "credentials/:p", "http_method": "PUT"}
            assert "reserved for functions app::*" in await durable_refusal(intruder, "intruder::x", route)
            await serve(engine, intruder, "intruder::own", lambda req: {"body": "ok"}, api_path="intruder/stuff")


async def test_a_malformed_reservation_stops_the_engine_with_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"reserved_routes: .*'credentials' is not `METHOD path`"):
        async with Engine(engine_config(iii_http={"reserved_routes": {"app::": ["credentials"]}})):
            pass
