"""Pattern tools: real functions with JSON Schemas that record the model's intent.

Each tool validates its arguments and returns a typed record; the pattern reads those records after the
call and decides the control flow (handoff, spawn, pass or fail, bids) in plain Python. Argument and
record fields are camelCase on the wire, as the model sees them. Function ids are `pattern::<name>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

PREFIX = "pattern::"


class ToolPayload(BaseModel):
    """A tool's arguments or the value it records: camelCase on the wire, as the models are shown it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


A = TypeVar("A", bound=ToolPayload)
R = TypeVar("R", bound=ToolPayload)


class ToolError(ValueError):
    """The model's arguments do not fit the tool's schema; the message goes back to the model."""


@dataclass(frozen=True, slots=True)
class Tool(Generic[A, R]):
    name: str
    description: str
    args: type[A]
    record: type[R]
    run: Callable[[A], R]

    @property
    def function_id(self) -> str:
        return PREFIX + self.name

    def schema(self) -> dict[str, Any]:
        return self.args.model_json_schema(by_alias=True)

    def execute(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate, run, and return the record as JSON-ready data."""
        try:
            parsed = self.args.model_validate(arguments)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "arguments"
            raise ToolError(f"{self.name}: {where}: {first['msg']}") from None
        return self.run(parsed).model_dump(mode="json")

    def read(self, data: Any) -> R:
        return self.record.model_validate(data)


def _echo(record: type[R]) -> Callable[[ToolPayload], R]:
    """A tool whose record is its arguments plus the record type's constant flags."""
    return lambda args: record.model_validate(args.model_dump())


# ---- orchestrated (v1) -----------------------------------------------------------------------

Specialist = Literal["researcher", "writer", "editor"]


class SelectedAgent(ToolPayload):
    agent: Specialist
    task: str
    order: int = Field(ge=1)


class AnalyzeArgs(ToolPayload):
    user_intent: str
    selected_agents: list[SelectedAgent] = Field(min_length=1)
    reasoning: str


class PlanItem(ToolPayload):
    agent: Specialist
    task: str


class Plan(ToolPayload):
    user_intent: str
    reasoning: str
    workflow: list[PlanItem]
    next_agent: Specialist
    next_task: str


def _analyze(args: AnalyzeArgs) -> Plan:
    ordered = sorted(args.selected_agents, key=lambda a: a.order)
    return Plan(
        user_intent=args.user_intent,
        reasoning=args.reasoning,
        workflow=[PlanItem(agent=a.agent, task=a.task) for a in ordered],
        next_agent=ordered[0].agent,
        next_task=ordered[0].task,
    )


class DelegateArgs(ToolPayload):
    agent_name: Specialist
    task_details: str
    context: str = ""
    priority: Literal["low", "medium", "high"] = "medium"


class Delegation(DelegateArgs):
    handoff: Literal[True] = True


class AskArgs(ToolPayload):
    question: str = Field(min_length=1)


class Ask(AskArgs):
    request_user_input: Literal[True] = True


class CompleteArgs(ToolPayload):
    final_response: str
    workflow_summary: str = ""
    agents_used: list[str] = Field(default_factory=list)


class Completion(CompleteArgs):
    complete: Literal[True] = True


class Finding(ToolPayload):
    finding: str
    importance: Literal["high", "medium", "low"] = "medium"


class FindingsArgs(ToolPayload):
    findings: str
    key_findings: list[Finding] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    next_agent: Specialist | Literal["coordinator"] = "coordinator"
    reasoning: str = ""


class Findings(FindingsArgs):
    done: Literal[True] = True


class DraftReturnArgs(ToolPayload):
    draft: str
    content_type: str = "article"
    next_agent: Specialist | Literal["coordinator"] = "coordinator"
    notes: str = ""


class DraftReturn(DraftReturnArgs):
    done: Literal[True] = True


class FinalArgs(ToolPayload):
    final_content: str
    improvements: list[str] = Field(default_factory=list)
    quality_score: float | None = Field(default=None, ge=0, le=10)


class Final(FinalArgs):
    done: Literal[True] = True
    workflow_complete: Literal[True] = True


Style = Literal["blog", "article", "report", "documentation", "email"]


class FormatArgs(ToolPayload):
    title: str
    body: str
    style: Style = "article"


class Formatted(ToolPayload):
    formatted: str


_TEMPLATES: dict[str, str] = {
    "blog": "# {title}\n\n{body}\n\n---\n*Thanks for reading.*",
    "article": "# {title}\n\n{body}",
    "report": "# {title}\n\n## Summary\n\n{body}",
    "documentation": "# {title}\n\n## Overview\n\n{body}",
    "email": "Subject: {title}\n\n{body}",
}


def _format(args: FormatArgs) -> Formatted:
    return Formatted(formatted=_TEMPLATES[args.style].format(title=args.title, body=args.body))


ANALYZE = Tool("analyzeRequest", "Plan the work: which specialists, in which order", AnalyzeArgs, Plan, _analyze)
DELEGATE = Tool(
    "delegateToAgent", "Hand the next task to one specialist, then stop", DelegateArgs, Delegation, _echo(Delegation)
)
REQUEST_INPUT = Tool("requestUserInput", "Ask the user one question, only for real ambiguity", AskArgs, Ask, _echo(Ask))
MARK_COMPLETE = Tool(
    "markComplete", "Finish the workflow with the final response", CompleteArgs, Completion, _echo(Completion)
)
RETURN_FINDINGS = Tool(
    "returnFindings", "Return research findings to the coordinator", FindingsArgs, Findings, _echo(Findings)
)
RETURN_DRAFT = Tool(
    "returnDraft", "Return a draft to the coordinator", DraftReturnArgs, DraftReturn, _echo(DraftReturn)
)
RETURN_FINAL = Tool("returnFinal", "Return the polished final content", FinalArgs, Final, _echo(Final))
FORMAT_CONTENT = Tool("formatContent", "Wrap content in a markdown template", FormatArgs, Formatted, _format)

# ---- choreographed (v2) ----------------------------------------------------------------------


# The choreographed pattern's peers, in the order they take turns: the one roster (the pattern, this tool's
# schema and the playground's view, through app/static/roster.js, all read it from here).
ChoreographedPeer = Literal["backend", "frontend", "design"]


class MessageArgs(ToolPayload):
    recipient_agent: ChoreographedPeer
    message_content: str = Field(min_length=1)


class Message(MessageArgs):
    sent: Literal[True] = True


class CompletedArgs(ToolPayload):
    summary: str


class Completed(CompletedArgs):
    completed: Literal[True] = True


COORDINATE = Tool("coordinationTool", "Send a message to one peer", MessageArgs, Message, _echo(Message))
MARK_COMPLETED = Tool("markCompleted", "Your part is fully specified", CompletedArgs, Completed, _echo(Completed))

# ---- hierarchical (v3) -----------------------------------------------------------------------


class SpawnArgs(ToolPayload):
    role: str = Field(min_length=1)
    task: str = Field(min_length=1)


class Spawn(SpawnArgs):
    spawn: Literal[True] = True


class FinalizeArgs(ToolPayload):
    deliverable: str


class Finalized(FinalizeArgs):
    finalized: Literal[True] = True


class Kpi(ToolPayload):
    label: str
    value: str
    delta: str | None = None
    trend: Literal["up", "down", "flat"] | None = None


class Chart(ToolPayload):
    type: Literal["bar", "line", "pie", "area"]
    title: str | None = None
    data: list[dict[str, Any]]
    series: list[str]
    x_key: str = "name"


class Table(ToolPayload):
    title: str | None = None
    columns: list[str]
    rows: list[list[Any]]


class ReportSection(ToolPayload):
    heading: str
    body: str


class ReportArgs(ToolPayload):
    title: str
    summary: str
    kpis: list[Kpi] = Field(default_factory=list)
    charts: list[Chart] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    sections: list[ReportSection] = Field(default_factory=list)


class Report(ToolPayload):
    report: ReportArgs


SPAWN = Tool("spawnSubAgent", "Delegate one part to a sub-agent", SpawnArgs, Spawn, _echo(Spawn))
FINALIZE = Tool("finalize", "Hand in your deliverable", FinalizeArgs, Finalized, _echo(Finalized))
REPORT = Tool(
    "generateReport", "A structured report: KPIs, charts, tables", ReportArgs, Report, lambda a: Report(report=a)
)

# ---- evaluator-optimizer (v4) ----------------------------------------------------------------


class DraftArgs(ToolPayload):
    draft: str


class CritiqueArgs(ToolPayload):
    score: float = Field(ge=0, le=10)
    issues: list[str] = Field(default_factory=list)
    rationale: str = ""


SUBMIT_DRAFT = Tool("submitDraft", "Submit your deliverable", DraftArgs, DraftArgs, _echo(DraftArgs))
CRITIQUE = Tool(
    "critique", "Score the draft 0-10 with concrete issues", CritiqueArgs, CritiqueArgs, _echo(CritiqueArgs)
)

# ---- debate (v5) -----------------------------------------------------------------------------


class ArgueArgs(ToolPayload):
    argument: str


class VerdictArgs(ToolPayload):
    winner: str
    reasoning: str
    synthesis: str


ARGUE = Tool("argue", "State your argument for this round", ArgueArgs, ArgueArgs, _echo(ArgueArgs))
VERDICT = Tool("verdict", "Decide the debate", VerdictArgs, VerdictArgs, _echo(VerdictArgs))

# ---- blackboard (v6) -------------------------------------------------------------------------


class WriteArgs(ToolPayload):
    section: str = Field(min_length=1)
    content: str
    solution_ready: bool = False


class Written(WriteArgs):
    wrote: Literal[True] = True


class ChooseArgs(ToolPayload):
    role: Literal["analyst", "planner", "critic"]
    reason: str = ""


WRITE_SECTION = Tool("writeSection", "Overwrite one section of the blackboard", WriteArgs, Written, _echo(Written))
CHOOSE_NEXT = Tool("chooseNext", "Pick the role that should write next", ChooseArgs, ChooseArgs, _echo(ChooseArgs))

# ---- market (v7) -----------------------------------------------------------------------------


class TaskSpec(ToolPayload):
    id: str = Field(min_length=1)
    title: str
    description: str


class PostArgs(ToolPayload):
    tasks: list[TaskSpec] = Field(min_length=1)


class BidSpec(ToolPayload):
    task_id: str
    fit: float = Field(ge=0, le=1)
    est_cost_usd: float = Field(ge=0)
    rationale: str = ""


class BidsArgs(ToolPayload):
    bids: list[BidSpec]


class DeliverArgs(ToolPayload):
    output: str


POST_TASKS = Tool("postTasks", "Post 2-5 independent tasks", PostArgs, PostArgs, _echo(PostArgs))
SUBMIT_BIDS = Tool("submitBids", "Bid on the tasks you fit", BidsArgs, BidsArgs, _echo(BidsArgs))
DELIVER = Tool("deliver", "Deliver the output of your awarded task", DeliverArgs, DeliverArgs, _echo(DeliverArgs))

# ---- self-consistency (v8) -------------------------------------------------------------------


class AnswerArgs(ToolPayload):
    answer: str


class DecideArgs(ToolPayload):
    method: Literal["select", "merge"]
    chosen_index: int | None = Field(default=None, ge=0)
    final_answer: str = ""
    rationale: str = ""


class Decision(DecideArgs):
    decided: Literal[True] = True


SUBMIT_ANSWER = Tool("submitAnswer", "Submit your complete answer", AnswerArgs, AnswerArgs, _echo(AnswerArgs))
DECIDE = Tool("decide", "Select the best candidate or merge them", DecideArgs, Decision, _echo(Decision))

# ---- swarm (v9) ------------------------------------------------------------------------------


class ContributeArgs(ToolPayload):
    text: str


CONTRIBUTE = Tool(
    "contribute", "Add one improvement to the shared notes", ContributeArgs, ContributeArgs, _echo(ContributeArgs)
)

ALL: tuple[Tool[Any, Any], ...] = (
    ANALYZE,
    DELEGATE,
    REQUEST_INPUT,
    MARK_COMPLETE,
    RETURN_FINDINGS,
    RETURN_DRAFT,
    RETURN_FINAL,
    FORMAT_CONTENT,
    COORDINATE,
    MARK_COMPLETED,
    SPAWN,
    FINALIZE,
    REPORT,
    SUBMIT_DRAFT,
    CRITIQUE,
    ARGUE,
    VERDICT,
    WRITE_SECTION,
    CHOOSE_NEXT,
    POST_TASKS,
    SUBMIT_BIDS,
    DELIVER,
    SUBMIT_ANSWER,
    DECIDE,
    CONTRIBUTE,
)
BY_ID: dict[str, Tool[Any, Any]] = {tool.function_id: tool for tool in ALL}
