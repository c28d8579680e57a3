"""Orchestrated: event order, handoffs, prompt synthesis, human input, every stop rule and the iteration cap."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from teamster.harness.contracts import StreamRequest
from teamster.patterns.orchestrated import INCOMPLETE
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say, types

SOURCES = [f"source {i}" for i in range(1, 11)]
TURN = ["iteration_start", "bus_message"]  # the activation message follows iteration_start


def _ends(*tools: str) -> list[str]:
    """What follows the steps of one call: a tool_call per call, iteration_end, the agent's bus message."""
    return [*["tool_call"] * len(tools), "iteration_end", "bus_message"]


def _delegate(agent: str, task: str, context: str = "") -> dict[str, Any]:
    return call("delegateToAgent", agentName=agent, taskDetails=task, context=context)


def _book() -> dict[str, list[list[dict[str, Any]]]]:
    """researcher → writer → editor, the editor's return ending the run."""
    plan = [
        {"agent": "writer", "task": "draft it", "order": 2},
        {"agent": "researcher", "task": "find facts", "order": 1},
        {"agent": "editor", "task": "polish", "order": 3},
    ]
    return {
        "coordinator": [
            [
                call("analyzeRequest", userIntent="a post", selectedAgents=plan, reasoning="r"),
                _delegate("researcher", "find facts", "for developers"),
            ],
            [_delegate("writer", "draft it")],
            [_delegate("editor", "polish")],
        ],
        "researcher": [
            [
                call(
                    "returnFindings",
                    findings="FINDINGS",
                    keyFindings=[{"finding": "k1", "importance": "high"}, {"finding": "k2", "importance": "low"}],
                    sources=SOURCES,
                    nextAgent="writer",
                    reasoning="needs prose",
                )
            ]
        ],
        "writer": [
            [
                call("formatContent", title="T", body="B", style="blog"),
                call("returnDraft", draft="DRAFT", contentType="blog", nextAgent="editor", notes="n"),
            ]
        ],
        "editor": [[call("returnFinal", finalContent="FINAL", improvements=["tightened", "fixed typos"])]],
    }


async def test_full_flow_event_order_handoffs_and_result(run_events: RunEvents) -> None:
    events = await run_events("orchestrated", book=_book())
    assert_contract(events)
    assert types(events) == [
        "workflow_start",
        "bus_message",
        *TURN,
        *["agent_step"] * 3,
        *_ends("analyzeRequest", "delegateToAgent"),
        "agent_plan",
        "handoff",
        "bus_message",
        *TURN,
        *["agent_step"] * 2,
        *_ends("returnFindings"),
        "handoff",
        "bus_message",
        *TURN,
        *["agent_step"] * 2,
        *_ends("delegateToAgent"),
        "handoff",
        "bus_message",
        *TURN,
        *["agent_step"] * 3,
        *_ends("formatContent", "returnDraft"),
        "handoff",
        "bus_message",
        *TURN,
        *["agent_step"] * 2,
        *_ends("delegateToAgent"),
        "handoff",
        "bus_message",
        *TURN,
        *["agent_step"] * 2,
        *_ends("returnFinal"),
        "workflow_complete",
    ]
    assert events[0].starting_agent == "coordinator"
    order = ["coordinator", "researcher", "coordinator", "writer", "coordinator", "editor"]
    assert [(e.iteration, e.agent) for e in only(events, "iteration_start")] == list(enumerate(order, 1))
    assert [(h.from_, h.to) for h in only(events, "handoff")] == list(pairwise(order))
    (plan,) = only(events, "agent_plan")
    assert (plan.agent, plan.intent) == ("coordinator", "a post")
    assert [(s.agent, s.task) for s in plan.steps] == [
        ("researcher", "find facts"),
        ("writer", "draft it"),
        ("editor", "polish"),
    ]
    calls = only(events, "tool_call")
    assert [(c.agent, c.tool_name) for c in calls][:2] == [
        ("coordinator", "analyzeRequest"),
        ("coordinator", "delegateToAgent"),
    ]
    assert all(c.preview is None for c in calls)
    bus = [(m.from_, m.to, m.message_type, m.content) for m in only(events, "bus_message")]
    assert bus[:5] == [
        ("user", "coordinator", "user", "Write a haiku about teamwork."),
        ("orchestrator", "coordinator", "system", "Activating coordinator"),
        ("coordinator", "orchestrator", "agent", "Done: called 1 function(s)."),
        ("coordinator", "researcher", "system", "Task delegated: find facts\n\nContext: for developers"),
        ("orchestrator", "researcher", "system", "Activating researcher"),
    ]
    assert bus[6] == ("researcher", "coordinator", "system", "Results from researcher:\nFINDINGS")
    done = events[-1]
    assert done.result == "FINAL"
    assert done.iterations == 6
    assert done.agents_used == ["coordinator", "researcher", "writer", "editor"]
    assert done.message_bus_stats == {
        "total_messages": len(bus),
        "user_messages": 1,
        "agent_messages": 6,
        "system_messages": len(bus) - 7,
    }


async def test_prompts_carry_history_task_context_and_artifacts() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    await run_inproc("orchestrated", "Write a post.", book=_book(), history=history, seen=seen)
    kickoff, after_research, after_draft = prompts(seen, "coordinator")
    assert kickoff.startswith("This is a brand-new request.")
    assert kickoff.endswith(
        "Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\nRequest:\nWrite a post."
    )

    (research,) = prompts(seen, "researcher")
    assert "**Task:** find facts\n\n**Context from previous work:**\nfor developers" in research
    assert "**Sources:**" not in research and "Research findings" not in research

    assert "**Agent:** researcher\n\n**Research Findings:**\nFINDINGS" in after_research
    assert "**Key Findings:**\n1. k1 (high)\n2. k2 (low)" in after_research
    assert "**Sources (10):**\n" + "\n".join(f"{i}. source {i}" for i in range(1, 6)) + "\n\n" in after_research
    assert "**Key Insights:**\n1. k1\n\n" in after_research
    assert "**Specialist's Recommendation:** Route to writer\n**Reasoning:** needs prose" in after_research
    assert after_research.endswith("call markComplete with the final output")

    (writing,) = prompts(seen, "writer")
    assert "**Research findings to use:**\nFINDINGS" in writing
    assert writing.count("source ") == 8 and "8. source 8\n\n" in writing  # up to 8 sources carried forward

    assert "**Draft Content:**\nDRAFT\n\n**Content Type:** blog" in after_draft
    assert "**Notes:** n" in after_draft and "Route to editor" in after_draft

    (editing,) = prompts(seen, "editor")
    assert "**Draft to edit (full text):**\nDRAFT" in editing
    assert "Research findings" not in editing


async def test_mark_complete_ends_the_run_with_its_response(run_events: RunEvents) -> None:
    book = {"coordinator": [[call("markComplete", finalResponse="All done.", workflowSummary="s")]]}
    events = await run_events("orchestrated", book=book)
    assert_contract(events)
    assert (events[-1].result, events[-1].iterations) == ("All done.", 1)
    assert "handoff" not in types(events)


async def test_a_coordinator_without_a_tool_signal_ends_with_its_text(run_events: RunEvents) -> None:
    book = {"coordinator": [[say("Here is a haiku.")]]}
    events = await run_events("orchestrated", book=book)
    assert_contract(events)
    done = events[-1]
    assert (done.result, done.iterations) == ("Here is a haiku.", 1)
    assert done.total_input_tokens > 0 and done.total_output_tokens > 0  # totals even on this exit


async def test_an_empty_mark_complete_is_no_signal(run_events: RunEvents) -> None:
    book = {"coordinator": [[call("markComplete", finalResponse=""), say("fallback text")]]}
    events = await run_events("orchestrated", book=book)
    assert events[-1].result == "fallback text"


async def test_a_specialist_without_its_return_tool_goes_back_with_its_text() -> None:
    book = {
        "coordinator": [[_delegate("researcher", "look")], [say("final from coordinator")]],
        "researcher": [[say("plain notes")]],
    }
    seen: list[StreamRequest] = []
    events = await run_inproc("orchestrated", book=book, seen=seen)
    assert_contract(events)
    assert [(h.from_, h.to) for h in only(events, "handoff")] == [("coordinator", "researcher")]
    returned = [m for m in only(events, "bus_message") if m.from_ == "researcher" and m.message_type == "system"]
    assert [m.content for m in returned] == ["Specialist work complete: plain notes"]
    assert "**Agent:** researcher\n\n**Output:**\nplain notes" in prompts(seen, "coordinator")[1]
    assert events[-1].result == "final from coordinator"


async def test_input_request_waits_for_the_answer_and_resumes_the_coordinator(run_events: RunEvents) -> None:
    book = {
        "coordinator": [
            [call("requestUserInput", question="Which audience?")],
            [call("markComplete", finalResponse="For developers.")],
        ]
    }
    events = await run_events("orchestrated", book=book, answer=lambda request: "developers")
    assert_contract(events)
    (request,) = only(events, "input_request")
    (resolved,) = only(events, "input_resolved")
    assert (request.agent, request.question) == ("coordinator", "Which audience?")
    assert (resolved.request_id, resolved.answer, resolved.timed_out) == (request.request_id, "developers", False)
    at = types(events).index("input_request")
    assert types(events)[at - 2 : at + 4] == [
        "iteration_end",
        "bus_message",
        "input_request",
        "input_resolved",
        "bus_message",
        "iteration_start",
    ]
    answer = events[at + 2]
    assert (answer.from_, answer.to, answer.message_type) == ("user", "coordinator", "user")
    assert answer.content == 'Answer to "Which audience?": developers'
    assert [e.agent for e in only(events, "iteration_start")] == ["coordinator", "coordinator"]
    assert (events[-1].result, events[-1].iterations) == ("For developers.", 2)


async def test_the_resume_prompt_holds_the_request_and_the_answer() -> None:
    book = {"coordinator": [[call("requestUserInput", question="Which audience?")], [say("ok")]]}
    seen: list[StreamRequest] = []
    await run_inproc("orchestrated", "Write a post.", book=book, seen=seen, answer=lambda request: "developers")
    resume = prompts(seen, "coordinator")[1]
    assert resume.startswith('Original request:\nWrite a post.\n\nAnswer to "Which audience?": developers\n\n')
    assert "Treat the above as the task." in resume


async def test_an_unanswered_input_request_proceeds_with_defaults(run_events: RunEvents) -> None:
    book = {"coordinator": [[call("requestUserInput", question="Which audience?")], [say("ok")]]}
    events = await run_events("orchestrated", book=book, input_timeout_s=0.01)
    assert_contract(events)
    (resolved,) = only(events, "input_resolved")
    assert (resolved.answer, resolved.timed_out) == ("", True)
    user = [m.content for m in only(events, "bus_message") if m.message_type == "user"]
    assert user[1] == '(no answer provided for "Which audience?" — proceed with sensible defaults)'
    assert events[-1].result == "ok"


async def test_the_iteration_cap_defaults_to_15(run_events: RunEvents) -> None:
    book = {"coordinator": [[_delegate("researcher", "more")] for _ in range(8)]}
    events = await run_events("orchestrated", book=book)
    assert_contract(events)
    assert [e.iteration for e in only(events, "iteration_start")] == list(range(1, 16))
    assert (events[-1].result, events[-1].iterations) == (INCOMPLETE, 15)
    assert INCOMPLETE == "Workflow incomplete: maximum iterations reached"


async def test_the_iteration_cap_is_overridable(run_events: RunEvents) -> None:
    book = {"coordinator": [[_delegate("writer", "more")] for _ in range(2)]}
    events = await run_events("orchestrated", book=book, max_iterations=3)
    assert_contract(events)
    assert [e.agent for e in only(events, "iteration_start")] == ["coordinator", "writer", "coordinator"]
    assert (events[-1].result, events[-1].iterations) == (INCOMPLETE, 3)
    assert events[-2].type == "bus_message"  # the last delegation was published before the cap ended the run


async def test_unscripted_run_completes_and_completion_wins_over_input(run_events: RunEvents) -> None:
    events = await run_events("orchestrated")  # the test model calls every coordinator tool at once
    assert_contract(events)
    assert "input_request" not in types(events) and "handoff" not in types(events)
    assert types(events)[-2:] == ["agent_plan", "workflow_complete"]
    assert (events[-1].result, events[-1].iterations) == ("example", 1)


async def test_provider_error_mid_run_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {"coordinator": [[_delegate("researcher", "look")]], "researcher": [[fail("upstream down")]]}
    events = await run_events("orchestrated", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "researcher" in events[-1].error and "upstream down" in events[-1].error
    assert types(events)[-3:] == ["iteration_start", "bus_message", "workflow_error"]


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        "coordinator": [
            [{**_delegate("editor", "polish"), "usage": usage}, {"text": "sent", "usage": usage}],
        ],
        "editor": [[{**call("returnFinal", finalContent="F"), "usage": usage}]],
    }
    events = await run_events("orchestrated", book=book)
    ends = only(events, "iteration_end")
    assert (ends[0].input_tokens, ends[0].output_tokens) == (2000, 1000)  # both steps of the call
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
