"""Hierarchical: the tree's events, the root retry, the depth/width/node caps under parallelism, synthesis, report."""

from __future__ import annotations

import asyncio
from typing import Any

from teamster.harness.contracts import StreamRequest
from teamster.patterns.events import Event
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say, types


def spawns(*parts: tuple[str, str]) -> dict[str, Any]:
    """One turn that spawns a sub-agent per `(role, task)`."""
    return {"function_calls": [call("spawnSubAgent", role=r, task=t)["function_calls"][0] for r, t in parts]}


def finalize(deliverable: str) -> dict[str, Any]:
    return call("finalize", deliverable=deliverable)


def of(events: list[Event], agent: str) -> list[tuple[str, int | None]]:
    """The (type, iteration) of each event an agent call emitted, in order."""
    return [(e.type, e.iteration) for e in events if getattr(e, "agent", None) == agent]  # type: ignore[attr-defined]


def spawned(events: list[Event]) -> list[tuple[str, str | None, str, str, int]]:
    return [(e.id, e.parent_id, e.role, e.task, e.depth) for e in only(events, "agent_spawn")]


def position(events: list[Event], kind: str, **fields: Any) -> int:
    """The index of the first event of `kind` whose fields match."""
    return next(
        i
        for i, e in enumerate(events)
        if e.type == kind and all(getattr(e, k) == v for k, v in fields.items())  # type: ignore[attr-defined]
    )


def synthesis_starts(events: list[Event], node: str) -> int:
    """The index of the first event of a node's calls after its first pass ended."""
    first_end = position(events, "iteration_end", agent=node)
    return next(i for i, e in enumerate(events) if i > first_end and getattr(e, "agent", None) == node)


def last_event_under(events: list[Event], node: str) -> int:
    """The index of the last event of any call below `node`."""
    return max(i for i, e in enumerate(events) if getattr(e, "agent", "").startswith(node + "."))


def calls_of(events: list[Event], agent: str) -> list[str]:
    return [t for t, _ in of(events, agent)]


TREE = {
    "root": [[spawns(("researcher", "find facts"), ("writer", "write it"))], [finalize("final answer")]],
    "root.0": [[finalize("facts")]],
    "root.1": [[spawns(("editor", "polish"))], [finalize("written")]],
    "root.1.0": [[finalize("polished")]],
}


async def test_tree_events_per_node_and_phase_boundaries(run_events: RunEvents) -> None:
    events = await run_events("hierarchical", "Write a report.", book=TREE)
    assert_contract(events)
    assert types(events)[:6] == [
        "workflow_start",
        "agent_spawn",
        "iteration_start",
        "agent_step",
        "agent_step",
        "iteration_end",
    ]
    assert events[0].starting_agent == "root"
    assert spawned(events) == [
        ("root", None, "lead", "Write a report.", 0),
        ("root.0", "root", "researcher", "find facts", 1),
        ("root.1", "root", "writer", "write it", 1),
        ("root.1.0", "root.1", "editor", "polish", 2),
    ]
    # iteration numbers are reserved with the node slots: children right after the parent, then their subtrees
    assert of(events, "root") == [
        ("iteration_start", 1),
        *[("agent_step", 1)] * 2,
        ("iteration_end", 1),
        *[("agent_step", 1)] * 2,
        ("iteration_end", 1),
    ]
    assert of(events, "root.0") == [("iteration_start", 2), *[("agent_step", 2)] * 2, ("iteration_end", 2)]
    assert of(events, "root.1") == [
        ("iteration_start", 3),
        *[("agent_step", 3)] * 2,
        ("iteration_end", 3),
        *[("agent_step", 3)] * 2,
        ("iteration_end", 3),
    ]
    assert of(events, "root.1.0") == [("iteration_start", 10), *[("agent_step", 10)] * 2, ("iteration_end", 10)]
    # a batch is announced together, after the parent's first pass and before any child starts
    root_first_end = position(events, "iteration_end", agent="root")
    batch = [position(events, "agent_spawn", id=i) for i in ("root.0", "root.1")]
    assert batch == [root_first_end + 1, root_first_end + 2]
    assert batch[1] < position(events, "iteration_start", agent="root.0")
    grandchild = position(events, "agent_spawn", id="root.1.0")
    assert (
        position(events, "iteration_end", agent="root.1")
        < grandchild
        < position(events, "iteration_start", agent="root.1.0")
    )
    # each parent synthesises only after all its children ended
    assert synthesis_starts(events, "root") > last_event_under(events, "root")
    assert synthesis_starts(events, "root.1") > last_event_under(events, "root.1")
    previews = [(e.agent, e.output_preview) for e in only(events, "iteration_end")]
    assert ("root.1", "[synthesis] written") in previews and ("root", "[synthesis] final answer") in previews
    assert ("root.1.0", "polished") in previews and ("root.0", "facts") in previews
    done = events[-1]
    assert done.result == "final answer"
    assert done.iterations == 4
    assert done.report is None
    assert sorted(done.agents_used) == ["root", "root.0", "root.1", "root.1.0"]  # siblings may end in any order


async def test_synthesis_prompt_lists_children_in_order_and_history_reaches_the_root_only() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    await run_inproc("hierarchical", "Write a report.", book=TREE, history=history, seen=seen)
    first, synthesis = prompts(seen, "root")
    prior = "Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\n"
    assert first == prior + "Write a report."
    assert synthesis.startswith(prior + "Original task: Write a report.\n\nYour sub-agents returned these results:")
    assert (
        "### researcher\nTask: find facts\n\nResult:\nfacts\n\n---\n\n### writer\nTask: write it\n\nResult:\nwritten"
        in synthesis
    )
    assert "not delegated" not in synthesis
    assert prompts(seen, "root.0") == ["find facts"]
    assert prompts(seen, "root.1")[1].startswith("Original task: write it\n\n")
    assert "### editor\nTask: polish\n\nResult:\npolished" in prompts(seen, "root.1")[1]


async def test_root_retry_when_the_lead_does_not_decompose(run_events: RunEvents) -> None:
    book = {
        "root": [[say("I'll just answer: 42")], [spawns(("analyst", "part a"))], [finalize("combined")]],
        "root.0": [[finalize("a done")]],
    }
    events = await run_events("hierarchical", "Plan a launch.", book=book, max_depth=1)
    assert_contract(events)
    # the retry emits only an extra iteration_end with the root's number, as in the reference
    assert calls_of(events, "root") == [
        "iteration_start",
        "agent_step",
        "iteration_end",
        "agent_step",
        "agent_step",
        "iteration_end",
        "agent_step",
        "agent_step",
        "iteration_end",
    ]
    assert [e.iteration for e in only(events, "iteration_end") if e.agent == "root"] == [1, 1, 1]
    assert [e.output_preview for e in only(events, "iteration_end") if e.agent == "root"] == [
        "I'll just answer: 42",
        "Done: called 1 function(s).",
        "[synthesis] combined",
    ]
    assert [s[0] for s in spawned(events)] == ["root", "root.0"]
    assert events[-1].result == "combined"
    assert events[-1].iterations == 2


async def test_retry_prompt_repeats_the_task_with_history() -> None:
    seen: list[StreamRequest] = []
    book = {"root": [[say("no")], [say("still no")]]}
    history = [{"role": "user", "content": "hi"}]
    await run_inproc("hierarchical", "Plan a launch.", book=book, history=history, seen=seen)
    first, retry = prompts(seen, "root")
    assert retry.startswith(first + "\n\nYou did not break this down. Decompose it now: identify its 2–4 natural parts")


async def test_a_lead_that_refuses_twice_answers_alone(run_events: RunEvents) -> None:
    book = {"root": [[finalize("solo answer")], [say("still no")]]}
    events = await run_events("hierarchical", "What is 2+2?", book=book)
    assert_contract(events)
    assert [s[0] for s in spawned(events)] == ["root"]
    assert [e.output_preview for e in only(events, "iteration_end")] == ["solo answer", "still no"]
    assert events[-1].result == "solo answer"
    assert events[-1].iterations == 1


async def test_max_children_runs_the_first_spawns_and_tells_the_parent_about_the_rest() -> None:
    seen: list[StreamRequest] = []
    parts = [(f"role{i}", f"task {i}") for i in range(5)]
    book = {"root": [[spawns(*parts)], [finalize("merged")]]}
    events = await run_inproc("hierarchical", "Big job.", book=book, seen=seen, max_depth=1)
    assert_contract(events)
    assert [s[0] for s in spawned(events)] == ["root", "root.0", "root.1", "root.2", "root.3"]
    assert events[-1].iterations == 5
    synthesis = prompts(seen, "root")[1]
    assert "### role3\nTask: task 3" in synthesis and "### role4" not in synthesis
    assert "were not delegated because the team's size caps were reached; cover them yourself:\n- role4: task 4\n" in (
        synthesis
    )
    # at the depth cap a node is not offered spawnSubAgent at all
    child_tools = {tuple(t.name for t in r.tools) for r in seen if r.agent_id == "root.0"}
    assert child_tools == {("pattern::finalize",)}
    assert {tuple(t.name for t in r.tools) for r in seen if r.agent_id == "root"} == {
        ("pattern::spawnSubAgent", "pattern::finalize"),
        ("pattern::finalize", "pattern::generateReport"),
    }


def _full_tree() -> dict[str, list[list[dict[str, Any]]]]:
    book: dict[str, list[list[dict[str, Any]]]] = {"root": [[spawns(*[(f"part{i}", f"part {i}") for i in range(4)])]]}
    for i in range(4):
        book[f"root.{i}"] = [[spawns(*[(f"sub{i}{j}", f"sub {i}.{j}") for j in range(4)])]]
    return book


async def test_node_cap_holds_with_parallel_children(run_events: RunEvents) -> None:
    events = await run_events("hierarchical", "Huge job.", book=_full_tree())
    assert_contract(events)
    ids = [s[0] for s in spawned(events)]
    # the reference would run 1 + 4 + 16 = 21 nodes; the 14 free slots are shared 3, 3, 2, 2 before launch
    assert len(ids) == 15
    assert [sum(1 for i in ids if i.startswith(f"root.{c}.")) for c in range(4)] == [3, 3, 2, 2]
    assert events[-1].iterations == 15
    starts = {e.agent: e.iteration for e in only(events, "iteration_start")}
    assert sorted(starts.values()) == list(range(1, 16))
    assert [starts[f"root.{c}"] for c in range(4)] == [2, 3, 4, 5]
    assert [starts[f"root.0.{j}"] for j in range(3)] == [6, 7, 8]
    assert [starts[f"root.3.{j}"] for j in range(2)] == [14, 15]


async def test_node_cap_tells_the_child_its_limit_and_lists_dropped_parts() -> None:
    seen: list[StreamRequest] = []
    await run_inproc("hierarchical", "Huge job.", book=_full_tree(), seen=seen)
    system = next(r.system_prompt for r in seen if r.agent_id == "root.2")
    assert "(at most 2)" in system
    synthesis = prompts(seen, "root.2")[1]
    assert "cover them yourself:\n- sub22: sub 2.2\n- sub23: sub 2.3\n" in synthesis


async def test_max_nodes_is_overridable_and_bounds_the_first_batch(run_events: RunEvents) -> None:
    events = await run_events("hierarchical", "Job.", book=_full_tree(), max_nodes=4)
    assert_contract(events)
    assert [s[0] for s in spawned(events)] == ["root", "root.0", "root.1", "root.2"]
    assert [e.iteration for e in only(events, "iteration_start")] == [1, 2, 3, 4]
    assert events[-1].iterations == 4


async def test_max_depth_zero_makes_the_root_a_leaf(run_events: RunEvents) -> None:
    events = await run_events("hierarchical", max_depth=0)
    assert_contract(events)
    assert types(events) == [
        "workflow_start",
        "agent_spawn",
        "iteration_start",
        "agent_step",
        "agent_step",
        "iteration_end",
        "workflow_complete",
    ]
    assert events[-1].result == "example"
    assert events[-1].iterations == 1


REPORT = {
    "title": "Launch plan",
    "summary": "Three phases.",
    "kpis": [{"label": "Budget", "value": "$10k", "trend": "up"}],
    "charts": [{"type": "bar", "data": [{"name": "Q1", "spend": 3}], "series": ["spend"]}],
    "sections": [{"heading": "Phase 1", "body": "Build."}],
}


async def test_root_synthesis_report_reaches_workflow_complete(run_events: RunEvents) -> None:
    synthesis = {
        "function_calls": [call("generateReport", **REPORT)["function_calls"][0], finalize("md")["function_calls"][0]]
    }
    book = {"root": [[spawns(("a", "x"))], [synthesis]], "root.0": [[finalize("x done")]]}
    events = await run_events("hierarchical", "Plan.", book=book)
    done = events[-1]
    assert done.result == "md"
    assert done.report == {
        "title": "Launch plan",
        "summary": "Three phases.",
        "kpis": [{"label": "Budget", "value": "$10k", "delta": None, "trend": "up"}],
        "charts": [
            {"type": "bar", "title": None, "data": [{"name": "Q1", "spend": 3}], "series": ["spend"], "xKey": "name"}
        ],
        "tables": [],
        "sections": [{"heading": "Phase 1", "body": "Build."}],
    }


async def test_a_report_without_finalize_is_the_result(run_events: RunEvents) -> None:
    book = {"root": [[spawns(("a", "x"))], [call("generateReport", **REPORT)]], "root.0": [[finalize("x done")]]}
    events = await run_events("hierarchical", "Plan.", book=book)
    assert events[-1].result == "# Launch plan\n\nThree phases.\n\n## Phase 1\n\nBuild."
    assert events[-1].report is not None


async def test_only_the_root_synthesis_may_report() -> None:
    seen: list[StreamRequest] = []
    await run_inproc("hierarchical", "Job.", book=TREE, seen=seen)
    offered = {r.agent_id: {t.name for t in r.tools} for r in seen if "Original task:" in str(r.messages[0].content)}
    assert offered == {"root": {"pattern::finalize", "pattern::generateReport"}, "root.1": {"pattern::finalize"}}


async def test_unscripted_run_completes_with_the_test_model(run_events: RunEvents) -> None:
    events = await run_events("hierarchical")
    assert_contract(events)
    # the test model spawns and finalizes at once: spawning wins, so the tree grows to the depth cap
    assert [s[0] for s in spawned(events)] == ["root", "root.0", "root.0.0"]
    assert events[-1].type == "workflow_complete"
    assert events[-1].iterations == 3
    assert events[-1].report is not None


async def test_provider_error_mid_run_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {"root": [[spawns(("a", "x"))], [fail("rate limited upstream")]], "root.0": [[finalize("x done")]]}
    events = await run_events("hierarchical", "Plan.", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "root" in events[-1].error and "rate limited upstream" in events[-1].error


async def test_a_failing_child_cancels_its_running_siblings() -> None:
    book = {
        "root": [[spawns(("a", "x"), ("b", "y"))]],
        "root.0": [[fail("boom")]],
        "root.1": [[{"text": "slow", "latency_ms": 60_000}]],
    }
    events = await run_inproc("hierarchical", "Plan.", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error" and "boom" in events[-1].error
    assert not [e for e in only(events, "iteration_end") if e.agent == "root.1"]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        "root": [
            [{**spawns(("a", "x")), "usage": usage}, {"text": "waiting", "usage": usage}],
            [{**finalize("all"), "usage": usage}],
        ],
        "root.0": [[{**finalize("x done"), "usage": usage}]],
    }
    events = await run_events("hierarchical", "Plan.", book=book, max_depth=1)
    ends = only(events, "iteration_end")
    assert ends[0].input_tokens == 2000 and ends[0].output_tokens == 1000  # both steps of the call
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
