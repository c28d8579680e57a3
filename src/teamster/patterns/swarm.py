"""Swarm (v9): identical, leaderless agents each add one trace per round to a shared scratchpad; a distiller
turns all the traces into the answer.

Caps: `swarm_size` (default 4) agents, `swarm_rounds` (default 3) rounds; a round that adds no trace ends the
rounds early. Every agent of a round reads the same snapshot of the scratchpad. Agents of round r run as
iteration r; the distiller runs as iteration (rounds run) + 1, and `iterations` is the number of rounds run.
Deviation from the reference: after an early stop the distiller's iteration follows the last round run
(the reference always used its round cap + 1).
"""

from __future__ import annotations

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import SwarmSummary, Trace, TraceRecord, preview
from teamster.patterns.history import with_history
from teamster.patterns.parallel import gather_all
from teamster.patterns.run import Run
from teamster.patterns.tools import CONTRIBUTE

DISTILLER = "distiller"
EMPTY_SCRATCHPAD = "(the scratchpad is empty — you are among the first; lay solid groundwork)"


def system(agent: str) -> str:
    return (
        f"You are {agent}, one of several identical agents solving a task together. There is no leader and no "
        "fixed role: everyone works the same problem at the same time and leaves traces on a shared scratchpad "
        "for the others to build on. Read the notes so far, then add ONE concrete improvement, correction or new "
        "angle; never repeat what is there. Be specific, not meta. End by calling contribute exactly once."
    )


def scratchpad(traces: list[TraceRecord]) -> str:
    return "\n".join(f"- [round {t.round} · {t.agent}] {t.text}" for t in traces) or EMPTY_SCRATCHPAD


def _contribution(result: AgentResult) -> str:
    contributed = result.last(CONTRIBUTE)
    return contributed.text.strip() if contributed is not None else ""


def _shown(result: AgentResult) -> str:
    """The contribution, or what the agent said when it did not contribute."""
    return _contribution(result) or result.text


def _round_prompt(query: str, snapshot: str, agent: str) -> str:
    return (
        f"TASK:\n{query}\n\nSHARED SCRATCHPAD (all agents' traces so far):\n{snapshot}\n\nYou are {agent}. Read "
        "the scratchpad, then call contribute once with ONE concrete improvement, correction, or new angle that "
        "builds on it — do not repeat what's there."
    )


def _distill_prompt(query: str, traces: list[TraceRecord]) -> str:
    return (
        f"TASK:\n{query}\n\nThe swarm left these traces on the shared scratchpad:\n{scratchpad(traces)}\n\n"
        "Synthesize ALL of the traces above into a single, coherent, complete answer to the task. Integrate the "
        "best ideas, resolve contradictions, drop redundancy, and fill any gaps. Call contribute once with the "
        "final polished answer."
    )


async def _contribute(run: Run, agent: str, round_no: int, prompt: str) -> str:
    result = await run.call(
        AgentCall(agent, system(agent), prompt, [CONTRIBUTE], max_steps=2),
        iteration=round_no,
        preview_of=_shown,
    )
    text = _contribution(result)
    run.emit(Trace(round=round_no, agent=agent, preview=preview(text)))
    return text


async def run(run: Run) -> None:
    agents = [f"agent {i}" for i in range(1, run.options.swarm_size + 1)]
    run.start(agents[0])
    history = run.history()
    traces: list[TraceRecord] = []
    rounds = 0
    for round_no in range(1, run.options.swarm_rounds + 1):
        snapshot = scratchpad(traces)  # this round's traces land only after every agent has read it
        prompts = [with_history(history, _round_prompt(run.query, snapshot, agent)) for agent in agents]
        texts = await gather_all(*(_contribute(run, a, round_no, p) for a, p in zip(agents, prompts, strict=True)))
        rounds = round_no
        added = [TraceRecord(round=round_no, agent=a, text=t) for a, t in zip(agents, texts, strict=True) if t]
        traces.extend(added)
        if not added:
            break
    distill_prompt = with_history(history, _distill_prompt(run.query, traces))
    distilled = await run.call(
        AgentCall(DISTILLER, system(DISTILLER), distill_prompt, [CONTRIBUTE], max_steps=2),
        iteration=rounds + 1,
        preview_of=_shown,
    )
    run.complete(
        result=_shown(distilled),
        iterations=rounds,
        agents_used=agents,
        summary=SwarmSummary(rounds=rounds, traces=traces),
    )
