"""Debate: turn order, the bus messages, who rebuts what, the judge and its fallback, rounds, failures."""

from __future__ import annotations

from teamster.harness.contracts import StreamRequest
from tests.patterns.conftest import RunEvents, assert_contract, call, fail, only, prompts, run_inproc, say, types


def argue(text: str) -> list[dict[str, object]]:
    """One debater call that argues `text`."""
    return [call("argue", argument=text)]


def book(rounds: int = 3, verdict: dict[str, object] | None = None) -> dict[str, list[list[dict[str, object]]]]:
    return {
        "Affirmative": [argue(f"pro {r}") for r in range(1, rounds + 1)],
        "Opposing": [argue(f"con {r}") for r in range(1, rounds + 1)],
        "Judge": [[call("verdict", **(verdict or {"winner": "Opposing", "reasoning": "why", "synthesis": "do this"}))]],
    }


TURN = ["iteration_start", "agent_step", "agent_step", "iteration_end"]


async def test_exact_order_rounds_then_judge(run_events: RunEvents) -> None:
    events = await run_events("debate", "Should we ban cars downtown?", book=book())
    assert_contract(events)
    assert types(events) == [
        "workflow_start",
        *[*TURN, "bus_message"] * 6,
        *TURN,
        "workflow_complete",
    ]
    assert events[0].starting_agent == "Affirmative"
    starts = [(e.agent, e.iteration) for e in only(events, "iteration_start")]
    assert starts == [
        ("Affirmative", 1),
        ("Opposing", 2),
        ("Affirmative", 3),
        ("Opposing", 4),
        ("Affirmative", 5),
        ("Opposing", 6),
        ("Judge", 7),
    ]
    messages = [e.model_dump() for e in only(events, "bus_message")]
    assert [(m["from"], m["to"], m["message_type"], m["content"]) for m in messages] == [
        ("Affirmative", "debate", "agent", "pro 1"),
        ("Opposing", "debate", "agent", "con 1"),
        ("Affirmative", "debate", "agent", "pro 2"),
        ("Opposing", "debate", "agent", "con 2"),
        ("Affirmative", "debate", "agent", "pro 3"),
        ("Opposing", "debate", "agent", "con 3"),
    ]
    assert [e.output_preview for e in only(events, "iteration_end")] == [
        "pro 1",
        "con 1",
        "pro 2",
        "con 2",
        "pro 3",
        "con 3",
        "Opposing: why",
    ]


async def test_result_and_summary(run_events: RunEvents) -> None:
    events = await run_events("debate", "Should we ban cars downtown?", book=book(rounds=2), debate_rounds=2)
    done = events[-1]
    assert done.result == "## Verdict\n\n**Winner:** Opposing\n\nwhy\n\n## Recommendation\n\ndo this"
    assert done.iterations == 5
    assert done.agents_used == ["Affirmative", "Opposing", "Judge"]
    assert done.summary.model_dump() == {
        "kind": "debate",
        "question": "Should we ban cars downtown?",
        "turns": [
            {"stance": "Affirmative", "round": 1, "argument": "pro 1"},
            {"stance": "Opposing", "round": 1, "argument": "con 1"},
            {"stance": "Affirmative", "round": 2, "argument": "pro 2"},
            {"stance": "Opposing", "round": 2, "argument": "con 2"},
        ],
        "verdict": {"winner": "Opposing", "reasoning": "why", "synthesis": "do this"},
    }


async def test_who_rebuts_what_and_the_judge_reads_the_transcript() -> None:
    seen: list[StreamRequest] = []
    history = [{"role": "user", "content": "we talked cities"}, {"role": "assistant", "content": "yes"}]
    await run_inproc("debate", "Ban cars?", book=book(rounds=2), history=history, seen=seen, debate_rounds=2)
    prior = "Prior conversation:\nUser: we talked cities\nAssistant: yes\n\n"
    pro1, pro2 = prompts(seen, "Affirmative")
    con1, con2 = prompts(seen, "Opposing")
    assert pro1 == prior + (
        "The question being debated:\nBan cars?\n\nThis is round 1. Open with the strongest case for your stance."
    )
    # the Opposing side rebuts the Affirmative of the same round, from round 1 on
    assert con1 == prior + (
        'The question being debated:\nBan cars?\n\nThis is round 1. Your opponent just argued:\n\n"pro 1"\n\n'
        "Directly rebut their specific points, then advance new support for your stance."
    )
    assert 'This is round 2. Your opponent just argued:\n\n"con 1"' in pro2
    assert 'This is round 2. Your opponent just argued:\n\n"pro 2"' in con2
    (judge,) = prompts(seen, "Judge")
    assert judge == prior + (
        "The question being debated:\nBan cars?\n\nFull debate transcript (Affirmative vs Opposing):\n\n"
        "### Round 1 — Affirmative\npro 1\n\n### Round 1 — Opposing\ncon 1\n\n"
        "### Round 2 — Affirmative\npro 2\n\n### Round 2 — Opposing\ncon 2\n\n"
        "Weigh both sides and call verdict with the winner, your reasoning, and a synthesized recommendation."
    )
    systems = {r.agent_id: r.system_prompt for r in seen}
    assert 'argue FOR the assigned stance: "the affirmative / pro position on: Ban cars?"' in systems["Affirmative"]
    assert 'argue FOR the assigned stance: "the opposing / con position on: Ban cars?"' in systems["Opposing"]


async def test_debate_rounds_is_overridable(run_events: RunEvents) -> None:
    events = await run_events("debate", book=book(rounds=1), debate_rounds=1)
    assert [(e.agent, e.iteration) for e in only(events, "iteration_start")] == [
        ("Affirmative", 1),
        ("Opposing", 2),
        ("Judge", 3),
    ]
    assert events[-1].iterations == 3


async def test_judge_without_a_verdict_is_a_consensus_of_its_text(run_events: RunEvents) -> None:
    scripted = {**book(rounds=1), "Judge": [[say("Both sides have a point; phase it in.")]]}
    events = await run_events("debate", book=scripted, debate_rounds=1)
    assert_contract(events)
    done = events[-1]
    assert done.result == (
        "## Verdict\n\n**Winner:** Consensus\n\n\n\n## Recommendation\n\nBoth sides have a point; phase it in."
    )
    assert done.summary.verdict.model_dump() == {
        "winner": "Consensus",
        "reasoning": "",
        "synthesis": "Both sides have a point; phase it in.",
    }
    assert only(events, "iteration_end")[-1].output_preview == "Consensus:"


async def test_a_debater_without_argue_argues_with_its_text(run_events: RunEvents) -> None:
    scripted = {**book(rounds=1), "Affirmative": [[say("plain words")]]}
    events = await run_events("debate", book=scripted, debate_rounds=1)
    assert only(events, "bus_message")[0].content == "plain words"
    assert events[-1].summary.turns[0].argument == "plain words"


async def test_unscripted_run_completes_with_the_test_model(run_events: RunEvents) -> None:
    events = await run_events("debate")
    assert_contract(events)
    assert events[-1].type == "workflow_complete"
    assert events[-1].iterations == 7


async def test_provider_error_mid_run_is_a_workflow_error(run_events: RunEvents) -> None:
    scripted = {**book(), "Opposing": [argue("con 1"), [fail("rate limited upstream")]]}
    events = await run_events("debate", book=scripted)
    assert_contract(events)
    assert events[-1].type == "workflow_error"
    assert "Opposing" in events[-1].error and "rate limited upstream" in events[-1].error
    assert types(events)[-2] == "iteration_start"
    assert len(only(events, "bus_message")) == 3


async def test_cost_totals_are_the_sum_of_the_calls(run_events: RunEvents) -> None:
    usage = {"input": 1000, "output": 500}
    scripted = {
        "Affirmative": [[{**call("argue", argument="a"), "usage": usage}, {"text": "sent", "usage": usage}]],
        "Opposing": [[{**call("argue", argument="b"), "usage": usage}]],
        "Judge": [[{**call("verdict", winner="x", reasoning="y", synthesis="z"), "usage": usage}]],
    }
    events = await run_events("debate", book=scripted, debate_rounds=1)
    ends = only(events, "iteration_end")
    assert ends[0].input_tokens == 2000 and ends[0].output_tokens == 1000  # both steps of the call
    done = events[-1]
    assert done.total_input_tokens == sum(e.input_tokens for e in ends)
    assert done.total_output_tokens == sum(e.output_tokens for e in ends)
    assert done.total_cost_usd == sum(e.cost_usd for e in ends)
