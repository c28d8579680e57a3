"""Market: post → bid → award → execute → synthesise, the award algorithm, caps, fallbacks and failures."""

from __future__ import annotations

import asyncio
from random import Random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from teamster.harness.contracts import StreamRequest
from teamster.harness.providers.messages import text_of
from teamster.patterns.events import MarketBid
from teamster.patterns.market import ROSTER, award
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say, types
from tests.patterns.phases import assert_phases, call_events, calls, of_calls, of_type

Turns = list[list[dict[str, Any]]]


def post_tasks(*ids: str) -> dict[str, Any]:
    return call("postTasks", tasks=[{"id": i, "title": f"Title {i}", "description": f"Do {i}"} for i in ids])


def submit_bids(*offers: tuple[str, float]) -> dict[str, Any]:
    return call(
        "submitBids", bids=[{"taskId": t, "fit": f, "estCostUsd": 0.5, "rationale": f"why {t}"} for t, f in offers]
    )


def deliver(output: str) -> dict[str, Any]:
    return call("deliver", output=output)


def bid(task_id: str, agent: str, fit: float) -> MarketBid:
    return MarketBid(task_id=task_id, agent=agent, fit=fit, est_cost_usd=0)


AUCTION: dict[str, Turns] = {
    "dispatcher": [[post_tasks("t1", "t2", "t3")], [say("final answer")]],
    "researcher": [[submit_bids(("t1", 0.9), ("t2", 0.8))], [deliver("R1")]],
    "engineer": [[submit_bids(("t2", 0.9))], [deliver("E2")]],
    "designer": [[say("nothing fits me")]],
    "analyst": [[submit_bids(("t3", 0.7), ("t9", 1.0))], [deliver("A3")]],
}
BIDDERS = [(role, 2 + i) for i, role in enumerate(ROSTER)]
EXECUTIONS = [("researcher", 6), ("engineer", 7), ("analyst", 8)]


async def test_an_auction_runs_in_reference_order_with_exact_payloads(run_events: RunEvents) -> None:
    events = await run_events("market", book=AUCTION)
    assert_contract(events)
    assert events[0].starting_agent == "dispatcher"
    assert calls(events) == {
        ("dispatcher", 1): call_events(2),
        **{key: call_events(1 if key[0] == "designer" else 2) for key in BIDDERS},
        **{key: call_events(2) for key in EXECUTIONS},
        ("dispatcher", 9): call_events(1),
    }
    assert_phases(
        events,
        of_type("workflow_start"),
        of_calls(("dispatcher", 1)),
        of_type("task_posted"),
        of_calls(*BIDDERS),
        of_type("bid"),  # only once every bid is in
        of_type("task_awarded"),
        of_calls(*EXECUTIONS),
        of_calls(("dispatcher", 9)),
        of_type("workflow_complete"),
    )
    assert [(e.task_id, e.title) for e in only(events, "task_posted")] == [
        ("t1", "Title t1"),
        ("t2", "Title t2"),
        ("t3", "Title t3"),
    ]
    assert [(e.task_id, e.agent, e.fit, e.est_cost_usd) for e in only(events, "bid")] == [
        ("t1", "researcher", 0.9, 0.5),
        ("t2", "researcher", 0.8, 0.5),
        ("t2", "engineer", 0.9, 0.5),
        ("t3", "analyst", 0.7, 0.5),  # the bid on t9, never posted, is dropped
    ]
    assert [(e.task_id, e.agent) for e in only(events, "task_awarded")] == [
        ("t1", "researcher"),
        ("t2", "engineer"),
        ("t3", "analyst"),
    ]
    previews = {(e.agent, e.iteration): e.output_preview for e in only(events, "iteration_end")}
    assert previews == {
        ("dispatcher", 1): "posted 3 task(s)",
        ("researcher", 2): "submitted 2 bid(s)",
        ("engineer", 3): "submitted 1 bid(s)",
        ("designer", 4): "submitted 0 bid(s)",
        ("analyst", 5): "submitted 2 bid(s)",
        ("researcher", 6): "R1",
        ("engineer", 7): "E2",
        ("analyst", 8): "A3",
        ("dispatcher", 9): "[synthesis] final answer",
    }
    done = events[-1]
    assert (done.result, done.iterations, done.agents_used) == (
        "final answer",
        9,
        ["researcher", "engineer", "analyst"],
    )
    assert done.summary.model_dump() == {
        "kind": "market",
        "tasks": [{"task_id": i, "title": f"Title {i}", "description": f"Do {i}"} for i in ("t1", "t2", "t3")],
        "bids": [
            {"task_id": "t1", "agent": "researcher", "fit": 0.9, "est_cost_usd": 0.5, "rationale": "why t1"},
            {"task_id": "t2", "agent": "researcher", "fit": 0.8, "est_cost_usd": 0.5, "rationale": "why t2"},
            {"task_id": "t2", "agent": "engineer", "fit": 0.9, "est_cost_usd": 0.5, "rationale": "why t2"},
            {"task_id": "t3", "agent": "analyst", "fit": 0.7, "est_cost_usd": 0.5, "rationale": "why t3"},
        ],
        "awards": [
            {"task_id": "t1", "agent": "researcher", "output": "R1"},
            {"task_id": "t2", "agent": "engineer", "output": "E2"},
            {"task_id": "t3", "agent": "analyst", "output": "A3"},
        ],
    }


async def test_prompts_history_and_the_tools_each_mode_offers() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    await run_inproc("market", "Plan a launch.", book=AUCTION, history=history, seen=seen)
    post_prompt, synthesis = prompts(seen, "dispatcher")
    assert post_prompt.startswith("Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\n")
    assert post_prompt.endswith("call postTasks:\n\nPlan a launch.")
    bidding, executing = prompts(seen, "researcher")
    assert "Posted tasks:\n- t1: Title t1 — Do t1\n- t2: Title t2 — Do t2\n- t3: Title t3 — Do t3" in bidding
    assert executing.startswith("Original request (context): Plan a launch.\n\nYou were AWARDED this task.")
    assert executing.endswith("Task t1: Title t1\nDo t1")
    blocks = "### Title t1 (researcher)\nR1\n\n---\n\n### Title t2 (engineer)\nE2\n\n---\n\n### Title t3 (analyst)\nA3"
    assert blocks in synthesis
    offered = {
        (r.agent_id, text_of(r.messages[0].content)): [t.name for t in r.tools] for r in seen if len(r.messages) == 1
    }
    assert offered[("dispatcher", post_prompt)] == ["pattern::postTasks"]
    assert offered[("dispatcher", synthesis)] == []
    assert offered[("researcher", bidding)] == ["pattern::submitBids"]
    assert offered[("researcher", executing)] == ["pattern::deliver"]


async def test_the_cap_moves_a_third_task_on_and_a_double_winner_runs_twice(run_events: RunEvents) -> None:
    book = {
        "dispatcher": [[post_tasks("t1", "t2", "t3")]],
        "researcher": [[submit_bids(("t1", 0.9), ("t2", 0.9), ("t3", 0.9))], [deliver("Ra")], [deliver("Rb")]],
        "engineer": [[submit_bids(("t3", 0.2))], [deliver("E")]],
    }
    events = await run_events("market", book=book)
    assert [(e.task_id, e.agent) for e in only(events, "task_awarded")] == [
        ("t1", "researcher"),
        ("t2", "researcher"),
        ("t3", "engineer"),
    ]
    executions = [(e.agent, e.iteration) for e in only(events, "iteration_start") if e.iteration in (6, 7, 8)]
    assert sorted(executions) == [("engineer", 8), ("researcher", 6), ("researcher", 7)]
    awards = events[-1].summary.awards
    assert sorted(a.output for a in awards if a.agent == "researcher") == ["Ra", "Rb"]
    assert events[-1].agents_used == ["researcher", "engineer"]

    raised = await run_events("market", book=book, tasks_per_agent=3)
    assert {e.agent for e in only(raised, "task_awarded")} == {"researcher"}
    assert raised[-1].iterations == 9


async def test_unbid_tasks_go_to_the_least_loaded_worker_even_past_the_cap(run_events: RunEvents) -> None:
    book = {"dispatcher": [[post_tasks("t1", "t2", "t3", "t4", "t5")]], **{r: [[say("no")]] for r in ROSTER}}
    events = await run_events("market", book=book, tasks_per_agent=1)
    assert only(events, "bid") == []
    assert [(e.task_id, e.agent) for e in only(events, "task_awarded")] == [
        ("t1", "researcher"),
        ("t2", "engineer"),
        ("t3", "designer"),
        ("t4", "analyst"),
        ("t5", "researcher"),
    ]
    assert events[-1].type == "workflow_complete"


async def test_no_tasks_falls_back_to_a_direct_answer_and_an_empty_market(run_events: RunEvents) -> None:
    book = {"dispatcher": [[call("postTasks", tasks=[])], [say("direct answer")]]}  # min 1 task: a tool error
    events = await run_events("market", book=book)
    assert_contract(events)
    assert types(events) == [
        "workflow_start",
        *["iteration_start", "agent_step", "agent_step", "iteration_end"],
        *["iteration_start", "agent_step", "iteration_end"],
        "workflow_complete",
    ]
    assert [(e.agent, e.iteration, e.output_preview) for e in only(events, "iteration_end")] == [
        ("dispatcher", 1, "posted 0 task(s)"),
        ("dispatcher", 2, "[synthesis] direct answer"),
    ]
    done = events[-1]
    assert (done.result, done.iterations, done.agents_used) == ("direct answer", 2, [])
    assert done.summary.model_dump() == {"kind": "market", "tasks": [], "bids": [], "awards": []}


async def test_the_direct_answer_carries_history() -> None:
    seen: list[StreamRequest] = []
    book = {"dispatcher": [[say("no tasks")], [say("direct")]]}
    await run_inproc("market", "Hi?", book=book, history=[{"role": "user", "content": "before"}], seen=seen)
    direct = prompts(seen, "dispatcher")[1]
    assert direct == "Prior conversation:\nUser: before\n\nAnswer this request directly in clear markdown:\n\nHi?"


async def test_a_repeated_task_id_is_posted_once(run_events: RunEvents) -> None:
    book = {"dispatcher": [[post_tasks("t1"), post_tasks("t1", "t2")]]}
    events = await run_events("market", book=book)
    assert [e.task_id for e in only(events, "task_posted")] == ["t1", "t2"]
    assert [e.task_id for e in only(events, "task_awarded")] == ["t1", "t2"]
    assert only(events, "iteration_end")[0].output_preview == "posted 2 task(s)"


async def test_an_empty_synthesis_falls_back_to_the_deliverables(run_events: RunEvents) -> None:
    book = {
        "dispatcher": [[post_tasks("t1")], [say("")]],
        "researcher": [[submit_bids(("t1", 1))], [deliver("only part")]],
    }
    events = await run_events("market", book=book)
    assert events[-1].result == "### Title t1 (researcher)\nonly part"


async def test_unscripted_run_completes_with_the_test_model(run_events: RunEvents) -> None:
    events = await run_events("market")
    assert_contract(events)
    done = events[-1]
    assert done.type == "workflow_complete"
    # the test model bids fit 1 on its one task from every worker: the tie goes to the first agent by name
    assert [(a.task_id, a.agent) for a in done.summary.awards] == [("example", "analyst")]
    assert done.iterations == 7


async def test_provider_error_mid_run_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {**AUCTION, "engineer": [[submit_bids(("t2", 0.9))], [fail("rate limited upstream")]]}
    events = await run_events("market", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "engineer" in events[-1].error and "rate limited upstream" in events[-1].error
    assert ("dispatcher", 9) not in calls(events)


async def test_a_failed_worker_cancels_its_siblings() -> None:
    slow = {"text": "thinking", "latency_ms": 60_000}
    book = {
        **AUCTION,
        "researcher": [[submit_bids(("t1", 0.9))], [slow]],
        "engineer": [[submit_bids(("t2", 0.9))], [fail("boom")]],
    }
    events = await run_inproc("market", book=book)
    assert events[-1].type == "workflow_error"
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running, nothing left to emit


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        "dispatcher": [[{**post_tasks("t1"), "usage": usage}], [{"text": "final", "usage": usage}]],
        "researcher": [[{**submit_bids(("t1", 1)), "usage": usage}], [{**deliver("x"), "usage": usage}]],
    }
    events = await run_events("market", book=book)
    ends = only(events, "iteration_end")
    assert len(ends) == 7
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)


# ---- the award algorithm ---------------------------------------------------------------------


def test_award_sorts_by_fit_then_task_then_agent() -> None:
    offers = [
        bid("t2", "analyst", 0.8),
        bid("t1", "engineer", 0.8),
        bid("t1", "analyst", 0.8),
        bid("t2", "designer", 0.8),
    ]
    assert award(["t1", "t2"], offers, ROSTER, 2) == {"t1": "analyst", "t2": "analyst"}
    assert award(["t1", "t2"], offers, ROSTER, 1) == {"t1": "analyst", "t2": "designer"}
    assert award(["t1"], [bid("t1", "analyst", 0.2), bid("t1", "researcher", 0.7)], ROSTER, 2) == {"t1": "researcher"}


def test_award_ignores_unknown_tasks_and_agents_and_keeps_task_order() -> None:
    offers = [bid("t9", "researcher", 1), bid("t2", "outsider", 1), bid("t2", "engineer", 0.1)]
    assert list(award(["t3", "t2"], offers, ROSTER, 2).items()) == [("t3", "researcher"), ("t2", "engineer")]


def test_award_leftovers_go_to_the_least_loaded_in_roster_order() -> None:
    offers = [bid("t1", "designer", 0.9), bid("t2", "designer", 0.9), bid("t3", "designer", 0.9)]
    assert award(["t1", "t2", "t3", "t4"], offers, ROSTER, 2) == {
        "t1": "designer",
        "t2": "designer",
        "t3": "researcher",
        "t4": "engineer",
    }


TASK_IDS = st.lists(st.sampled_from([f"t{i}" for i in range(8)]), min_size=1, max_size=8, unique=True)
BIDS = st.lists(
    st.builds(
        bid,
        st.sampled_from([f"t{i}" for i in range(10)]),
        st.sampled_from(ROSTER),
        st.floats(min_value=0, max_value=1),
    ),
    max_size=30,
)


@given(TASK_IDS, BIDS, st.integers(min_value=1, max_value=4), st.randoms(use_true_random=False))
def test_award_properties(tasks: list[str], offers: list[MarketBid], cap: int, rng: Random) -> None:
    winners = award(tasks, offers, ROSTER, cap)
    assert list(winners) == tasks  # every task, exactly once, in task order
    assert set(winners.values()) <= set(ROSTER)
    loads = [list(winners.values()).count(r) for r in ROSTER]
    if len(tasks) <= cap * len(ROSTER):
        assert max(loads) <= cap
    shuffled = list(offers)
    rng.shuffle(shuffled)
    assert award(tasks, shuffled, ROSTER, cap) == winners  # bid order never matters
    valid = [b for b in offers if b.task_id in tasks]
    if valid:
        top = min(valid, key=lambda b: (-b.fit, b.task_id, b.agent))
        assert winners[top.task_id] == top.agent
