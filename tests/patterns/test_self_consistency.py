"""Self-consistency: parallel samplers, then the judge; the verdict fallbacks, the sample cap and failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from teamster.harness.contracts import StreamRequest
from teamster.patterns.self_consistency import NO_VERDICT, Verdict, verdict
from teamster.patterns.tools import Decision
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say
from tests.patterns.phases import assert_follows_its_call, assert_phases, call_events, calls, either, of_calls, of_type

SAMPLERS = [(f"sample {i}", i) for i in range(1, 5)]


def answers(*texts: str) -> dict[str, list[list[dict[str, Any]]]]:
    return {f"sample {i}": [[call("submitAnswer", answer=text)]] for i, text in enumerate(texts, 1)}


def decide(**arguments: Any) -> list[list[dict[str, Any]]]:
    return [[call("decide", **arguments)]]


async def test_samplers_then_the_judge_in_reference_order_with_exact_payloads(run_events: RunEvents) -> None:
    book = {**answers("A1", "A2", "A3", "A4"), "judge": decide(method="select", chosenIndex=2, rationale="clearest")}
    events = await run_events("self_consistency", book=book)
    assert_contract(events)
    assert events[0].starting_agent == "sampler"
    assert calls(events) == {**{key: call_events(2) for key in SAMPLERS}, ("judge", 5): call_events(2)}
    assert_follows_its_call(events, "sample", lambda e: (f"sample {e.index + 1}", e.index + 1))
    assert_phases(
        events,
        of_type("workflow_start"),
        either(of_calls(*SAMPLERS), of_type("sample")),
        of_calls(("judge", 5)),
        of_type("workflow_complete"),
    )
    assert sorted((e.index, e.preview) for e in only(events, "sample")) == [(0, "A1"), (1, "A2"), (2, "A3"), (3, "A4")]
    previews = {(e.agent, e.iteration): e.output_preview for e in only(events, "iteration_end")}
    assert previews == {**{key: f"A{key[1]}" for key in SAMPLERS}, ("judge", 5): "A3"}
    done = events[-1]
    assert done.result == "A3\n\n_(self-consistency: judge selected sample 3 of 4)_"
    assert (done.iterations, done.agents_used) == (5, ["sampler", "judge"])
    assert done.summary.model_dump() == {
        "kind": "self-consistency",
        "samples": [{"index": i, "text": f"A{i + 1}", "chosen": i == 2} for i in range(4)],
        "method": "select",
        "rationale": "clearest",
    }


async def test_a_merge_uses_the_judges_answer_and_chooses_no_sample(run_events: RunEvents) -> None:
    judge = decide(method="merge", chosenIndex=1, finalAnswer="merged answer", rationale="complementary")
    events = await run_events("self_consistency", book={**answers("A1", "A2", "A3", "A4"), "judge": judge})
    done = events[-1]
    assert done.result == "merged answer\n\n_(self-consistency: judge merged 4 samples into a consensus)_"
    assert [s.chosen for s in done.summary.samples] == [False] * 4
    assert (done.summary.method, done.summary.rationale) == ("merge", "complementary")


async def test_a_judge_without_decide_selects_the_first_sample(run_events: RunEvents) -> None:
    book = {**answers("A1", "A2", "A3", "A4"), "judge": [[say("They are all fine.")]]}
    events = await run_events("self_consistency", book=book)
    done = events[-1]
    assert done.result == "A1\n\n_(self-consistency: judge selected sample 1 of 4)_"
    assert [s.chosen for s in done.summary.samples] == [True, False, False, False]
    assert (done.summary.method, done.summary.rationale) == ("select", NO_VERDICT)


async def test_an_out_of_range_index_counts_as_missing(run_events: RunEvents) -> None:
    book = {**answers("A1", "A2", "A3", "A4"), "judge": decide(method="select", chosenIndex=7)}
    events = await run_events("self_consistency", book=book)
    done = events[-1]
    assert done.result == "A1\n\n_(self-consistency: judge selected sample 1 of 4)_"
    assert [s.chosen for s in done.summary.samples] == [True, False, False, False]


def _decision(**fields: Any) -> Decision:
    return Decision.model_validate(fields)


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (None, Verdict("select", 0, "s0", NO_VERDICT)),
        (_decision(method="select", chosenIndex=1, finalAnswer="mine"), Verdict("select", 1, "mine", "")),
        (_decision(method="select", chosenIndex=2, rationale="r"), Verdict("select", 2, "s2", "r")),
        (_decision(method="select"), Verdict("select", 0, "s0", "")),
        (_decision(method="select", chosenIndex=3, finalAnswer="kept"), Verdict("select", 0, "kept", "")),
        (_decision(method="select", chosenIndex=3), Verdict("select", 0, "s0", "")),
        (_decision(method="merge", chosenIndex=2), Verdict("merge", None, "s0", "")),
        (_decision(method="merge", finalAnswer="  "), Verdict("merge", None, "s0", "")),
        (_decision(method="merge", finalAnswer="all"), Verdict("merge", None, "all", "")),
    ],
)
def test_verdict_fallbacks(decision: Decision | None, expected: Verdict) -> None:
    assert verdict(decision, ["s0", "s1", "s2"]) == expected


async def test_the_sample_count_is_overridable(run_events: RunEvents) -> None:
    events = await run_events("self_consistency", book=answers("A1", "A2"), samples=2)
    assert_contract(events)
    assert set(calls(events)) == {("sample 1", 1), ("sample 2", 2), ("judge", 3)}
    assert sorted(e.index for e in only(events, "sample")) == [0, 1]
    assert events[-1].iterations == 3
    assert events[-1].result.endswith("_(self-consistency: judge selected sample 1 of 2)_")


async def test_samplers_and_the_judge_see_history_and_the_judge_every_candidate() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    await run_inproc("self_consistency", "Why?", book=answers("A1", "A2"), history=history, seen=seen, samples=2)
    prior = "Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\n"
    assert prompts(seen, "sample 1") == prompts(seen, "sample 2") == [f"{prior}Why?"]
    (judge,) = prompts(seen, "judge")
    assert judge.startswith(f"{prior}Original task:\nWhy?\n\nHere are the 2 candidate answers")
    assert "### Candidate 0 (index 0)\nA1\n\n---\n\n### Candidate 1 (index 1)\nA2\n\n" in judge


async def test_unscripted_run_completes_with_the_test_model(run_events: RunEvents) -> None:
    events = await run_events("self_consistency")
    assert_contract(events)
    assert events[-1].type == "workflow_complete"
    assert events[-1].result == "example\n\n_(self-consistency: judge selected sample 1 of 4)_"


async def test_a_judge_provider_error_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {**answers("A1", "A2", "A3", "A4"), "judge": [[fail("rate limited upstream")]]}
    events = await run_events("self_consistency", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "judge" in events[-1].error and "rate limited upstream" in events[-1].error


async def test_a_failed_sampler_fails_the_run_and_cancels_its_siblings() -> None:
    slow = [[{"text": "thinking", "latency_ms": 60_000}]]
    book = {"sample 1": slow, "sample 2": [[fail("rate limited upstream")]], "sample 3": slow}
    events = await run_inproc("self_consistency", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error" and "sample 2" in events[-1].error
    assert ("judge", 5) not in calls(events)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running, nothing left to emit


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        **{f"sample {i}": [[{**call("submitAnswer", answer="a"), "usage": usage}]] for i in (1, 2)},
        "judge": [
            [{**call("decide", method="merge", finalAnswer="m"), "usage": usage}, {"text": "ok", "usage": usage}]
        ],
    }
    events = await run_events("self_consistency", book=book, samples=2)
    ends = only(events, "iteration_end")
    assert [e.input_tokens for e in ends if e.agent == "judge"] == [2000]
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
