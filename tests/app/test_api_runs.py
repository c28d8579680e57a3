"""`/runs`: starting runs of every pattern, their event pages, their status and totals, listing, validation."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from teamster.harness.contracts import Pricing
from teamster.patterns import pricing
from teamster.patterns.request import PATTERN_NAMES
from tests.app.conftest import Api
from tests.conftest import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESSAGE = "Write a haiku about teamwork."
TERMINAL = ("workflow_complete", "workflow_error")
VIEW_FIELDS = {  # RunView as docs/api.md lists it
    "budget_id",
    "run_id",
    "session_id",
    "pattern",
    "message",
    "backend",
    "provider",
    "model",
    "policy",
    "budget",
    "max_turns",
    "status",
    "created_at",
    "finished_at",
    "result",
    "error",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "event_count",
    "trace_id",
    "events_url",
    "pending_inputs",
    "pending_approvals",
}


@pytest.fixture(scope="module", autouse=True)
def _priced_scripted_model() -> Iterator[None]:
    """The scripted model is free in the catalog; price it so the cost totals are tested, not 0 == 0."""
    real = pricing.pricing
    priced = Pricing(input_per_1m=3.0, output_per_1m=15.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pricing, "pricing", lambda p, m: priced if p == "scripted" else real(p, m))
        yield


async def totals(api: Api) -> tuple[int, int]:
    """How many runs and conversations exist."""
    runs, sessions = await api.get("/runs"), await api.get("/sessions")
    return runs.body["total"], sessions.body["total"]


async def parked(api: Api, **fields: Any) -> tuple[str, dict[str, Any]]:
    """An engine run held on its first tool call (manual policy): its id and the `approval_request`."""
    run_id = await api.start(pattern="debate", backend="engine", policy="manual", caps={"debate_rounds": 1}, **fields)
    return run_id, await api.waiting(run_id, "approval_request")


@pytest.mark.parametrize("backend", ["inproc", "engine"])
@pytest.mark.parametrize("pattern", PATTERN_NAMES)
async def test_every_pattern_runs_to_completion_with_totals_summed(api: Api, pattern: str, backend: str) -> None:
    created = await api.post("/runs", {"pattern": pattern, "message": MESSAGE, "backend": backend})
    assert created.status == 202
    run_id, session_id = created.body["run_id"], created.body["session_id"]
    assert created.body == {"run_id": run_id, "session_id": session_id, "events_url": f"/runs/{run_id}/events"}

    events = await api.finish(run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["run_id"] for e in events} == {run_id}
    assert [e["type"] in TERMINAL for e in events].count(True) == 1
    start, done = events[0], events[-1]
    assert (start["type"], start["mode"], start["model"], start["query"]) == (
        "workflow_start",
        pattern,
        "scripted",
        MESSAGE,
    )
    assert done["type"] == "workflow_complete" and done["result"]

    view = (await api.get(f"/runs/{run_id}")).body
    ends = [e for e in events if e["type"] == "iteration_end"]
    assert ends and view["cost_usd"] > 0
    assert {k: view[k] for k in ("run_id", "session_id", "pattern", "backend", "status", "result", "error")} == {
        "run_id": run_id,
        "session_id": session_id,
        "pattern": pattern,
        "backend": backend,
        "status": "completed",
        "result": done["result"],
        "error": None,
    }
    assert (view["input_tokens"], view["output_tokens"]) == (
        sum(e["input_tokens"] for e in ends),
        sum(e["output_tokens"] for e in ends),
    )
    assert view["cost_usd"] == pytest.approx(sum(e["cost_usd"] for e in ends))
    assert view["event_count"] == len(events)
    assert view["finished_at"] >= view["created_at"]


async def test_a_run_view_is_the_documented_record(api: Api) -> None:
    session_id = f"view-{uuid.uuid4().hex}"
    run_id = await api.start(pattern="swarm", session_id=session_id, max_turns=3, caps={"swarm_size": 2})
    events = await api.finish(run_id)
    view = (await api.get(f"/runs/{run_id}")).body
    assert set(view) == VIEW_FIELDS, f"not in docs/api.md: {set(view) - VIEW_FIELDS}"
    assert view == {
        **{k: view[k] for k in ("created_at", "finished_at", "input_tokens", "output_tokens", "cost_usd", "trace_id")},
        "run_id": run_id,
        "session_id": session_id,
        "pattern": "swarm",
        "message": MESSAGE,
        "backend": "inproc",
        "provider": "scripted",
        "model": "scripted",
        "policy": "full",
        "budget": None,
        "budget_id": None,
        "max_turns": 3,
        "status": "completed",
        "result": events[-1]["result"],
        "error": None,
        "event_count": len(events),
        "events_url": f"/runs/{run_id}/events",
        "pending_inputs": [],
        "pending_approvals": [],
    }
    # The caps reached the pattern: two swarm agents, then the distiller.
    assert {e["agent"] for e in events if e["type"] == "iteration_start"} == {"agent 1", "agent 2", "distiller"}


async def test_event_pages_follow_a_cursor(api: Api) -> None:
    run_id = await api.start(pattern="debate", caps={"debate_rounds": 1})
    events = await api.finish(run_id)
    n = len(events)
    assert await api.page(run_id) == {"run_id": run_id, "events": events, "cursor": n, "done": True}
    assert await api.page(run_id, after=5) == {"run_id": run_id, "events": events[5:], "cursor": n, "done": True}
    # Past the end: nothing new, the cursor stays, and the terminal event precedes the page.
    assert await api.page(run_id, after=n) == {"run_id": run_id, "events": [], "cursor": n, "done": True}
    assert await api.page(run_id, after=n + 10) == {"run_id": run_id, "events": [], "cursor": n + 10, "done": True}

    bad = await api.get(f"/runs/{run_id}/events?after=-1")
    assert (bad.status, bad.body["code"]) == (400, "invalid_request")
    assert bad.body["error"].startswith("after: ")
    too_long = await api.get(f"/runs/{run_id}/events?wait=31")
    assert (too_long.status, too_long.body["error"].split(":")[0]) == (400, "wait")


async def test_a_live_run_pages_as_not_done_and_wait_holds_for_its_next_event(api: Api) -> None:
    run_id, asked = await parked(api)
    seq = asked["seq"]
    page = await api.page(run_id)
    assert (page["cursor"], page["done"], page["events"][-1]) == (seq, False, asked)

    loop = asyncio.get_running_loop()
    began = loop.time()
    quiet = await api.page(run_id, after=seq, wait=0.3)
    assert loop.time() - began >= 0.3  # held for the whole wait: nothing happened
    assert quiet == {"run_id": run_id, "events": [], "cursor": seq, "done": False}

    held = asyncio.create_task(api.page(run_id, after=seq, wait=30))
    decided = await api.post(f"/runs/{run_id}/approvals/{asked['call_id']}", {"decision": "allow"})
    assert decided.status == 200
    async with asyncio.timeout(10):  # the new event ends the wait, long before its 30 s
        woken = await held
    assert woken["events"][0]["type"] == "approval_resolved" and woken["events"][0]["seq"] == seq + 1
    assert (await api.post(f"/runs/{run_id}/abort")).status == 200


async def test_list_runs_newest_first_filtered_by_session_and_status(api: Api) -> None:
    session_id = f"list-{uuid.uuid4().hex}"
    first = await api.start(pattern="debate", session_id=session_id)
    await api.finish(first)
    second = await api.start(pattern="swarm", session_id=session_id)
    await api.finish(second)
    third, _ = await parked(api, session_id=session_id)

    async def listed(query: str) -> tuple[list[str], int]:
        reply = await api.get(f"/runs?session_id={session_id}{query}")
        assert reply.status == 200, reply.body
        return [r["run_id"] for r in reply.body["runs"]], reply.body["total"]

    assert await listed("") == ([third, second, first], 3)
    assert await listed("&status=running") == ([third], 1)
    assert await listed("&status=completed") == ([second, first], 2)
    assert await listed("&limit=1") == ([third], 3)
    everyone = (await api.get("/runs?status=running&limit=500")).body
    assert third in [r["run_id"] for r in everyone["runs"]]
    assert {r["status"] for r in everyone["runs"]} == {"running"}

    assert (await api.post(f"/runs/{third}/abort")).status == 200
    assert await listed("&status=aborted") == ([third], 1)
    assert await listed("&status=running") == ([], 0)

    for query, field in (("?status=paused", "status"), ("?limit=0", "limit"), ("?limit=501", "limit")):
        bad = await api.get(f"/runs{query}")
        assert (bad.status, bad.body["code"], bad.body["error"].split(":")[0]) == (400, "invalid_request", field)


VALID = {"pattern": "debate", "message": "Should we use tabs?"}
INVALID = {
    "message missing": ({"pattern": "debate"}, "message: Field required"),
    "message blank": ({**VALID, "message": "  \n\t "}, "message: String should match pattern"),
    "message too long": ({**VALID, "message": "x" * 8001}, "message: String should have at most 8000 characters"),
    "history too long": (
        {**VALID, "history": [{"role": "user", "content": "hi"}] * 51},
        "history: List should have at most 50 items",
    ),
    "turn too long": (
        {**VALID, "history": [{"role": "user", "content": "x" * 20_001}]},
        "history.0.content: String should have at most 20000 characters",
    ),
    "turn role": ({**VALID, "history": [{"role": "system", "content": "x"}]}, "history.0.role: Input should be"),
    "unknown pattern": ({**VALID, "pattern": "chorus"}, "pattern: Input should be 'orchestrated', 'choreographed'"),
    "bad backend": ({**VALID, "backend": "cloud"}, "backend: Input should be 'inproc' or 'engine'"),
    "budget on inproc": (
        {**VALID, "budget": 0.05},
        "budget: budgets and approvals are enforced on the engine backend only",
    ),
    "manual policy on inproc": (
        {**VALID, "policy": "manual"},
        "policy: budgets and approvals are enforced on the engine backend only",
    ),
    "budget not positive": ({**VALID, "backend": "engine", "budget": 0}, "budget: Input should be greater than 0"),
    "max_turns too high": ({**VALID, "max_turns": 51}, "max_turns: Input should be less than or equal to 50"),
    "unknown cap": ({**VALID, "caps": {"rounds": 2}}, "caps.rounds: Extra inputs are not permitted"),
    "unknown field": ({**VALID, "colour": "blue"}, "colour: Extra inputs are not permitted"),
    "unknown provider": ({**VALID, "provider": "nope"}, "provider: unknown provider 'nope'"),
    "script not loaded": ({**VALID, "model": "scripted:missing"}, "model: no script named 'missing'"),
}


@pytest.mark.parametrize("case", INVALID)
async def test_an_invalid_run_request_is_refused_naming_the_field_and_creates_nothing(api: Api, case: str) -> None:
    body, error = INVALID[case]
    before = await totals(api)
    reply = await api.post("/runs", body)
    assert reply.status == 400
    assert reply.body == {"error": reply.body["error"], "code": "invalid_request"}
    assert reply.body["error"].startswith(error), reply.body["error"]
    assert await totals(api) == before


@pytest.mark.parametrize(
    ("content_type", "data"),
    [("application/json", '{"pattern": "debate", "message": "hi"'), ("text/plain", '{"pattern": "debate"}')],
    ids=["broken JSON", "not JSON"],
)
async def test_a_body_that_is_not_json_is_refused_as_the_body(api: Api, content_type: str, data: str) -> None:
    before = await totals(api)
    reply = await api.post("/runs", data=data, headers={"content-type": content_type})
    assert reply.status == 400
    assert reply.body["code"] == "invalid_request"
    # A client that sent `pattern` must not be told that `pattern` is missing: the body itself is the problem.
    assert reply.body["error"].startswith("body: "), reply.body["error"]
    assert await totals(api) == before


async def test_a_json_body_that_is_not_an_object_is_refused(api: Api) -> None:
    reply = await api.post("/runs", [VALID])
    assert reply.status == 400
    assert reply.body == {
        "error": "body: a JSON object is required, sent as Content-Type: application/json",
        "code": "invalid_request",
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/runs/no-such-run", None),
        ("GET", "/runs/no-such-run/events", None),
        ("GET", "/runs/no-such-run/trace", None),
        ("POST", "/runs/no-such-run/abort", None),
        ("POST", "/runs/no-such-run/input", {"request_id": "r1", "answer": "yes"}),
        ("POST", "/runs/no-such-run/approvals/c1", {"decision": "allow"}),
    ],
)
async def test_an_unknown_run_is_404(api: Api, method: str, path: str, body: Any) -> None:
    reply = await api.call(method, path, body)
    assert (reply.status, reply.body) == (404, {"error": "no run no-such-run", "code": "run_not_found"})


async def test_a_runs_trace_holds_its_agents_spans_under_the_api_call(api: Api) -> None:
    run_id = await api.start(pattern="debate", backend="engine", caps={"debate_rounds": 1})
    await api.finish(run_id)
    view = (await api.get(f"/runs/{run_id}")).body
    trees: list[dict[str, Any]] = []

    async def exported() -> bool:
        """Workers export spans in batches, a moment after each ends: a child may come before its parent."""
        trees.append((await api.get(f"/runs/{run_id}/trace")).body)
        roots = trees[-1]["roots"]
        return [r["name"] for r in roots] == ["app::runs::create"] and "provider::scripted::stream" in _names(roots)

    with contextlib.suppress(AssertionError):  # the assertions below say what is missing
        await eventually(exported, timeout=10, interval=0.1)
    tree = trees[-1]
    assert [r["name"] for r in tree["roots"]] == ["app::runs::create"]
    assert "provider::scripted::stream" in _names(tree["roots"])
    assert tree["trace_id"] == view["trace_id"]
    assert tree["span_count"] == len(_names(tree["roots"]))


def _names(spans: list[dict[str, Any]]) -> list[str]:
    return [name for span in spans for name in [span["name"], *_names(span["children"])]]


# ---- Idempotency-Key ------------------------------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_gets_the_same_run(api: Api) -> None:
    key = {"idempotency-key": f"retry-{uuid.uuid4()}"}
    body = {"pattern": "debate", "message": MESSAGE, "caps": {"debate_rounds": 1}}
    runs_before = (await api.get("/runs")).body["total"]
    first = await api.post("/runs", body, headers=key)
    again = await api.post("/runs", body, headers=key)
    assert (first.status, again.status) == (202, 200)
    assert again.body == first.body
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert (await api.get("/runs")).body["total"] == runs_before + 1
    await api.finish(first.body["run_id"])
    assert (await api.post("/runs", body, headers=key)).body == first.body  # and after it has finished


async def test_concurrent_posts_with_one_idempotency_key_start_one_run(api: Api) -> None:
    key = {"idempotency-key": f"burst-{uuid.uuid4()}"}
    body = {"pattern": "debate", "message": MESSAGE, "caps": {"debate_rounds": 1}}
    runs_before = (await api.get("/runs")).body["total"]
    replies = await asyncio.gather(*(api.post("/runs", body, headers=key) for _ in range(10)))
    assert sorted(reply.status for reply in replies) == [200] * 9 + [202]
    assert len({reply.body["run_id"] for reply in replies}) == 1
    assert (await api.get("/runs")).body["total"] == runs_before + 1
    await api.finish(replies[0].body["run_id"])


async def test_an_idempotency_key_reused_with_another_body_is_refused(api: Api) -> None:
    key = {"idempotency-key": f"reused-{uuid.uuid4()}"}
    body = {"pattern": "debate", "message": MESSAGE, "caps": {"debate_rounds": 1}}
    first = await api.post("/runs", body, headers=key)
    assert first.status == 202
    before = await totals(api)
    other = await api.post("/runs", {"pattern": "debate", "message": "Another question"}, headers=key)
    assert other.status == 422
    assert other.body["code"] == "idempotency_key_reused"
    assert first.body["run_id"] in other.body["error"]
    assert await totals(api) == before
    blank = await api.post("/runs", VALID, headers={"idempotency-key": " "})
    assert (blank.status, blank.body["code"]) == (400, "invalid_request")
    assert blank.body["error"].startswith("Idempotency-Key: ")
    await api.finish(first.body["run_id"])
