"""Swarm: parallel rounds over a shared scratchpad snapshot, the early stop, the distiller, caps and failures."""

from __future__ import annotations

import asyncio
from typing import Any

from teamster.harness.contracts import StreamRequest
from teamster.patterns.swarm import EMPTY_SCRATCHPAD
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say
from tests.patterns.phases import assert_follows_its_call, assert_phases, call_events, calls, either, of_calls, of_type

AGENTS = [f"agent {i}" for i in range(1, 5)]


def contribute(text: str) -> list[dict[str, Any]]:
    return [call("contribute", text=text)]


def swarm(rounds: int, size: int = 4) -> dict[str, list[list[dict[str, Any]]]]:
    """Agent i contributes "a<i> r<round>" in every round; the distiller answers "final"."""
    book = {f"agent {i}": [contribute(f"a{i} r{r}") for r in range(1, rounds + 1)] for i in range(1, size + 1)}
    return {**book, "distiller": [contribute("final")]}


def round_phase(round_no: int) -> Any:
    return either(of_calls(*((a, round_no) for a in AGENTS)), lambda e: e.type == "trace" and e.round == round_no)


async def test_rounds_then_the_distiller_in_reference_order_with_exact_payloads(run_events: RunEvents) -> None:
    events = await run_events("swarm", book=swarm(3))
    assert_contract(events)
    assert events[0].starting_agent == "agent 1"
    assert calls(events) == {
        **{(a, r): call_events(2) for r in (1, 2, 3) for a in AGENTS},
        ("distiller", 4): call_events(2),
    }
    assert_follows_its_call(events, "trace", lambda e: (e.agent, e.round))
    assert_phases(
        events,
        of_type("workflow_start"),
        round_phase(1),
        round_phase(2),
        round_phase(3),
        of_calls(("distiller", 4)),
        of_type("workflow_complete"),
    )
    traces = sorted((e.round, e.agent, e.preview) for e in only(events, "trace"))
    assert traces == [(r, f"agent {i}", f"a{i} r{r}") for r in (1, 2, 3) for i in range(1, 5)]
    previews = {(e.agent, e.iteration): e.output_preview for e in only(events, "iteration_end")}
    assert previews == {
        **{(f"agent {i}", r): f"a{i} r{r}" for r in (1, 2, 3) for i in range(1, 5)},
        ("distiller", 4): "final",
    }
    done = events[-1]
    assert (done.result, done.iterations, done.agents_used) == ("final", 3, AGENTS)
    assert done.summary.model_dump() == {
        "kind": "swarm",
        "rounds": 3,
        "traces": [{"round": r, "agent": f"agent {i}", "text": f"a{i} r{r}"} for r in (1, 2, 3) for i in range(1, 5)],
    }


async def test_every_agent_of_a_round_reads_the_same_snapshot_and_the_history() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    await run_inproc("swarm", "Name a tool.", book=swarm(2), history=history, seen=seen, swarm_rounds=2)
    prior = "Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\nTASK:\nName a tool.\n\n"
    round_one = "\n".join(f"- [round 1 · agent {i}] a{i} r1" for i in range(1, 5))
    for agent in AGENTS:
        first, second = prompts(seen, agent)
        assert (
            first.startswith(prior)
            and f"SHARED SCRATCHPAD (all agents' traces so far):\n{EMPTY_SCRATCHPAD}\n\n" in first
        )
        assert f"You are {agent}." in first
        assert second.startswith(prior) and f"so far):\n{round_one}\n\nYou are {agent}." in second  # none of round 2
    (distill,) = prompts(seen, "distiller")
    assert distill.startswith(prior)
    assert f"scratchpad:\n{round_one}\n- [round 2 · agent 1] a1 r2\n" in distill and "a4 r2" in distill


async def test_a_round_without_traces_stops_early(run_events: RunEvents) -> None:
    book = {
        "agent 1": [contribute("only idea"), [say("nothing to add")]],
        **{a: [[say("pass")], [say("pass")]] for a in AGENTS[1:]},
        "distiller": [contribute("final")],
    }
    events = await run_events("swarm", book=book)
    assert_contract(events)
    assert set(calls(events)) == {*((a, r) for r in (1, 2) for a in AGENTS), ("distiller", 3)}
    assert sorted((e.round, e.agent, e.preview) for e in only(events, "trace")) == [
        (1, "agent 1", "only idea"),
        *((1, a, "") for a in AGENTS[1:]),
        *((2, a, "") for a in AGENTS),
    ]
    previews = {(e.agent, e.iteration): e.output_preview for e in only(events, "iteration_end")}
    assert previews[("agent 2", 1)] == "pass"  # no contribution: the call's text is shown
    done = events[-1]
    assert (done.iterations, done.summary.rounds) == (2, 2)
    assert [(t.round, t.agent, t.text) for t in done.summary.traces] == [(1, "agent 1", "only idea")]


async def test_size_and_rounds_are_overridable(run_events: RunEvents) -> None:
    events = await run_events("swarm", book=swarm(1, size=2), swarm_size=2, swarm_rounds=1)
    assert_contract(events)
    assert set(calls(events)) == {("agent 1", 1), ("agent 2", 1), ("distiller", 2)}
    done = events[-1]
    assert (done.iterations, done.agents_used, len(done.summary.traces)) == (1, ["agent 1", "agent 2"], 2)


async def test_a_distiller_without_contribute_answers_with_its_text(run_events: RunEvents) -> None:
    book = {**swarm(1), "distiller": [[say("plain answer")]]}
    events = await run_events("swarm", book=book, swarm_rounds=1)
    assert events[-1].result == "plain answer"


async def test_unscripted_run_completes_with_the_test_model(run_events: RunEvents) -> None:
    events = await run_events("swarm")
    assert_contract(events)
    done = events[-1]
    assert (done.type, done.result, done.iterations, len(done.summary.traces)) == (
        "workflow_complete",
        "example",
        3,
        12,
    )


async def test_provider_error_mid_run_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {**swarm(3), "agent 3": [contribute("a3 r1"), [fail("rate limited upstream")]]}
    events = await run_events("swarm", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "agent 3" in events[-1].error and "rate limited upstream" in events[-1].error
    assert not any(e.type == "iteration_start" and e.iteration == 3 for e in events)


async def test_a_failed_agent_cancels_its_siblings() -> None:
    book = {"agent 1": [[{"text": "thinking", "latency_ms": 60_000}]], "agent 2": [[fail("boom")]]}
    events = await run_inproc("swarm", book=book)
    assert events[-1].type == "workflow_error"
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running, nothing left to emit


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        "agent 1": [[{**call("contribute", text="t"), "usage": usage}, {"text": "done", "usage": usage}]],
        "distiller": [[{**call("contribute", text="f"), "usage": usage}]],
    }
    events = await run_events("swarm", book=book, swarm_size=1, swarm_rounds=1)
    ends = only(events, "iteration_end")
    assert [e.input_tokens for e in ends if e.agent == "agent 1"] == [2000]
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
