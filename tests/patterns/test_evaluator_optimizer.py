"""Evaluator–optimizer: round order, threshold stop, best-draft retention, the round cap, failures."""

from __future__ import annotations

from teamster.harness.contracts import StreamRequest
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, types


def _round(score: float, issues: list[str]) -> list[list[dict[str, object]]]:
    return [[call("critique", score=score, issues=issues, rationale="r")]]


async def test_stops_at_threshold_and_keeps_the_passing_draft(run_events: RunEvents) -> None:
    book = {
        "generator": [[call("submitDraft", draft="draft one")], [call("submitDraft", draft="draft two")]],
        "critic": [*_round(5, ["too short", "no title"]), *_round(9, [])],
    }
    events = await run_events("evaluator_optimizer", book=book)
    assert_contract(events)
    assert types(events) == [
        "workflow_start",
        *["iteration_start", "agent_step", "agent_step", "iteration_end"] * 2,
        "critique",
        *["iteration_start", "agent_step", "agent_step", "iteration_end"] * 2,
        "critique",
        "workflow_complete",
    ]
    starts = [(e.agent, e.iteration) for e in only(events, "iteration_start")]
    assert starts == [("generator", 1), ("critic", 2), ("generator", 3), ("critic", 4)]
    assert [(c.round, c.score, c.passed, c.issues) for c in only(events, "critique")] == [
        (1, 5, False, ["too short", "no title"]),
        (2, 9, True, []),
    ]
    ends = only(events, "iteration_end")
    assert [e.output_preview for e in ends] == [
        "draft one",
        "score 5/10 · 2 issue(s)",
        "draft two",
        "score 9/10 · 0 issue(s)",
    ]
    done = events[-1]
    assert done.result == "draft two\n\n_Evaluator–optimizer: final score 9/10 after 2 round(s)._"
    assert done.iterations == 4
    assert [r.draft for r in done.summary.rounds] == ["draft one", "draft two"]


async def test_prompts_carry_history_then_the_latest_draft_score_and_issues() -> None:
    book = {
        "generator": [[call("submitDraft", draft="v1")], [call("submitDraft", draft="v2")]],
        "critic": [*_round(4, ["cite a source", "shorter"]), *_round(8, [])],
    }
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    await run_inproc("evaluator_optimizer", "Explain CRDTs.", book=book, history=history, seen=seen)
    first, second = prompts(seen, "generator")
    assert first.startswith("Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\n")
    assert first.endswith("Produce a high-quality deliverable for this request:\nExplain CRDTs.")
    assert "Your latest draft:\nv1" in second and "It scored 4/10" in second
    assert "1. cite a source\n2. shorter" in second
    assert prompts(seen, "critic")[1].endswith("Draft to review:\nv2")


async def test_round_cap_keeps_the_best_draft_not_the_last(run_events: RunEvents) -> None:
    book = {
        "generator": [[call("submitDraft", draft=f"d{i}")] for i in range(1, 4)],
        "critic": [*_round(6, ["a"]), *_round(7, ["b"]), *_round(3, ["c"])],
    }
    events = await run_events("evaluator_optimizer", book=book, max_rounds=3)
    assert_contract(events)
    assert [c.round for c in only(events, "critique")] == [1, 2, 3]
    assert events[-1].result.startswith("d2\n\n_Evaluator–optimizer: final score 7/10 after 3 round(s)._")


async def test_threshold_is_overridable(run_events: RunEvents) -> None:
    book = {"generator": [[call("submitDraft", draft="ok")]], "critic": _round(6, [])}
    events = await run_events("evaluator_optimizer", book=book, threshold=6)
    assert [c.passed for c in only(events, "critique")] == [True]


async def test_a_critic_without_a_critique_scores_zero(run_events: RunEvents) -> None:
    book = {"generator": [[call("submitDraft", draft="x")]], "critic": [[{"text": "looks fine"}]]}
    events = await run_events("evaluator_optimizer", book=book, max_rounds=1)
    assert [(c.score, c.passed, c.issues) for c in only(events, "critique")] == [(0, False, [])]
    assert events[-1].type == "workflow_complete"


async def test_unscripted_run_completes_with_the_test_model(run_events: RunEvents) -> None:
    events = await run_events("evaluator_optimizer")
    assert_contract(events)
    assert events[-1].type == "workflow_complete"


async def test_provider_error_mid_run_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {"generator": [[call("submitDraft", draft="x")]], "critic": [[fail("rate limited upstream")]]}
    events = await run_events("evaluator_optimizer", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "critic" in events[-1].error and "rate limited upstream" in events[-1].error
    assert types(events)[-2] == "iteration_start"


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        "generator": [[{**call("submitDraft", draft="x"), "usage": usage}, {"text": "sent", "usage": usage}]],
        "critic": [[{**call("critique", score=9, issues=[]), "usage": usage}]],
    }
    events = await run_events("evaluator_optimizer", book=book, max_rounds=1)
    ends = only(events, "iteration_end")
    assert ends[0].input_tokens == 2000 and ends[0].output_tokens == 1000  # both steps of the call
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
    assert ends[0].cost_usd == (2000 * 3.0 + 1000 * 15.0) / 1_000_000  # the test price of conftest
