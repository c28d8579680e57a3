"""The pattern event contract (mat-patterns.md §2): one pydantic model per event type, a tagged union.

Every event carries `run_id`, a gapless per-run `seq` and `ts` (epoch seconds); `Emitter` stamps them.
Field names are snake_case; `from` (of `bus_message` and `handoff`) keeps its name on the wire.
Run summaries are the `summary` of `workflow_complete`, one model per pattern kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PREVIEW_CHARS = 240


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Event(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    run_id: str = ""
    seq: int = 0
    ts: float = 0.0


class WorkflowStart(Event):
    type: Literal["workflow_start"] = "workflow_start"
    mode: str
    model: str
    query: str
    starting_agent: str | None = None


class IterationStart(Event):
    type: Literal["iteration_start"] = "iteration_start"
    iteration: int
    agent: str


class IterationEnd(Event):
    """One agent call ended; usage and cost are summed over every step of the call."""

    type: Literal["iteration_end"] = "iteration_end"
    iteration: int
    agent: str
    duration_ms: int
    step_count: int
    output_preview: str
    completed: bool | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class ToolCall(Event):
    type: Literal["tool_call"] = "tool_call"
    agent: str
    tool_name: str
    preview: str | None = None


class AgentStep(Event):
    type: Literal["agent_step"] = "agent_step"
    agent: str
    iteration: int | None = None
    step_index: int
    text: str
    tool_names: list[str] = Field(default_factory=list)


class WebSearch(Event):
    type: Literal["web_search"] = "web_search"
    agent: str
    status: Literal["start", "done"]
    query: str
    sources: list[str] | None = None


class PlanStep(BaseModel):
    agent: str
    task: str


class AgentPlan(Event):
    type: Literal["agent_plan"] = "agent_plan"
    agent: str
    intent: str
    steps: list[PlanStep]


class InputRequest(Event):
    type: Literal["input_request"] = "input_request"
    request_id: str
    agent: str
    question: str


class InputResolved(Event):
    """The answer to an `input_request` arrived (or its wait timed out and `answer` is empty)."""

    type: Literal["input_resolved"] = "input_resolved"
    request_id: str
    answer: str
    timed_out: bool = False


class ApprovalRequest(Event):
    """An engine-run agent's tool call waits for a person (the harness parked it)."""

    type: Literal["approval_request"] = "approval_request"
    call_id: str
    session_id: str
    agent: str
    function_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ApprovalResolved(Event):
    type: Literal["approval_resolved"] = "approval_resolved"
    call_id: str
    decision: Literal["allow", "deny"]
    reason: str | None = None


class AgentSpawn(Event):
    type: Literal["agent_spawn"] = "agent_spawn"
    id: str
    parent_id: str | None
    role: str
    task: str
    depth: int


class Critique(Event):
    type: Literal["critique"] = "critique"
    round: int
    score: float
    passed: bool
    issues: list[str]


class BlackboardUpdate(Event):
    type: Literal["blackboard_update"] = "blackboard_update"
    section: str
    author: str
    preview: str


class TaskPosted(Event):
    type: Literal["task_posted"] = "task_posted"
    task_id: str
    title: str


class Bid(Event):
    type: Literal["bid"] = "bid"
    task_id: str
    agent: str
    fit: float
    est_cost_usd: float


class TaskAwarded(Event):
    type: Literal["task_awarded"] = "task_awarded"
    task_id: str
    agent: str


class Sample(Event):
    type: Literal["sample"] = "sample"
    index: int
    preview: str


class Trace(Event):
    type: Literal["trace"] = "trace"
    round: int
    agent: str
    preview: str


class BusMessage(Event):
    type: Literal["bus_message"] = "bus_message"
    from_: str = Field(alias="from")
    to: str
    message_type: Literal["user", "agent", "system"]
    content: str


class Handoff(Event):
    type: Literal["handoff"] = "handoff"
    from_: str = Field(alias="from")
    to: str


# ---- run summaries (the rich result of workflow_complete) ------------------------------------


class EvaluatorRound(BaseModel):
    round: int
    score: float
    passed: bool
    issues: list[str]
    draft: str


class EvaluatorSummary(BaseModel):
    kind: Literal["evaluator"] = "evaluator"
    rounds: list[EvaluatorRound]


class DebateTurn(BaseModel):
    stance: str
    round: int
    argument: str


class DebateVerdict(BaseModel):
    winner: str
    reasoning: str
    synthesis: str


class DebateSummary(BaseModel):
    kind: Literal["debate"] = "debate"
    question: str
    turns: list[DebateTurn]
    verdict: DebateVerdict


class Section(BaseModel):
    section: str
    author: str
    content: str


class BlackboardSummary(BaseModel):
    kind: Literal["blackboard"] = "blackboard"
    sections: list[Section]


class MarketTask(BaseModel):
    task_id: str
    title: str
    description: str


class MarketBid(BaseModel):
    task_id: str
    agent: str
    fit: float
    est_cost_usd: float
    rationale: str = ""


class Award(BaseModel):
    task_id: str
    agent: str
    output: str | None = None


class MarketSummary(BaseModel):
    kind: Literal["market"] = "market"
    tasks: list[MarketTask]
    bids: list[MarketBid]
    awards: list[Award]


class SampleRecord(BaseModel):
    index: int
    text: str
    chosen: bool


class SelfConsistencySummary(BaseModel):
    kind: Literal["self-consistency"] = "self-consistency"
    samples: list[SampleRecord]
    method: Literal["select", "merge"]
    rationale: str


class TraceRecord(BaseModel):
    round: int
    agent: str
    text: str


class SwarmSummary(BaseModel):
    kind: Literal["swarm"] = "swarm"
    rounds: int
    traces: list[TraceRecord]


RunSummary = Annotated[
    EvaluatorSummary | DebateSummary | BlackboardSummary | MarketSummary | SelfConsistencySummary | SwarmSummary,
    Field(discriminator="kind"),
]


class AgentOutcome(BaseModel):
    agent: str
    output: str
    duration_ms: int
    completed: bool


class WorkflowComplete(Event):
    type: Literal["workflow_complete"] = "workflow_complete"
    mode: str
    result: str | None = None
    agent_results: list[AgentOutcome] | None = None
    iterations: int | None = None
    total_duration_ms: int = 0
    agents_used: list[str] = Field(default_factory=list)
    message_bus_stats: dict[str, int] | None = None
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cost_usd: float = 0.0
    summary: RunSummary | None = None
    report: dict[str, Any] | None = None


class WorkflowError(Event):
    type: Literal["workflow_error"] = "workflow_error"
    error: str


AgentEvent = Annotated[
    WorkflowStart
    | IterationStart
    | IterationEnd
    | ToolCall
    | AgentStep
    | WebSearch
    | AgentPlan
    | InputRequest
    | InputResolved
    | ApprovalRequest
    | ApprovalResolved
    | AgentSpawn
    | Critique
    | BlackboardUpdate
    | TaskPosted
    | Bid
    | TaskAwarded
    | Sample
    | Trace
    | BusMessage
    | Handoff
    | WorkflowComplete
    | WorkflowError,
    Field(discriminator="type"),
]
EVENTS: TypeAdapter[AgentEvent] = TypeAdapter(AgentEvent)
TERMINAL = frozenset({"workflow_complete", "workflow_error"})

Sink = Callable[[Event], None]


class Emitter:
    """Stamps `run_id`, the next `seq` and `ts` on each event and hands it to the sink, synchronously.

    Synchronous on purpose: parallel agents emit from several tasks, and numbering and delivery in one
    step is what keeps `seq` gapless and in delivery order.
    """

    def __init__(self, run_id: str, sink: Sink) -> None:
        self.run_id = run_id
        self.seq = 0
        self._sink = sink

    def emit(self, event: Event) -> Event:
        self.seq += 1
        event.run_id, event.seq, event.ts = self.run_id, self.seq, time.time()
        self._sink(event)
        return event


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the event union, as published in schemas/agent-events.json."""
    schema = EVENTS.json_schema(by_alias=True)
    schema["title"] = "AgentEvent"
    schema["$id"] = "https://teamster.dev/schemas/agent-events.json"
    return schema
