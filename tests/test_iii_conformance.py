"""Where teamster behaved unlike iii (issue 22), each seen with the official `iii-sdk` against a real engine process."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from iii import register_worker
from iii.iii import III
from iii.types import StreamRequest, StreamResponse
from iii_helpers.http import http

from tests.conftest import eventually
from tests.engine_proc import EngineProcess
from tests.test_iii_sdk_compat import iii_options

pytestmark = pytest.mark.slow


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path / "data", storage="memory").start()
    yield proc
    proc.stop()


@pytest.fixture
async def iii_client(engine_proc: EngineProcess) -> AsyncIterator[III]:
    client = await asyncio.to_thread(register_worker, engine_proc.ws_url, iii_options("conformance"))
    yield client
    await asyncio.to_thread(client.shutdown)


async def bind_route(client: III, function_id: str, path: str, handler: Any, method: str = "POST") -> None:
    client.register_function(function_id, handler)
    await asyncio.to_thread(
        client.trigger,
        {
            "function_id": "engine::register_trigger",
            "payload": {
                "trigger_type": "http",
                "function_id": function_id,
                "config": {"api_path": path, "http_method": method},
            },
        },
    )


async def served(url: str, **request: Any) -> tuple[int, Any]:
    """POST to a route until it is bound (404 before), then its status and JSON body."""
    answer: list[tuple[int, Any]] = []

    async def attempt() -> bool:
        async with aiohttp.ClientSession() as session, session.post(url, **request) as resp:
            if resp.status == 404:
                return False
            answer.append((resp.status, await resp.json(content_type=None)))
            return True

    await eventually(attempt, timeout=10)
    return answer[0]


async def test_a_json_body_reaches_the_handler_parsed_and_raw(engine_proc: EngineProcess, iii_client: III) -> None:
    """A webhook's signature is over the bytes sent, which the parsed body cannot give back."""
    raw = '{"z":2,  "a":1}'

    @http
    async def verify(req: StreamRequest, response: StreamResponse) -> None:
        body = (await req.request_body.read_all()).decode()
        await response.status(200)
        await response.headers({"content-type": "application/json"})
        reply = {"parsed": req.body, "sha256": hashlib.sha256(body.encode()).hexdigest()}
        await response.writer.write(json.dumps(reply).encode())
        await response.writer.close_async()

    await bind_route(iii_client, "conformance::verify", "hook", verify)
    status, body = await served(f"{engine_proc.http_url}/hook", data=raw, headers={"content-type": "application/json"})
    assert status == 200
    assert body == {"parsed": {"z": 2, "a": 1}, "sha256": hashlib.sha256(raw.encode()).hexdigest()}


async def test_registered_triggers_are_listed_under_registered_triggers(
    engine_proc: EngineProcess, iii_client: III
) -> None:
    await bind_route(iii_client, "conformance::listed", "listed", lambda req: {"body": "ok"})
    listing = await asyncio.to_thread(
        iii_client.trigger, {"function_id": "engine::registered-triggers::list", "payload": {}}
    )
    assert "triggers" not in listing
    assert "conformance::listed" in [row["function_id"] for row in listing["registered_triggers"]]


async def test_stream_update_takes_a_merge_path_as_a_list_of_literal_segments(iii_client: III) -> None:
    def update(ops: list[dict[str, Any]]) -> Any:
        payload = {"stream_name": "docs", "group_id": "g", "item_id": "i", "ops": ops}
        return iii_client.trigger({"function_id": "stream::update", "payload": payload})

    await asyncio.to_thread(update, [{"type": "set", "path": "", "value": {}}])
    result = await asyncio.to_thread(
        update,
        [
            {"type": "merge", "path": ["meta", "a.b"], "value": {"x": 1}},
            {"type": "merge", "path": "meta", "value": {"y": 2}},
            {"type": "merge", "path": [], "value": {"top": True}},
        ],
    )
    assert result["new_value"] == {"meta": {"a.b": {"x": 1}, "y": 2}, "top": True}
    assert not result.get("errors")


async def test_a_handler_that_returns_nothing_is_answered_with_what_it_streamed(
    engine_proc: EngineProcess, iii_client: III
) -> None:
    """Its result can reach the engine before its channel socket does; the response is still what it streams."""
    streams: set[asyncio.Task[None]] = set()

    async def stream(raw: str, response: StreamResponse) -> None:
        await response.status(201)
        await response.headers({"content-type": "application/json"})
        await response.writer.write(json.dumps({"form": raw}).encode())
        await response.writer.close_async()

    @http
    async def echo_form(req: StreamRequest, response: StreamResponse) -> None:
        raw = (await req.request_body.read_all()).decode()
        task = asyncio.get_running_loop().create_task(stream(raw, response))  # answered after it returns
        streams.add(task)
        task.add_done_callback(streams.discard)

    await bind_route(iii_client, "conformance::form", "form", echo_form)
    form = urlencode({"name": "Ada", "n": 1})
    answer = await served(
        f"{engine_proc.http_url}/form", data=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert answer == (201, {"form": form})
