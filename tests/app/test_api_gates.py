"""Acting on a live run: approving or denying parked tool calls, answering input requests, aborting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.app.conftest import Api, AppServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEBATE = {"pattern": "debate", "backend": "engine", "policy": "manual", "caps": {"debate_rounds": 1}}
CALLS = [("Affirmative", "pattern::argue"), ("Opposing", "pattern::argue"), ("Judge", "pattern::verdict")]
APPROVAL_FIELDS = ("call_id", "session_id", "agent", "function_id", "arguments")


API_TRIALS = 10


def waiting_call(event: dict[str, Any]) -> dict[str, Any]:
    """An `approval_request` as `pending_approvals` lists it."""
    return {k: event[k] for k in APPROVAL_FIELDS}


def ask(question: str) -> dict[str, Any]:
    """A scripted coordinator turn that asks the human."""
    return {"function_calls": [{"function_id": "pattern::requestUserInput", "arguments": {"question": question}}]}


async def decide_each(api: Api, run_id: str, decision: dict[str, Any], after: int = 0) -> list[dict[str, Any]]:
    """Decide every call parked after event `after`, as each is announced, checking it is listed while it
    waits; the run's events once it ends."""
    while True:
        events = await api.events_until(run_id, lambda e: e["type"] == "approval_request", after)
        asked = next((e for e in events if e["type"] == "approval_request"), None)
        if asked is None:
            return await api.finish(run_id)
        pending = waiting_call(asked)
        assert (await api.get(f"/runs/{run_id}")).body["pending_approvals"] == [pending]
        assert {**pending, "run_id": run_id} in (await api.get("/approvals")).body["approvals"]
        reply = await api.post(f"/runs/{run_id}/approvals/{asked['call_id']}", decision)
        assert (reply.status, reply.body) == (
            200,
            {"ok": True, "call_id": asked["call_id"], "decision": decision["decision"].replace("approve", "allow")},
        )
        after = asked["seq"]


def approvals(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["type"], e["call_id"], e.get("agent"), e.get("function_id"), e.get("decision"), e.get("reason"))
        for e in events
        if e["type"] in ("approval_request", "approval_resolved")
    ]


async def test_manual_policy_parks_every_call_until_a_person_allows_it(api: Api) -> None:
    run_id = await api.start(**DEBATE)
    events = await decide_each(api, run_id, {"decision": "approve"})  # `approve` is taken as `allow`
    calls = [e for e in events if e["type"] == "approval_request"]
    assert [(c["agent"], c["function_id"]) for c in calls] == CALLS
    assert approvals(events) == [
        row
        for c in calls
        for row in (
            ("approval_request", c["call_id"], c["agent"], c["function_id"], None, None),
            ("approval_resolved", c["call_id"], None, None, "allow", None),
        )
    ]
    assert calls[0]["arguments"] == {"argument": "example"}
    assert events[-1]["type"] == "workflow_complete"
    assert [t["argument"] for t in events[-1]["summary"]["turns"]] == ["example", "example"]  # the tools ran
    view = (await api.get(f"/runs/{run_id}")).body
    assert (view["status"], view["pending_approvals"]) == ("completed", [])
    assert run_id not in {row["run_id"] for row in (await api.get("/approvals")).body["approvals"]}
    late = await api.post(f"/runs/{run_id}/approvals/{calls[-1]['call_id']}", {"decision": "allow"})
    assert (late.status, late.body) == (409, {"error": f"run {run_id} is completed", "code": "run_finished"})


async def test_a_denied_call_does_not_run_and_the_run_goes_on(api: Api) -> None:
    run_id = await api.start(**DEBATE)
    events = await decide_each(api, run_id, {"decision": "deny", "reason": "not today"})
    resolved = [e for e in events if e["type"] == "approval_resolved"]
    assert [(e["decision"], e["reason"]) for e in resolved] == [("deny", "not today")] * 3
    assert events[-1]["type"] == "workflow_complete"
    # No argument was recorded: each debater's turn is its text after the refusal, not the tool's argument.
    assert [t["argument"] for t in events[-1]["summary"]["turns"]] == ["Done: called 1 function(s)."] * 2


async def test_parallel_agents_each_wait_for_their_own_approval(api: Api) -> None:
    run_id = await api.start(pattern="self_consistency", backend="engine", policy="manual", caps={"samples": 2})
    asked: list[dict[str, Any]] = []
    while len(asked) < 2:  # both samples run at once, so both park
        after = asked[-1]["seq"] if asked else 0
        events = await api.events_until(run_id, lambda e: e["type"] == "approval_request", after)
        assert events[-1]["type"] not in ("workflow_complete", "workflow_error"), events[-1]
        asked += [e for e in events if e["type"] == "approval_request"]
    pending = (await api.get(f"/runs/{run_id}")).body["pending_approvals"]
    assert sorted(p["agent"] for p in pending) == ["sample 1", "sample 2"]
    assert {p["call_id"]: p for p in pending} == {e["call_id"]: waiting_call(e) for e in asked}
    assert len({p["session_id"] for p in pending}) == 2
    for p in pending:
        assert (await api.post(f"/runs/{run_id}/approvals/{p['call_id']}", {"decision": "allow"})).status == 200
    events = await decide_each(api, run_id, {"decision": "allow"}, after=asked[-1]["seq"])
    assert events[-1]["type"] == "workflow_complete"
    assert [e["type"] for e in events].count("sample") == 2


async def test_deciding_what_is_not_waiting(api: Api) -> None:
    run_id = await api.start(**DEBATE)
    asked = await api.waiting(run_id, "approval_request")
    unknown = await api.post(f"/runs/{run_id}/approvals/no-such-call", {"decision": "allow"})
    assert (unknown.status, unknown.body) == (
        404,
        {"error": f"run {run_id} has no call no-such-call waiting for approval", "code": "approval_not_found"},
    )
    bad = await api.post(f"/runs/{run_id}/approvals/{asked['call_id']}", {"decision": "maybe"})
    assert (bad.status, bad.body["code"]) == (400, "invalid_request")
    assert bad.body["error"].startswith("decision: Input should be 'allow' or 'deny'")
    assert (await api.get(f"/runs/{run_id}")).body["pending_approvals"] != []  # neither touched the call

    assert (await api.post(f"/runs/{run_id}/abort")).status == 200
    late = await api.post(f"/runs/{run_id}/approvals/{asked['call_id']}", {"decision": "allow"})
    assert (late.status, late.body) == (409, {"error": f"run {run_id} is aborted", "code": "run_finished"})


@pytest.mark.parametrize("backend", ["engine", "inproc"])
async def test_an_input_request_waits_for_the_answer(api: Api, server: AppServer, backend: str) -> None:
    model = await server.load(f"ask-{backend}", {"coordinator": [[ask("Which audience?")], [ask("How long?")]]})
    run_id = await api.start(pattern="orchestrated", backend=backend, model=model)
    first = await api.waiting(run_id, "input_request")
    assert (first["agent"], first["question"]) == ("coordinator", "Which audience?")
    pending = {"request_id": first["request_id"], "agent": "coordinator", "question": "Which audience?"}
    assert (await api.get(f"/runs/{run_id}")).body["pending_inputs"] == [pending]

    answered = await api.post(f"/runs/{run_id}/input", {"request_id": first["request_id"], "answer": "developers"})
    assert (answered.status, answered.body) == (200, {"ok": True})
    second = await api.waiting(run_id, "input_request", first["seq"])
    again = await api.post(f"/runs/{run_id}/input", {"request_id": first["request_id"], "answer": "managers"})
    assert (again.status, again.body) == (
        404,
        {"error": f"run {run_id} has no open input request {first['request_id']}", "code": "input_not_found"},
    )
    assert (await api.post(f"/runs/{run_id}/input", {"request_id": second["request_id"], "answer": "short"})).body == {
        "ok": True
    }

    events = await api.finish(run_id)
    resolved = [(e["request_id"], e["answer"], e["timed_out"]) for e in events if e["type"] == "input_resolved"]
    assert resolved == [(first["request_id"], "developers", False), (second["request_id"], "short", False)]
    bus = [e["content"] for e in events if e["type"] == "bus_message" and e["from"] == "user"]
    assert bus[1:] == ['Answer to "Which audience?": developers', 'Answer to "How long?": short']
    assert events[-1]["type"] == "workflow_complete"
    assert (await api.get(f"/runs/{run_id}")).body["pending_inputs"] == []
    late = await api.post(f"/runs/{run_id}/input", {"request_id": second["request_id"], "answer": "long"})
    assert (late.status, late.body) == (409, {"error": f"run {run_id} is completed", "code": "run_finished"})


async def test_an_answer_is_validated(api: Api) -> None:
    run_id = await api.start(**DEBATE)
    await api.waiting(run_id, "approval_request")
    for body, field in (({"request_id": "r", "answer": "x" * 8001}, "answer"), ({"answer": "x"}, "request_id")):
        reply = await api.post(f"/runs/{run_id}/input", body)
        assert (reply.status, reply.body["code"], reply.body["error"].split(":")[0]) == (400, "invalid_request", field)
    unknown = await api.post(f"/runs/{run_id}/input", {"request_id": "no-such-request", "answer": "x"})
    assert (unknown.status, unknown.body["code"]) == (404, "input_not_found")
    assert (await api.post(f"/runs/{run_id}/abort")).status == 200


async def test_aborting_a_parked_run_ends_it_once(api: Api) -> None:
    run_id = await api.start(**DEBATE)
    asked = await api.waiting(run_id, "approval_request")
    reply = await api.post(f"/runs/{run_id}/abort")
    assert (reply.status, reply.body) == (200, {"ok": True, "status": "aborted"})

    page = await api.page(run_id)
    last = page["events"][-1]
    assert page["done"] is True and page["cursor"] == asked["seq"] + 1
    assert {k: last[k] for k in ("type", "seq", "error", "run_id")} == {
        "type": "workflow_error",
        "seq": asked["seq"] + 1,
        "error": "run aborted",
        "run_id": run_id,
    }
    view = (await api.get(f"/runs/{run_id}")).body
    assert (view["status"], view["error"], view["pending_approvals"]) == ("aborted", "run aborted", [])
    assert view["finished_at"] is not None
    assert run_id not in {row["run_id"] for row in (await api.get("/approvals")).body["approvals"]}

    again = await api.post(f"/runs/{run_id}/abort")
    assert (again.status, again.body) == (409, {"error": f"run {run_id} is aborted", "code": "run_finished"})


async def test_aborting_a_finished_run_is_409(api: Api) -> None:
    run_id = await api.start(pattern="debate")
    await api.finish(run_id)
    reply = await api.post(f"/runs/{run_id}/abort")
    assert (reply.status, reply.body) == (409, {"error": f"run {run_id} is completed", "code": "run_finished"})


async def test_two_parked_calls_approved_at_once_run_once_each(api: Api, server: AppServer) -> None:
    for trial in range(API_TRIALS):
        await approve_two_at_once(api, server, f"two-calls-{trial}")


async def approve_two_at_once(api: Api, server: AppServer, name: str) -> None:
    """One agent's turn parks two calls; both approved at once, each twice; each call runs once."""

    def argue(text: str) -> dict[str, Any]:
        return {"function_id": "pattern::argue", "arguments": {"argument": text}}

    model = await server.load(name, {"Affirmative": [[{"function_calls": [argue("one"), argue("two")]}]]})
    run_id = await api.start(**DEBATE, model=model)
    asked: list[dict[str, Any]] = []
    while len(asked) < 2:  # one turn makes both calls, so both park
        events = await api.events_until(
            run_id, lambda e: e["type"] == "approval_request", asked[-1]["seq"] if asked else 0
        )
        asked += [e for e in events if e["type"] == "approval_request"]
    assert [(e["agent"], e["arguments"]) for e in asked] == [("Affirmative", {"argument": a}) for a in ("one", "two")]
    # A second approval finds its call decided (200 or 404, as the two race).
    decided = asked * 2
    replies = await asyncio.gather(
        *(api.post(f"/runs/{run_id}/approvals/{e['call_id']}", {"decision": "allow"}) for e in decided)
    )
    assert {r.status for r in replies} <= {200, 404}
    assert {e["call_id"] for e, r in zip(decided, replies, strict=True) if r.status == 200} == {
        e["call_id"] for e in asked
    }
    events = await decide_each(api, run_id, {"decision": "allow"}, after=asked[-1]["seq"])
    assert events[-1]["type"] == "workflow_complete"
    mine = [e for e in events if e.get("agent") == "Affirmative"]
    assert [(e["type"], e.get("tool_names")) for e in mine] == [
        ("iteration_start", None),
        ("approval_request", None),
        ("approval_request", None),
        ("agent_step", ["argue", "argue"]),  # one turn, one step, two calls
        ("agent_step", []),
        ("iteration_end", None),
    ]
    assert mine[-2]["text"] == "Done: called 2 function(s)."
    resolved = [e["call_id"] for e in events if e["type"] == "approval_resolved"]
    assert sorted(c for c in resolved if c in {e["call_id"] for e in asked}) == sorted(e["call_id"] for e in asked)


async def test_a_call_decided_elsewhere_is_409_with_the_decision_that_stands(api: Api, server: AppServer) -> None:
    run_id = await api.start(**DEBATE)
    asked = await api.waiting(run_id, "approval_request")
    first = {"session_id": asked["session_id"], "function_call_id": asked["call_id"], "decision": "deny"}
    assert await server.client.trigger("approval::resolve", first) == {"ok": True}
    late = await api.post(f"/runs/{run_id}/approvals/{asked['call_id']}", {"decision": "allow"})
    assert (late.status, late.body) == (
        409,
        {"error": f"call {asked['call_id']} was already decided: deny", "code": "already_decided"},
    )
    assert (await api.post(f"/runs/{run_id}/abort")).status == 200
