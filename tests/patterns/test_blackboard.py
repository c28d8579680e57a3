"""Blackboard: rotation and model controllers, the three stop rules, board updates, the result and summary."""

from __future__ import annotations

from typing import Any

from teamster.harness.contracts import StreamRequest
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say, types


def write(section: str, content: str, ready: bool = False) -> list[dict[str, Any]]:
    """One contributor call that writes one section."""
    return [call("writeSection", section=section, content=content, solutionReady=ready)]


def choose(role: str, reason: str = "") -> list[dict[str, Any]]:
    return [call("chooseNext", role=role, reason=reason)]


TURN = ["iteration_start", "agent_step", "agent_step", "iteration_end"]
WRITE_TURN = ["iteration_start", "agent_step", "agent_step", "blackboard_update", "iteration_end"]


def agents_by_round(events: list[Any]) -> list[tuple[str, int]]:
    return [(e.agent, e.iteration) for e in only(events, "iteration_start")]


async def test_rotation_writes_in_roster_order_until_solution_ready(run_events: RunEvents) -> None:
    book = {
        "analyst": [write("analysis", "facts and constraints")],
        "planner": [write("plan", "1. do it")],
        "critic": [write("Solution", "the answer", ready=True)],
    }
    events = await run_events("blackboard", "Plan a picnic.", book=book)
    assert_contract(events)
    assert types(events) == ["workflow_start", *WRITE_TURN * 3, "workflow_complete"]
    assert events[0].starting_agent == "analyst"
    assert agents_by_round(events) == [("analyst", 1), ("planner", 2), ("critic", 3)]
    assert [e.model_dump(include={"section", "author", "preview"}) for e in only(events, "blackboard_update")] == [
        {"section": "analysis", "author": "analyst", "preview": "facts and constraints"},
        {"section": "plan", "author": "planner", "preview": "1. do it"},
        {"section": "Solution", "author": "critic", "preview": "the answer"},
    ]
    assert [e.output_preview for e in only(events, "iteration_end")] == [
        "facts and constraints",
        "1. do it",
        "the answer",
    ]
    done = events[-1]
    assert done.iterations == 3
    assert done.agents_used == ["analyst", "planner", "critic"]
    assert done.result == (
        "# Blackboard\n\n## ✅ Solution\nthe answer\n\n## analysis\n_analyst_\n\nfacts and constraints"
        "\n\n## plan\n_planner_\n\n1. do it"
    )
    assert done.summary.model_dump() == {
        "kind": "blackboard",
        "sections": [
            {"section": "analysis", "author": "analyst", "content": "facts and constraints"},
            {"section": "plan", "author": "planner", "content": "1. do it"},
            {"section": "Solution", "author": "critic", "content": "the answer"},
        ],
    }


async def test_two_rounds_without_growth_stop_the_run(run_events: RunEvents) -> None:
    book = {
        "analyst": [write("analysis", "facts")],
        "planner": [write("analysis", "facts")],  # same content: no growth
        "critic": [[say("nothing to add")]],  # no write: no growth
    }
    events = await run_events("blackboard", book=book)
    assert_contract(events)
    assert agents_by_round(events) == [("analyst", 1), ("planner", 2), ("critic", 3)]
    assert len(only(events, "blackboard_update")) == 2
    assert [e.output_preview for e in only(events, "iteration_end")][-1] == "nothing to add"
    done = events[-1]
    assert done.iterations == 3
    # an unchanged overwrite still takes the author, as in the reference
    assert done.result == "# Blackboard\n\n## analysis\n_planner_\n\nfacts"


async def test_stale_rounds_is_overridable_and_growth_resets_it(run_events: RunEvents) -> None:
    book = {
        "analyst": [write("a", "1"), write("a", "2")],
        "planner": [write("a", "1"), [say("pass")]],
        "critic": [write("a", "2")],  # grows: the stale count starts over
    }
    events = await run_events("blackboard", book=book, stale_rounds=1)
    assert agents_by_round(events) == [("analyst", 1), ("planner", 2)]
    events = await run_events("blackboard", book=book, stale_rounds=2)
    assert [agent for agent, _ in agents_by_round(events)] == ["analyst", "planner", "critic", "analyst", "planner"]
    assert events[-1].iterations == 5


async def test_board_rounds_caps_a_growing_board(run_events: RunEvents) -> None:
    book = {role: [write(f"{role} {k}", "x") for k in range(3)] for role in ("analyst", "planner", "critic")}
    events = await run_events("blackboard", book=book, board_rounds=4)
    assert_contract(events)
    assert agents_by_round(events) == [("analyst", 1), ("planner", 2), ("critic", 3), ("analyst", 4)]
    assert events[-1].iterations == 4
    assert [s.section for s in events[-1].summary.sections] == ["analyst 0", "planner 0", "critic 0", "analyst 1"]


async def test_every_write_of_a_call_is_applied(run_events: RunEvents) -> None:
    both = {"function_calls": [write("a", "1")[0]["function_calls"][0], write("b", "2")[0]["function_calls"][0]]}
    events = await run_events("blackboard", book={"analyst": [[both]]}, board_rounds=1)
    assert [(e.section, e.author) for e in only(events, "blackboard_update")] == [("a", "analyst"), ("b", "analyst")]
    assert only(events, "iteration_end")[0].output_preview == "2"


async def test_prompts_carry_history_and_the_current_board() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier answer"}]
    book = {"analyst": [write("analysis", "facts")], "planner": [write("plan", "steps", ready=True)]}
    await run_inproc("blackboard", "Plan a picnic.", book=book, history=history, seen=seen)
    prior = "Prior conversation:\nUser: earlier question\nAssistant: earlier answer\n\n"
    (analyst,) = prompts(seen, "analyst")
    assert analyst == prior + (
        "TASK:\nPlan a picnic.\n\nCURRENT BLACKBOARD:\n(the blackboard is empty — be the first to contribute)\n\n"
        'You are the "analyst". Read the board above, then call writeSection once to add or refine your section. '
        "Set solutionReady=true only if the task is now fully solved."
    )
    (planner,) = prompts(seen, "planner")
    assert "CURRENT BLACKBOARD:\n## analysis  _(by analyst)_\nfacts\n\n" in planner
    assert 'You are the "planner" contributor' in next(r.system_prompt for r in seen if r.agent_id == "planner")


async def test_model_controller_picks_and_falls_back_to_rotation(run_events: RunEvents) -> None:
    book = {
        "controller": [choose("critic", "needs review first"), [say("no idea")], choose("boss")],
        "critic": [write("risks", "rain")],
        "analyst": [write("analysis", "facts")],
        "planner": [write("solution", "go", ready=True)],
    }
    events = await run_events("blackboard", book=book, controller="model")
    assert_contract(events)
    assert events[0].starting_agent == "controller"
    # the controller's call and the contributor's share the round number
    assert agents_by_round(events) == [
        ("controller", 1),
        ("critic", 1),
        ("controller", 2),
        ("analyst", 2),  # no choice: the rotation's least-contributed role, roster order first
        ("controller", 3),
        ("planner", 3),  # "boss" is not a role: the tool refuses it, the rotation picks
    ]
    controller_previews = [e.output_preview for e in only(events, "iteration_end") if e.agent == "controller"]
    assert controller_previews == [
        "critic: needs review first",
        "analyst (rotation: no valid choice)",
        "planner (rotation: no valid choice)",
    ]
    assert types(events)[1:10] == [*TURN, *WRITE_TURN]
    done = events[-1]
    assert done.iterations == 3
    assert done.agents_used == ["controller", "critic", "analyst", "planner"]
    assert done.result.startswith("# Blackboard\n\n## ✅ Solution\ngo\n\n## risks\n_critic_\n\nrain")


async def test_model_controller_sees_the_board_and_the_contributions() -> None:
    seen: list[StreamRequest] = []
    book = {"controller": [choose("planner"), choose("planner")], "planner": [write("plan", "p1"), write("plan", "p2")]}
    await run_inproc("blackboard", "Plan.", book=book, seen=seen, controller="model", board_rounds=2)
    first, second = prompts(seen, "controller")
    assert "CURRENT BLACKBOARD:\n(the blackboard is empty" in first
    assert "Contributions so far: analyst 0, planner 0, critic 0." in first
    assert "## plan  _(by planner)_\np1" in second
    assert "Contributions so far: analyst 0, planner 1, critic 0." in second


async def test_unscripted_runs_complete_with_the_test_model(run_events: RunEvents) -> None:
    # the test model always writes section "example" with the same content: the board stops growing
    for controller in ("rotation", "model"):
        events = await run_events("blackboard", controller=controller)
        assert_contract(events)
        assert events[-1].type == "workflow_complete"
        assert events[-1].iterations == 3
        assert (
            events[-1].result
            == f"# Blackboard\n\n## example\n_{'critic' if controller == 'rotation' else 'analyst'}_\n\nexample"
        )


async def test_provider_error_mid_run_is_a_workflow_error(run_events: RunEvents) -> None:
    book = {"analyst": [write("a", "1")], "planner": [[fail("rate limited upstream")]]}
    events = await run_events("blackboard", book=book)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "planner" in events[-1].error and "rate limited upstream" in events[-1].error
    assert types(events)[-2] == "iteration_start"


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    book = {
        "controller": [[{**choose("analyst")[0], "usage": usage}]],
        "analyst": [[{**write("s", "x", ready=True)[0], "usage": usage}, {"text": "ok", "usage": usage}]],
    }
    events = await run_events("blackboard", book=book, controller="model")
    ends = only(events, "iteration_end")
    assert ends[1].input_tokens == 2000 and ends[1].output_tokens == 1000  # both steps of the call
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
