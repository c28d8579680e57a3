"""Orchestrated (v1): a coordinator plans, then hands one task at a time to a researcher, writer or editor.

Every agent call is one iteration (cap `max_iterations`, default 15). The run ends when the coordinator calls
markComplete, when the editor returns its final content (no markComplete needed after it), when the coordinator
answers with no tool signal (its text is the result), or at the cap ("Workflow incomplete: …"). Each turn's
prompt is built from the run's state the way the reference builds it from its message bus; every bus publish
is a `bus_message` event.

Deviations from the reference: markComplete wins over requestUserInput when both are called in one turn (the
reference asked first, so a model that calls every tool waited for a human); the coordinator's resume prompt
repeats the original request next to the answer; a specialist that returns without its return tool reaches
the coordinator with its text (the reference's prompt lost it); totals are on every `workflow_complete`, and
so is `message_bus_stats`. The researcher has no web search (no offline backend), and the editor has no
`assessQuality` (a random mock in the reference).

The full contract is in docs/patterns/orchestrated.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import AgentPlan, BusMessage, Handoff, IterationStart, PlanStep
from teamster.patterns.history import with_history
from teamster.patterns.run import Run
from teamster.patterns.tools import (
    ANALYZE,
    DELEGATE,
    FORMAT_CONTENT,
    MARK_COMPLETE,
    REQUEST_INPUT,
    RETURN_DRAFT,
    RETURN_FINAL,
    RETURN_FINDINGS,
    Delegation,
    DraftReturn,
    Final,
    Findings,
    Tool,
)

COORDINATOR = "coordinator"
RESEARCHER = "researcher"
WRITER = "writer"
EDITOR = "editor"
ORCHESTRATOR = "orchestrator"  # the runner's own name on the bus
USER = "user"
MAX_ITERATIONS = 15
INCOMPLETE = "Workflow incomplete: maximum iterations reached"
SPECIALIST_SOURCES = 8  # sources carried forward into a specialist's task
COORDINATOR_SOURCES = 5  # sources listed when results come back

BusKind = Literal["user", "agent", "system"]
Returned = Findings | DraftReturn | Final


@dataclass
class Bus:
    """A run's message bus: each publish is emitted as a `bus_message` and kept for inboxes and stats.

    Shared with the choreographed pattern, the other bus-based one.
    """

    run: Run
    messages: list[BusMessage] = field(default_factory=list)

    def publish(self, sender: str, recipient: str, kind: BusKind, content: str) -> None:
        message = BusMessage.model_validate({"from": sender, "to": recipient, "message_type": kind, "content": content})
        self.run.emit(message)
        self.messages.append(message)

    def inbox(self, agent: str, kind: BusKind) -> list[BusMessage]:
        return [m for m in self.messages if m.to == agent and m.message_type == kind]

    def stats(self) -> dict[str, int]:
        kinds = [m.message_type for m in self.messages]
        return {
            "total_messages": len(kinds),
            "user_messages": kinds.count("user"),
            "agent_messages": kinds.count("agent"),
            "system_messages": kinds.count("system"),
        }


@dataclass(frozen=True)
class Role:
    system: str
    tools: Sequence[Tool[Any, Any]]
    max_steps: int
    returns: Tool[Any, Any] | None = None  # a specialist's "back to the coordinator" tool


ROLES: dict[str, Role] = {
    COORDINATOR: Role(
        "You are the COORDINATOR of three specialists: researcher (facts and sources), writer (drafts) and "
        "editor (review and polish). Call analyzeRequest first to plan which specialists work, in which order. "
        "Then delegate to exactly ONE specialist per turn with delegateToAgent and stop: it works and reports "
        "back to you. When the work is done, call markComplete with the complete final response. Never do a "
        "specialist's work yourself. The user's message IS the task: never ask for a task or workflow id, never "
        "claim there is no active workflow, never treat the request as a status check. Call requestUserInput "
        "only for real ambiguity in the content (an audience or format that changes the result).",
        [ANALYZE, DELEGATE, REQUEST_INPUT, MARK_COMPLETE],
        10,
    ),
    RESEARCHER: Role(
        "You are the RESEARCHER. Gather the facts the task needs, from your own knowledge (you have no web "
        "search), structure the key findings, name your sources, and always end by calling returnFindings; "
        "usually recommend the writer next.",
        [RETURN_FINDINGS],
        20,
        RETURN_FINDINGS,
    ),
    WRITER: Role(
        "You are the WRITER. Turn the task and any research into well-structured content with an introduction, "
        "a body and a conclusion, in markdown. formatContent wraps text in a template when a style fits. End by "
        "calling returnDraft with the full draft; usually recommend the editor next.",
        [FORMAT_CONTENT, RETURN_DRAFT],
        8,
        RETURN_DRAFT,
    ),
    EDITOR: Role(
        "You are the EDITOR. Review the draft for clarity, coherence, grammar, structure and tone, keep its "
        "intent and voice, and call returnFinal with the complete polished text and the improvements you made.",
        [RETURN_FINAL],
        8,
        RETURN_FINAL,
    ),
}

KICKOFF = (
    "This is a brand-new request. There is no workflow already running, no earlier agent results to fetch and "
    "nothing to check: your job is to fulfil the request below. Analyze it, then delegate to a specialist. Call "
    "requestUserInput only if the request is genuinely too ambiguous to start."
)
NEXT_STEP = (
    "Based on this work, determine the next step:\n"
    "- If more work is needed, delegate to the appropriate next agent with full context\n"
    "- If the workflow is complete, call markComplete with the final output"
)


@dataclass
class Artifacts:
    """The latest findings, draft and sources, carried into later tasks so no specialist depends on the
    coordinator copying them."""

    findings: str = ""
    draft: str = ""
    sources: list[str] = field(default_factory=list)

    def capture(self, result: AgentResult) -> None:
        for found in result.results(RETURN_FINDINGS):
            self.findings = found.findings or self.findings
            self.sources = found.sources or self.sources
        for drafted in result.results(RETURN_DRAFT):
            self.draft = drafted.draft or self.draft
        for final in result.results(RETURN_FINAL):  # the polished text supersedes the draft
            self.draft = final.final_content or self.draft


async def run(run: Run) -> None:
    cap = run.options.max_iterations or MAX_ITERATIONS
    run.start(COORDINATOR)
    bus = Bus(run)
    bus.publish(USER, COORDINATOR, "user", run.query)
    artifacts = Artifacts()
    agent, prompt = COORDINATOR, _kickoff_prompt(run)
    for iteration in range(1, cap + 1):
        # iteration_start comes before the activation message, so Run.call must not emit it again
        run.emit(IterationStart(iteration=iteration, agent=agent))
        bus.publish(ORCHESTRATOR, agent, "system", f"Activating {agent}")
        role = ROLES[agent]
        result = await run.call(
            AgentCall(agent, role.system, prompt, role.tools, role.max_steps),
            iteration=iteration,
            start=False,
            tool_calls=lambda _args: None,
        )
        bus.publish(agent, ORCHESTRATOR, "agent", result.text)
        artifacts.capture(result)
        plan = result.last(ANALYZE)
        if plan is not None:
            steps = [PlanStep(agent=s.agent, task=s.task) for s in plan.workflow]
            run.emit(AgentPlan(agent=agent, intent=plan.user_intent, steps=steps))
        final = _final_output(result)
        if final is not None:
            run.complete(result=final, iterations=iteration, message_bus_stats=bus.stats())
            return
        asked = result.last(REQUEST_INPUT)
        if asked is not None:
            reply = await _ask(run, agent, asked.question)
            bus.publish(USER, COORDINATOR, "user", reply)
            prompt = _resume_prompt(run, reply)
            continue
        delegation = result.last(DELEGATE)
        if delegation is not None:
            _handoff(run, agent, delegation.agent_name)
            bus.publish(agent, delegation.agent_name, "system", _delegated(delegation))
            agent, prompt = delegation.agent_name, _task_prompt(delegation, artifacts)
            continue
        if agent != COORDINATOR:
            agent, prompt = COORDINATOR, _hand_back(run, bus, agent, result)
            continue
        run.complete(result=result.text, iterations=iteration, message_bus_stats=bus.stats())
        return
    run.complete(result=INCOMPLETE, iterations=cap, message_bus_stats=bus.stats())


def _final_output(result: AgentResult) -> str | None:
    """markComplete's response, or the editor's final content: either one ends the run."""
    done = result.last(MARK_COMPLETE)
    if done is not None and done.final_response:
        return done.final_response
    final = result.last(RETURN_FINAL)
    return final.final_content if final is not None and final.final_content else None


async def _ask(run: Run, agent: str, question: str) -> str:
    """The human's answer as the user message the coordinator resumes with."""
    answer = await run.ask(agent, question)
    if answer:
        return f'Answer to "{question}": {answer}'
    return f'(no answer provided for "{question}" — proceed with sensible defaults)'


def _hand_back(run: Run, bus: Bus, agent: str, result: AgentResult) -> str:
    """A specialist's work goes back to the coordinator; the coordinator's next prompt."""
    tool = ROLES[agent].returns
    returned: Returned | None = result.last(tool) if tool is not None else None
    if returned is not None:
        _handoff(run, agent, COORDINATOR)
        bus.publish(agent, COORDINATOR, "system", f"Results from {agent}:\n{_artifact(returned)}")
    else:
        bus.publish(agent, COORDINATOR, "system", f"Specialist work complete: {result.text}")
    return _report_prompt(agent, returned, result.text)


def _handoff(run: Run, sender: str, recipient: str) -> None:
    run.emit(Handoff.model_validate({"from": sender, "to": recipient}))


def _delegated(delegation: Delegation) -> str:
    context = f"\n\nContext: {delegation.context}" if delegation.context else ""
    return f"Task delegated: {delegation.task_details}{context}"


def _artifact(returned: Returned) -> str:
    if isinstance(returned, Findings):
        return returned.findings
    if isinstance(returned, DraftReturn):
        return returned.draft
    return returned.final_content


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))


def _kickoff_prompt(run: Run) -> str:
    return f"{KICKOFF}\n\n" + with_history(run.history(), f"Request:\n{run.query}")


def _resume_prompt(run: Run, reply: str) -> str:
    return with_history(
        run.history(),
        f"Original request:\n{run.query}\n\n{reply}\n\nTreat the above as the task. Analyze it and delegate to the "
        "appropriate agent, or mark complete if done. Do NOT ask about workflow status.",
    )


def _task_prompt(delegation: Delegation, artifacts: Artifacts) -> str:
    agent = delegation.agent_name
    parts = ["You have been assigned a task by the coordinator.", f"**Task:** {delegation.task_details}"]
    if delegation.context:
        parts.append(f"**Context from previous work:**\n{delegation.context}")
    if agent == WRITER and artifacts.findings:
        parts.append(f"**Research findings to use:**\n{artifacts.findings}")
    if agent == EDITOR and artifacts.draft:
        parts.append(f"**Draft to edit (full text):**\n{artifacts.draft}")
    if artifacts.sources:
        parts.append(f"**Sources:**\n{_numbered(artifacts.sources[:SPECIALIST_SOURCES])}")
    parts.append("Please complete your specialized work on this task using the material above.")
    return "\n\n".join(parts)


def _report_prompt(agent: str, returned: Returned | None, text: str) -> str:
    """What the coordinator reads when a specialist hands back: its returned record, or its text."""
    parts = ["A specialist agent has completed their work and returned results.", f"**Agent:** {agent}"]
    if isinstance(returned, Findings):
        parts += _findings_parts(returned)
    elif isinstance(returned, DraftReturn):
        parts.append(f"**Draft Content:**\n{returned.draft}\n\n**Content Type:** {returned.content_type}")
        if returned.notes:
            parts.append(f"**Notes:** {returned.notes}")
        parts += _recommendation(returned.next_agent, "")
    elif isinstance(returned, Final):
        improvements = "; ".join(returned.improvements) or "none listed"
        parts.append(f"**Final Polished Content:**\n{returned.final_content}\n\n**Improvements Made:** {improvements}")
    else:
        parts.append(f"**Output:**\n{text}")
    parts.append(NEXT_STEP)
    return "\n\n".join(parts)


def _findings_parts(found: Findings) -> list[str]:
    parts = [f"**Research Findings:**\n{found.findings}"]
    if found.key_findings:
        parts.append(f"**Key Findings:**\n{_numbered([f'{k.finding} ({k.importance})' for k in found.key_findings])}")
    if found.sources:
        parts.append(f"**Sources ({len(found.sources)}):**\n{_numbered(found.sources[:COORDINATOR_SOURCES])}")
    insights = [k.finding for k in found.key_findings if k.importance == "high"]
    if insights:
        parts.append(f"**Key Insights:**\n{_numbered(insights)}")
    return parts + _recommendation(found.next_agent, found.reasoning)


def _recommendation(next_agent: str, reasoning: str) -> list[str]:
    if next_agent == COORDINATOR:  # the default: no recommendation given
        return []
    because = f"\n**Reasoning:** {reasoning}" if reasoning else ""
    return [f"**Specialist's Recommendation:** Route to {next_agent}{because}"]
