"""Choreographed (v2): backend, frontend and design agents, peers with no coordinator, take turns in a ring.

Each turn an agent reads its inbox (in the prompt), refines its part, messages peers with coordinationTool and
calls markCompleted once its part is specified. The tools only record intent: after the call the runner
delivers each message on the bus (a `bus_message`). The ring starts at `backend` and skips completed agents;
the run ends when all three have completed or after `max_iterations` agent calls (default 10). A failed agent
call becomes that agent's output "Error: …" and the ring goes on; when every agent's latest call failed, the
run ends in `workflow_error`. The result is a markdown build plan of the agents' outputs.

Deviations from the reference: `workflow_start` comes first and the starting agent is fixed (the reference
published the query before it and picked at random); only agent calls count as iterations (the reference also
counted skipped agents and the final check); `agent_step` events and the real step count are emitted as in
every other pattern; the inbox is in the prompt instead of a readMessages tool, on the first turn too; a later
turn with an empty inbox is not told it is its first; an agent's output is its markCompleted summary when it
gave one; `workflow_complete` has a `result`; a message an agent addresses to itself is not delivered.

The full contract is in docs/patterns/choreographed.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from teamster.patterns.agents import AgentCall, AgentError, AgentResult
from teamster.patterns.events import AgentResult as AgentOutcome
from teamster.patterns.events import IterationEnd, preview
from teamster.patterns.history import with_history
from teamster.patterns.orchestrated import Bus
from teamster.patterns.run import Run
from teamster.patterns.tools import COORDINATE, MARK_COMPLETED
from teamster.protocol.clock import monotonic_ms

ROSTER = ("backend", "frontend", "design")
STARTING_AGENT = ROSTER[0]
MAX_ITERATIONS = 10
MAX_STEPS = 20
INBOX_SHOWN = 6  # the latest peer messages an agent sees
TOOLS = (COORDINATE, MARK_COMPLETED)

ROLES = {
    "backend": "the BACKEND agent: you own the APIs, the data model and the services",
    "frontend": "the FRONTEND agent: you own the components, their state and how they fetch data",
    "design": "the DESIGN agent: you own the UX flows, the layout and the visual specs, down to the pixel",
}


def _system(agent: str) -> str:
    peers = " and ".join(p for p in ROSTER if p != agent)
    return (
        f"You are {ROLES[agent]}. You work with the {peers} agents as equals; nobody coordinates you. Reach a peer "
        f"only with coordinationTool, recipientAgent exactly {peers}. On your first turn, design something concrete "
        "for your part (real endpoints, components or specs, not intentions), share it with your peers and ask "
        "them what you need from them; do not complete yet. On later turns your peers' messages are in the "
        "prompt: refine your part with them, and once it is fully specified and aligned with theirs, call "
        "markCompleted with your complete deliverable as the summary; that is what goes into the build plan."
    )


@dataclass
class Peer:
    name: str
    turns: int = 0
    output: str = ""  # the latest turn's deliverable, or "Error: …"
    duration_ms: int = 0
    completed: bool = False
    error: str | None = None  # why the latest turn failed


async def run(run: Run) -> None:
    cap = run.options.max_iterations or MAX_ITERATIONS
    run.start(STARTING_AGENT)
    bus = Bus(run)
    task = with_history(run.history(), run.query)
    for name in ROSTER:
        bus.publish("user", name, "user", task)
    peers = [Peer(name) for name in ROSTER]
    calls = 0
    position = ROSTER.index(STARTING_AGENT)
    while calls < cap and (peer := _next_open(peers, position)) is not None:
        calls += 1
        await _turn(run, bus, peer, task, calls)
        if all(p.error for p in peers):
            break  # all three failed their latest turn: the model is not answering
        position = ROSTER.index(peer.name) + 1
    ran = [p for p in peers if p.turns]
    if all(p.error for p in ran):
        run.fail("every agent failed: " + "; ".join(str(p.error) for p in ran))
        return
    run.complete(
        result=_plan(run.query, ran),
        agent_results=[
            AgentOutcome(agent=p.name, output=p.output, duration_ms=p.duration_ms, completed=p.completed) for p in ran
        ],
        iterations=calls,
        agents_used=[p.name for p in ran],
        message_bus_stats=bus.stats(),
    )


def _next_open(peers: list[Peer], position: int) -> Peer | None:
    """The first agent from `position` round the ring that has not completed."""
    for k in range(len(peers)):
        peer = peers[(position + k) % len(peers)]
        if not peer.completed:
            return peer
    return None


async def _turn(run: Run, bus: Bus, peer: Peer, task: str, iteration: int) -> None:
    """One agent call; a failed call is recorded as the agent's output instead of ending the run."""
    peer.turns += 1
    prompt = _prompt(peer, task, [f"- From {m.from_}: {m.content.strip()}" for m in bus.inbox(peer.name, "agent")])
    began = monotonic_ms()
    try:
        result = await run.call(
            AgentCall(peer.name, _system(peer.name), prompt, TOOLS, MAX_STEPS),
            iteration=iteration,
            tool_calls=_args_preview,
            preview_of=_output,
            completed=_completed,
        )
    except AgentError as exc:
        elapsed = _ms_since(began)
        peer.duration_ms += elapsed
        peer.error = str(exc)
        peer.output = f"Error: {peer.error}"
        # Run.call emits no iteration_end when the call raises; the turn still ends visibly
        run.emit(
            IterationEnd(
                iteration=iteration,
                agent=peer.name,
                duration_ms=elapsed,
                step_count=0,
                output_preview=preview(peer.output),
                completed=False,
            )
        )
        return
    peer.duration_ms += _ms_since(began)
    peer.output, peer.error, peer.completed = _output(result), None, _completed(result)
    for message in result.results(COORDINATE):
        if message.recipient_agent != peer.name:
            bus.publish(peer.name, message.recipient_agent, "agent", message.message_content)


def _prompt(peer: Peer, task: str, inbox: list[str]) -> str:
    shown = "\n".join(inbox[-INBOX_SHOWN:])
    if peer.turns == 1:
        received = f"\n\nMessages from your peers so far:\n{shown}" if shown else ""
        return (
            f"{task}{received}\n\nThis is your first turn. Share your initial plan with your peers using "
            "coordinationTool, then stop. You get their feedback next turn."
        )
    return (
        f"Original task: {task}\n\nLatest messages from your peers:\n{shown or '(none yet)'}\n\n"
        "Incorporate this feedback into your plan. If your part is now sufficiently specified given what your peers "
        "have shared, call markCompleted with your final deliverable. Only send another coordination message if you "
        "genuinely still need specific information; do NOT just re-share your initial plan. Prefer finalizing."
    )


def _completed(result: AgentResult) -> bool:
    return result.last(MARK_COMPLETED) is not None


def _output(result: AgentResult) -> str:
    """The markCompleted summary when the agent completed with one, else the turn's text."""
    done = result.last(MARK_COMPLETED)
    return done.summary if done is not None and done.summary.strip() else result.text


def _args_preview(arguments: dict[str, Any]) -> str:
    return preview(json.dumps(arguments, ensure_ascii=False, separators=(",", ":")))


def _ms_since(began: int) -> int:
    return monotonic_ms() - began


def _plan(query: str, ran: list[Peer]) -> str:
    """The build plan: the goal, then each agent's latest deliverable in roster order."""
    sections = [
        f"## {p.name.capitalize()} ({'completed' if p.completed else 'not completed'})\n\n{p.output}" for p in ran
    ]
    return "\n\n".join([f"# Build plan\n\n**Goal:** {query}", *sections])
