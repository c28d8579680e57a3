"""`GET /runs/{id}/events` as Server-Sent Events: framing, headers, live following, resuming, keep-alives."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.app.conftest import Api, AppServer, Frame, event_frames, frames, read_sse

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEEPALIVE_S = 0.2
PARKED = {"pattern": "debate", "backend": "engine", "policy": "manual", "caps": {"debate_rounds": 1}}
EVENT_FRAME = re.compile(r"id: (\d+)\ndata: (\{.*\})")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AppServer]:
    """Keep-alives every 0.2 s instead of 15, so a quiet stream shows them at once."""
    async with AppServer(tmp_path_factory.mktemp("app"), keepalive_s=KEEPALIVE_S) as running:
        yield running


async def next_event(stream: AsyncIterator[Frame]) -> Frame:
    """The next frame that is an event, past any comments."""
    async for frame in stream:
        if frame.comment is None:
            return frame
    raise AssertionError("the stream closed")


def pairs(found: list[Frame]) -> list[tuple[int | None, dict[str, Any] | None]]:
    return [(f.id, f.data) for f in event_frames(found)]


async def test_a_stream_frames_every_event_and_closes_after_the_last(api: Api) -> None:
    run_id = await api.start(pattern="debate", caps={"debate_rounds": 1})
    async with api.sse(f"/runs/{run_id}/events") as response:
        assert response.status == 200
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        assert response.headers["cache-control"].split(",")[0] == "no-cache"
        raw = (await response.read()).decode()  # returns only once the server closes the stream
    stored = (await api.page(run_id))["events"]
    assert stored[-1]["type"] == "workflow_complete"
    blocks = raw.split("\n\n")
    assert blocks[-1] == "", "the stream ends with a whole frame"
    sent = []
    for block in blocks[:-1]:
        if block.startswith(":"):
            continue  # a comment
        match = EVENT_FRAME.fullmatch(block)
        assert match, f"not an `id:` + `data:` frame: {block!r}"
        sent.append((int(match[1]), json.loads(match[2])))
    assert sent == [(e["seq"], e) for e in stored]


async def test_a_stream_follows_a_live_run_to_its_end(api: Api) -> None:
    run_id = await api.start(**PARKED)
    async with api.sse(f"/runs/{run_id}/events") as response:
        stream = frames(response)
        seen = [await next_event(stream)]
        while seen[-1].data is not None and seen[-1].data["type"] != "workflow_complete":
            if seen[-1].data["type"] == "approval_request":
                reply = await api.post(f"/runs/{run_id}/approvals/{seen[-1].data['call_id']}", {"decision": "allow"})
                assert reply.status == 200
            seen.append(await next_event(stream))
        assert [f async for f in stream if f.comment is None] == []  # nothing after the terminal event: closed
    stored = (await api.page(run_id))["events"]
    assert [(f.id, f.data) for f in seen] == [(e["seq"], e) for e in stored]
    assert [e["type"] for e in stored].count("approval_resolved") == 3


@pytest.mark.parametrize("resume", ["Last-Event-ID", "after"])
async def test_a_stream_resumes_after_the_last_event_seen(api: Api, resume: str) -> None:
    run_id = await api.start(pattern="debate", caps={"debate_rounds": 1})
    stored = await api.finish(run_id)
    n = len(stored)
    for seen in (0, 1, 7, n - 1, n):
        headers, query = ({"last-event-id": str(seen)}, "") if resume == "Last-Event-ID" else ({}, f"?after={seen}")
        async with api.sse(f"/runs/{run_id}/events{query}", headers) as response:
            assert response.status == 200
            assert pairs(await read_sse(response)) == [(e["seq"], e) for e in stored[seen:]]


async def test_a_reconnecting_reader_misses_nothing_and_sees_nothing_twice(api: Api) -> None:
    run_id = await api.start(**PARKED)
    async with api.sse(f"/runs/{run_id}/events") as response:
        stream = frames(response)
        before = [await next_event(stream)]
        while before[-1].data is not None and before[-1].data["type"] != "approval_request":
            before.append(await next_event(stream))
    # Gone: the call is decided and the run moves on while nobody listens.
    asked = before[-1].data
    assert asked is not None
    assert (await api.post(f"/runs/{run_id}/approvals/{asked['call_id']}", {"decision": "allow"})).status == 200
    after: list[Frame] = []
    last = str(before[-1].id)
    while not after or after[-1].data is None or after[-1].data["type"] != "workflow_complete":
        async with api.sse(f"/runs/{run_id}/events", {"last-event-id": last}) as response:
            stream = frames(response)
            after.append(await next_event(stream))
            assert after[-1].data is not None
            if after[-1].data["type"] == "approval_request":
                call = after[-1].data["call_id"]
                assert (await api.post(f"/runs/{run_id}/approvals/{call}", {"decision": "allow"})).status == 200
            last = str(after[-1].id)  # read one event per connection, then reconnect
    stored = (await api.page(run_id))["events"]
    assert [(f.id, f.data) for f in before + after] == [(e["seq"], e) for e in stored]


async def test_a_quiet_stream_sends_keepalive_comments(api: Api) -> None:
    run_id = await api.start(**PARKED)
    asked = await api.waiting(run_id, "approval_request")
    async with api.sse(f"/runs/{run_id}/events") as response:
        stream = frames(response)
        while (await next_event(stream)).id != asked["seq"]:
            pass
        quiet = [await anext(stream), await anext(stream)]  # the run is parked: only keep-alives flow
        assert [(f.comment, f.id, f.data) for f in quiet] == [("keepalive", None, None)] * 2
        assert (await api.post(f"/runs/{run_id}/abort")).status == 200
        rest = event_frames([f async for f in stream])
    assert [(f.id, (f.data or {}).get("error")) for f in rest] == [(asked["seq"] + 1, "run aborted")]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "7 8"])
async def test_a_malformed_last_event_id_is_400(api: Api, value: str) -> None:
    run_id = await api.start(pattern="debate", caps={"debate_rounds": 1})
    reply = await api.get(f"/runs/{run_id}/events", headers={"accept": "text/event-stream", "last-event-id": value})
    assert reply.status == 400
    assert reply.body == {"error": f"Last-Event-ID: {value!r} is not an event seq", "code": "invalid_request"}


async def test_a_stream_of_an_unknown_run_is_404_json(api: Api) -> None:
    reply = await api.get("/runs/no-such-run/events", headers={"accept": "text/event-stream"})
    assert (reply.status, reply.body) == (404, {"error": "no run no-such-run", "code": "run_not_found"})


async def test_a_reader_that_leaves_does_not_stop_the_run(api: Api, server: AppServer) -> None:
    run_id = await api.start(**PARKED)
    asked = await api.waiting(run_id, "approval_request")
    async with aiohttp.ClientSession() as other:
        reader = Api(other, server.url, server.token)
        async with reader.sse(f"/runs/{run_id}/events") as response:
            assert (await next_event(frames(response))).id == 1
    view = (await api.get(f"/runs/{run_id}")).body
    assert (view["status"], [p["call_id"] for p in view["pending_approvals"]]) == ("running", [asked["call_id"]])
    assert (await api.post(f"/runs/{run_id}/abort")).body == {"ok": True, "status": "aborted"}
