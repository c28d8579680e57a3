"""`teamster up` as a process: runs outlive a restart, a run cut off by a stop or a kill is closed on the next
start, and without `TEAMSTER_TOKEN` it will not listen beyond this machine."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from teamster.engine.config import DEFAULT_WORKERS
from tests.app.conftest import TOKEN, Api, UpProcess, event_frames, read_sse

pytestmark = pytest.mark.slow

STOPPED = "teamster stopped while the run was in progress"
PARKED = {"pattern": "debate", "backend": "engine", "policy": "manual", "caps": {"debate_rounds": 1}}


def wildcard_config(path: Path, *, every_worker: bool) -> Path:
    """A config whose HTTP listener binds 0.0.0.0: alone, or with every other default worker."""
    workers: list[dict[str, Any]] = [{"name": "iii-http", "config": {"host": "0.0.0.0", "port": 0}}]
    if every_worker:
        workers = [{"name": n} for n in DEFAULT_WORKERS if n != "iii-http"] + workers
    path.write_text(yaml.safe_dump({"workers": workers}))
    return path


async def test_an_open_stream_socket_without_an_auth_function_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "teamster.yaml"
    config.write_text(yaml.safe_dump({"workers": [{"name": "iii-stream", "config": {"host": "0.0.0.0", "port": 0}}]}))
    up = UpProcess(tmp_path, "--config", str(config), "--storage", "memory", env={"TEAMSTER_TOKEN": "a-secret"})
    assert await up.run() == 2  # the token guards the run API, not this socket
    errors = [line for line in up.output.splitlines() if line.startswith("error:")]
    assert "Traceback" not in up.output
    assert errors == [
        "error: iii-stream listens on 0.0.0.0, beyond this machine, with no credential check: "
        "give it an auth_function (TEAMSTER_TOKEN does not guard this socket), or listen on 127.0.0.1"
    ], up.output


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_wildcard_listener_without_a_token_is_refused(tmp_path: Path) -> None:
    config = wildcard_config(tmp_path / "teamster.yaml", every_worker=False)
    up = UpProcess(tmp_path, "--config", str(config), "--storage", "memory", env={"TEAMSTER_TOKEN": ""})
    assert await up.run() == 2
    lines = [line for line in up.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "TEAMSTER_TOKEN" in lines[0], up.output
    assert "0.0.0.0" in lines[0]


async def test_runs_outlive_restarts_and_cut_off_runs_are_closed(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """With the token it listens on 0.0.0.0; a stop (SIGTERM) and a kill (SIGKILL) each cut off a parked run."""
    config = wildcard_config(tmp_path / "teamster.yaml", every_worker=True)
    args = ("--config", str(config), "--storage", "sqlite", "--data-dir", str(tmp_path / "data"))

    async def up() -> tuple[UpProcess, Api]:
        started = await UpProcess(tmp_path, *args, env={"TEAMSTER_TOKEN": TOKEN}).start()
        return started, Api(http, started.url, TOKEN)

    first, api = await up()
    assert (await api.get("/runs", auth=False)).status == 401  # the token guards the wildcard listener
    finished = await api.start(pattern="debate", caps={"debate_rounds": 1})
    finished_events = await api.finish(finished)
    finished_view = (await api.get(f"/runs/{finished}")).body
    stopped, stopped_seen = await park(api)
    assert await first.stop(signal.SIGTERM) == 0, first.output

    second, api = await up()
    assert await api.page(finished) == {
        "run_id": finished,
        "events": finished_events,
        "cursor": len(finished_events),
        "done": True,
    }
    assert (await api.get(f"/runs/{finished}")).body == finished_view
    await assert_closed(api, stopped, stopped_seen)
    killed, killed_seen = await park(api)
    assert await second.stop(signal.SIGKILL) == -signal.SIGKILL

    third, api = await up()
    await assert_closed(api, killed, killed_seen)
    await assert_closed(api, stopped, stopped_seen)  # closed once, not again
    listed = (await api.get("/runs?status=interrupted")).body
    assert sorted(r["run_id"] for r in listed["runs"]) == sorted([stopped, killed])
    assert await third.stop(signal.SIGTERM) == 0, third.output
    assert "Traceback" not in first.output + second.output + third.output


async def park(api: Api) -> tuple[str, list[dict[str, Any]]]:
    """A run waiting on a person's approval, and its events so far."""
    run_id = await api.start(**PARKED)
    await api.waiting(run_id, "approval_request")
    events = (await api.page(run_id))["events"]
    assert events[-1]["type"] == "approval_request"
    return run_id, events


async def assert_closed(api: Api, run_id: str, seen: list[dict[str, Any]]) -> None:
    """The run is `interrupted`, its events are what was seen plus a final `workflow_error`, and readers end."""
    view = (await api.get(f"/runs/{run_id}")).body
    assert (view["status"], view["error"], view["pending_approvals"]) == ("interrupted", STOPPED, [])
    assert view["finished_at"] is not None and view["event_count"] == len(seen) + 1
    page = await api.page(run_id)
    assert page["done"] is True and page["events"][: len(seen)] == seen
    last = page["events"][len(seen) :]
    assert [(e["type"], e["seq"], e["error"], e["run_id"]) for e in last] == [
        ("workflow_error", len(seen) + 1, STOPPED, run_id)
    ]
    async with api.sse(f"/runs/{run_id}/events") as response:
        assert [f.data for f in event_frames(await read_sse(response))] == page["events"]  # and then it closed
    decided = await api.post(f"/runs/{run_id}/approvals/{seen[-1]['call_id']}", {"decision": "allow"})
    assert (decided.status, decided.body["code"]) == (409, "run_finished")


async def test_an_idempotency_key_holds_across_a_restart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    args = ("--storage", "sqlite", "--data-dir", str(tmp_path / "data"))
    body = {"pattern": "debate", "message": "Tabs or spaces?", "caps": {"debate_rounds": 1}}
    key = {"idempotency-key": "order-42"}
    first = await UpProcess(tmp_path, *args).start()
    api = Api(http, first.url)
    created = await api.post("/runs", body, headers=key)
    assert created.status == 202
    await api.finish(created.body["run_id"])
    assert await first.stop(signal.SIGTERM) == 0, first.output

    second = await UpProcess(tmp_path, *args).start()
    try:
        api = Api(http, second.url)
        again = await api.post("/runs", body, headers=key)
        assert (again.status, again.body) == (200, created.body)
        assert (await api.get("/runs")).body["total"] == 1
    finally:
        await second.stop(signal.SIGTERM)
