"""Choreographed: ring order, message delivery, completion and skipping, the cap, swallowed and total failures."""

from __future__ import annotations

import json
from typing import Any

from teamster.harness.contracts import StreamRequest
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say, types

QUERY = "Build a task manager."


def _send(to: str, content: str) -> dict[str, Any]:
    return call("coordinationTool", recipientAgent=to, messageContent=content)


def _done(summary: str) -> dict[str, Any]:
    return call("markCompleted", summary=summary)


def _book() -> dict[str, list[list[dict[str, Any]]]]:
    """Each agent shares once, then completes on its second turn."""
    return {
        "backend": [[_send("frontend", "GET /tasks returns {id,title}")], [_done("API: GET /tasks")]],
        "frontend": [[_send("design", "need a list layout")], [_done("TaskList component")]],
        "design": [[_send("backend", "tasks need a colour")], [_done("Card layout")]],
    }


def _turn(delivered: int) -> list[str]:
    """One agent call: one tool turn plus the model's closing text, then its delivered messages."""
    return ["iteration_start", "agent_step", "agent_step", "tool_call", "iteration_end", *["bus_message"] * delivered]


async def test_event_order_and_payloads(run_events: RunEvents) -> None:
    events = await run_events("choreographed", QUERY, book=_book())
    assert_contract(events)
    assert types(events) == [
        "workflow_start",
        *["bus_message"] * 3,
        *_turn(1) * 3,
        *_turn(0) * 3,
        "workflow_complete",
    ]
    assert events[0].starting_agent == "backend"
    assert [(m.from_, m.to, m.message_type, m.content) for m in only(events, "bus_message")] == [
        ("user", "backend", "user", QUERY),
        ("user", "frontend", "user", QUERY),
        ("user", "design", "user", QUERY),
        ("backend", "frontend", "agent", "GET /tasks returns {id,title}"),
        ("frontend", "design", "agent", "need a list layout"),
        ("design", "backend", "agent", "tasks need a colour"),
    ]
    agents = ["backend", "frontend", "design"] * 2
    assert [(e.iteration, e.agent) for e in only(events, "iteration_start")] == list(enumerate(agents, 1))
    ends = only(events, "iteration_end")
    assert [(e.agent, e.completed, e.step_count) for e in ends] == [(a, i >= 3, 2) for i, a in enumerate(agents)]
    assert [e.output_preview for e in ends[3:]] == ["API: GET /tasks", "TaskList component", "Card layout"]
    calls = only(events, "tool_call")
    assert (calls[0].agent, calls[0].tool_name) == ("backend", "coordinationTool")
    assert calls[0].preview == '{"recipientAgent":"frontend","messageContent":"GET /tasks returns {id,title}"}'
    assert calls[3].preview == '{"summary":"API: GET /tasks"}'
    done = events[-1]
    assert done.iterations == 6
    assert done.agents_used == ["backend", "frontend", "design"]
    assert [(r.agent, r.output, r.completed) for r in done.agent_results] == [
        ("backend", "API: GET /tasks", True),
        ("frontend", "TaskList component", True),
        ("design", "Card layout", True),
    ]
    assert done.message_bus_stats == {
        "total_messages": 6,
        "user_messages": 3,
        "agent_messages": 3,
        "system_messages": 0,
    }
    assert done.result == (
        f"# Build plan\n\n**Goal:** {QUERY}\n\n"
        "## Backend (completed)\n\nAPI: GET /tasks\n\n"
        "## Frontend (completed)\n\nTaskList component\n\n"
        "## Design (completed)\n\nCard layout"
    )


async def test_prompts_carry_history_and_the_inbox() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    await run_inproc("choreographed", QUERY, book=_book(), history=history, seen=seen)
    task = f"Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\n{QUERY}"
    backend_first, backend_second = prompts(seen, "backend")
    assert backend_first.startswith(f"{task}\n\nThis is your first turn.")
    assert backend_second.startswith(f"Original task: {task}\n\nLatest messages from your peers:\n")
    assert "\n- From design: tasks need a colour\n\n" in backend_second
    assert "Prefer finalizing." in backend_second
    frontend_first = prompts(seen, "frontend")[0]
    assert "Messages from your peers so far:\n- From backend: GET /tasks returns {id,title}\n\n" in frontend_first
    assert "\n\nThis is your first turn." in frontend_first


async def test_the_inbox_shows_the_latest_six_messages() -> None:
    book = {
        "backend": [[_send("design", f"b{i}") for i in range(4)], [_done("api")]],
        "frontend": [[_send("design", f"f{i}") for i in range(4)], [_done("ui")]],
        "design": [[_done("spec")]],
    }
    seen: list[StreamRequest] = []
    await run_inproc("choreographed", QUERY, book=book, seen=seen)
    (first,) = prompts(seen, "design")  # eight messages wait for design on its first turn
    shown = [line for line in first.splitlines() if line.startswith("- From ")]
    assert shown == ["- From backend: b2", "- From backend: b3", *[f"- From frontend: f{i}" for i in range(4)]]


async def test_a_later_turn_with_an_empty_inbox_is_not_a_first_turn() -> None:
    book = {"backend": [[say("plan")], [_done("api")]], "frontend": [[_done("ui")]], "design": [[_done("spec")]]}
    seen: list[StreamRequest] = []
    await run_inproc("choreographed", QUERY, book=book, seen=seen)
    second = prompts(seen, "backend")[1]
    assert "Latest messages from your peers:\n(none yet)\n\n" in second and "first turn" not in second


async def test_completed_agents_are_skipped_without_using_iterations(run_events: RunEvents) -> None:
    book = {
        "backend": [[_done("api")]],
        "frontend": [[say("thinking")] for _ in range(3)],
        "design": [[say("sketching")] for _ in range(3)],
    }
    events = await run_events("choreographed", QUERY, book=book, max_iterations=5)
    assert_contract(events)
    starts = [(e.iteration, e.agent) for e in only(events, "iteration_start")]
    assert starts == list(enumerate(["backend", "frontend", "design", "frontend", "design"], 1))
    done = events[-1]
    assert done.iterations == 5
    assert [(r.agent, r.output, r.completed) for r in done.agent_results] == [
        ("backend", "api", True),
        ("frontend", "thinking", False),
        ("design", "sketching", False),
    ]
    assert "## Frontend (not completed)\n\nthinking" in done.result


async def test_the_iteration_cap_defaults_to_10(run_events: RunEvents) -> None:
    book = {agent: [[say(f"{agent} turn {k}")] for k in range(4)] for agent in ("backend", "frontend", "design")}
    events = await run_events("choreographed", QUERY, book=book)
    assert_contract(events)
    assert [e.agent for e in only(events, "iteration_start")] == ["backend", "frontend", "design"] * 3 + ["backend"]
    done = events[-1]
    assert done.iterations == 10
    assert [r.output for r in done.agent_results] == ["backend turn 3", "frontend turn 2", "design turn 2"]
    assert not any(r.completed for r in done.agent_results)


async def test_the_run_ends_when_all_three_completed(run_events: RunEvents) -> None:
    book = {"backend": [[_done("api")]], "frontend": [[_done("ui")]], "design": [[_done("spec")]]}
    events = await run_events("choreographed", QUERY, book=book, max_iterations=7)
    assert [e.agent for e in only(events, "iteration_start")] == ["backend", "frontend", "design"]
    assert events[-1].iterations == 3


async def test_a_failing_agent_is_swallowed_and_the_ring_goes_on(run_events: RunEvents) -> None:
    book = {
        "backend": [[_done("api")]],
        "frontend": [[fail("rate limited")], [_done("ui")]],
        "design": [[_done("spec")]],
    }
    events = await run_events("choreographed", QUERY, book=book)
    assert_contract(events)
    assert types(events)[8:12] == ["iteration_end", "iteration_start", "iteration_end", "iteration_start"]
    failed = only(events, "iteration_end")[1]
    assert (failed.agent, failed.completed, failed.step_count, failed.input_tokens) == ("frontend", False, 0, 0)
    assert failed.output_preview.startswith("Error: frontend:") and "rate limited" in failed.output_preview
    done = events[-1]
    assert done.type == "workflow_complete"
    assert [e.agent for e in only(events, "iteration_start")] == ["backend", "frontend", "design", "frontend"]
    assert [(r.agent, r.completed) for r in done.agent_results] == [
        ("backend", True),
        ("frontend", True),
        ("design", True),
    ]


async def test_every_agent_failing_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {agent: [[fail(f"{agent} down")]] for agent in ("backend", "frontend", "design")}
    events = await run_events("choreographed", QUERY, book=book)
    assert_contract(events)
    assert types(events)[4:] == ["iteration_start", "iteration_end"] * 3 + ["workflow_error"]
    error = events[-1].error
    assert error.startswith("every agent failed: backend: ")
    assert all(f"{agent} down" in error for agent in ("backend", "frontend", "design"))


async def test_failures_after_a_success_end_the_run_only_when_every_latest_turn_failed(run_events: RunEvents) -> None:
    book = {
        "backend": [[say("draft api")], [fail("down")]],
        "frontend": [[fail("down")]],
        "design": [[fail("down")]],
    }
    events = await run_events("choreographed", QUERY, book=book)
    assert_contract(events)
    assert [e.agent for e in only(events, "iteration_start")] == ["backend", "frontend", "design", "backend"]
    assert events[-1].type == "workflow_error"


async def test_a_message_to_oneself_is_not_delivered(run_events: RunEvents) -> None:
    book = {"backend": [[_send("backend", "note to self"), _done("api")]]}
    events = await run_events("choreographed", QUERY, book=book, max_iterations=1)
    assert [m.from_ for m in only(events, "bus_message")] == ["user"] * 3
    assert events[-1].message_bus_stats["agent_messages"] == 0


async def test_tool_call_previews_are_capped_at_240_chars(run_events: RunEvents) -> None:
    long = "x" * 500
    events = await run_events("choreographed", QUERY, book={"backend": [[_send("design", long)]]}, max_iterations=1)
    (preview,) = [c.preview for c in only(events, "tool_call")]
    full = json.dumps({"recipientAgent": "design", "messageContent": long}, separators=(",", ":"))
    assert len(preview) == 240 and preview == full[:239] + "…"
    (delivered,) = [m for m in only(events, "bus_message") if m.from_ == "backend"]
    assert delivered.content == long  # the message itself is delivered whole


async def test_unscripted_run_completes(run_events: RunEvents) -> None:
    events = await run_events("choreographed")  # the test model messages "backend" and completes on turn 1
    assert_contract(events)
    done = events[-1]
    assert done.type == "workflow_complete"
    assert done.iterations == 3 and all(r.completed for r in done.agent_results)
    assert [(m.from_, m.to) for m in only(events, "bus_message")][3:] == [
        ("frontend", "backend"),
        ("design", "backend"),
    ]


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        "backend": [[{**_done("api"), "usage": usage}, {"text": "sent", "usage": usage}]],
        "frontend": [[fail("down")], [_done("ui")]],
        "design": [[{**_done("spec"), "usage": usage}]],
    }
    events = await run_events("choreographed", QUERY, book=book)
    ends = only(events, "iteration_end")
    assert (ends[0].input_tokens, ends[0].output_tokens) == (2000, 1000)  # both steps of the call
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
