"""Debate (v5): an Affirmative and an Opposing debater argue for `debate_rounds` rounds, then a Judge decides.

Caps: `debate_rounds` (default 3). Each round the Affirmative argues, then the Opposing side rebuts it; each
argument is published as `bus_message{from: stance, to: "debate"}` right after that debater's `iteration_end`.
The judge reads the whole transcript; without a `verdict` the winner is "Consensus" and the judge's text is
the recommendation. `iterations` counts agent calls (2 per round, plus the judge).
Deviations from the reference: the Opposing side sees the Affirmative's argument in round 1 too (the reference
showed it only from round 2 on); every prompt carries the conversation so far, since each call starts afresh.
"""

from __future__ import annotations

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import BusMessage, DebateSummary, DebateTurn, DebateVerdict
from teamster.patterns.history import with_history
from teamster.patterns.run import Run
from teamster.patterns.tools import ARGUE, VERDICT

AFFIRMATIVE = "Affirmative"
OPPOSING = "Opposing"
JUDGE = "Judge"
CONSENSUS = "Consensus"

STANCES = {
    AFFIRMATIVE: "the affirmative / pro position on: {query}",
    OPPOSING: "the opposing / con position on: {query}",
}

JUDGE_SYSTEM = (
    "You are an impartial judge of a structured debate. Two debaters argued opposing stances across several "
    "rounds. Your job:\n\n"
    "- Weigh BOTH sides fairly on the merits of their arguments, not on which one spoke last.\n"
    "- Pick the stronger position, OR synthesize a balanced recommendation if both have real merit.\n"
    "- Justify your call with SPECIFICS drawn from the actual arguments made.\n"
    "- Always end by calling verdict exactly once with winner, reasoning, and synthesis."
)


def debater_system(stance: str) -> str:
    return (
        f'You are a skilled debater. You argue FOR the assigned stance: "{stance}".\n\n'
        "RULES:\n"
        "- Make the strongest possible case for your stance: marshal evidence, logic, and examples.\n"
        "- When you are shown the opponent's last argument, directly REBUT their specific points, then advance "
        "your own.\n"
        "- Be substantive and persuasive, not repetitive: add new angles each round.\n"
        "- Do not concede your stance. Stay in character as its advocate.\n"
        "- Always end by calling argue exactly once with your argument for this round."
    )


def _argument(result: AgentResult) -> str:
    argued = result.last(ARGUE)
    return argued.argument if argued is not None and argued.argument.strip() else result.text


def _debater_prompt(query: str, round_no: int, opponent: str) -> str:
    question = f"The question being debated:\n{query}\n\nThis is round {round_no}."
    if not opponent:
        return f"{question} Open with the strongest case for your stance."
    return (
        f'{question} Your opponent just argued:\n\n"{opponent}"\n\n'
        "Directly rebut their specific points, then advance new support for your stance."
    )


def _verdict(result: AgentResult) -> DebateVerdict:
    """The judge's verdict; without one, a "Consensus" whose recommendation is what the judge said."""
    given = result.last(VERDICT)
    verdict = (
        DebateVerdict(winner=given.winner, reasoning=given.reasoning, synthesis=given.synthesis)
        if given is not None
        else DebateVerdict(winner=CONSENSUS, reasoning="", synthesis="")
    )
    if not verdict.reasoning and not verdict.synthesis:
        verdict.synthesis = result.text
    return verdict


def transcript(turns: list[DebateTurn]) -> str:
    return "\n\n".join(f"### Round {t.round} — {t.stance}\n{t.argument}" for t in turns)


def result_markdown(verdict: DebateVerdict) -> str:
    return (
        f"## Verdict\n\n**Winner:** {verdict.winner}\n\n{verdict.reasoning}\n\n## Recommendation\n\n{verdict.synthesis}"
    )


async def _argue(run: Run, stance: str, round_no: int, opponent: str, iteration: int) -> DebateTurn:
    """One debater's turn, published to the debate right after its `iteration_end`."""
    prompt = with_history(run.history(), _debater_prompt(run.query, round_no, opponent))
    system = debater_system(STANCES[stance].format(query=run.query))
    result = await run.call(
        AgentCall(stance, system, prompt, [ARGUE], max_steps=3), iteration=iteration, preview_of=_argument
    )
    argument = _argument(result)
    # `from` is a Python keyword: the message is built from its wire names
    run.emit(BusMessage.model_validate({"from": stance, "to": "debate", "message_type": "agent", "content": argument}))
    return DebateTurn(stance=stance, round=round_no, argument=argument)


async def run(run: Run) -> None:
    run.start(AFFIRMATIVE)
    turns: list[DebateTurn] = []
    opposing = ""  # the Affirmative rebuts the Opposing argument of the previous round
    for round_no in range(1, run.options.debate_rounds + 1):
        turns.append(await _argue(run, AFFIRMATIVE, round_no, opposing, len(turns) + 1))
        turns.append(await _argue(run, OPPOSING, round_no, turns[-1].argument, len(turns) + 1))
        opposing = turns[-1].argument
    prompt = (
        f"The question being debated:\n{run.query}\n\nFull debate transcript ({AFFIRMATIVE} vs {OPPOSING}):\n\n"
        f"{transcript(turns)}\n\nWeigh both sides and call verdict with the winner, your reasoning, and a "
        "synthesized recommendation."
    )
    judged = await run.call(
        AgentCall(JUDGE, JUDGE_SYSTEM, with_history(run.history(), prompt), [VERDICT], max_steps=3),
        iteration=len(turns) + 1,
        preview_of=lambda r: f"{_verdict(r).winner}: {_verdict(r).reasoning}",
    )
    verdict = _verdict(judged)
    summary = DebateSummary(question=run.query, turns=turns, verdict=verdict)
    run.complete(result=result_markdown(verdict), iterations=len(turns) + 1, summary=summary)
