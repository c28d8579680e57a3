"""The run API's request and reply shapes: validated on the way in, and the source of `/openapi.json`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from teamster.patterns.request import Options, PatternName, Turn

Backend = Literal["inproc", "engine"]
ApprovalMode = Literal["manual", "auto", "full"]
RunStatus = Literal["running", "completed", "failed", "aborted", "interrupted"]
MAX_MESSAGE = 8_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a cache-busting `_=` parameter is no error


class RunCreate(Strict):
    """`POST /runs`: what to run, on which backend and model, with which gates."""

    pattern: PatternName
    message: str = Field(min_length=1, max_length=MAX_MESSAGE, pattern=r"\S")
    backend: Backend = "inproc"
    provider: str | None = Field(default=None, min_length=1, max_length=100)
    model: str = Field(default="scripted", min_length=1, max_length=200)
    history: list[Turn] | None = Field(default=None, max_length=50)
    session_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")
    budget: float | None = Field(default=None, gt=0, le=10_000, description="USD ceiling for this run (engine)")
    policy: ApprovalMode = Field(default="full", description="approval mode of the run's sessions (engine)")
    max_turns: int | None = Field(default=None, ge=1, le=50)
    caps: Options = Field(default_factory=Options)


class RunCreated(BaseModel):
    run_id: str
    session_id: str
    events_url: str


class PendingInput(BaseModel):
    request_id: str
    agent: str
    question: str


class PendingApproval(BaseModel):
    call_id: str
    session_id: str
    agent: str
    function_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class RunRecord(BaseModel):
    """A run as stored in state scope `app_runs`, keyed by `run_id`."""

    run_id: str
    session_id: str
    pattern: PatternName
    message: str
    backend: Backend
    provider: str
    model: str
    policy: ApprovalMode = "full"
    budget: float | None = None
    max_turns: int | None = None
    status: RunStatus = "running"
    created_at: int
    finished_at: int | None = None
    result: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    event_count: int = 0
    trace_id: str | None = None
    budget_id: str | None = None


class RunKey(BaseModel):
    """An `Idempotency-Key` of `POST /runs`, stored in state scope `app_run_keys` under the key itself:
    the run it started, and a fingerprint of the request body it came with."""

    run_id: str
    fingerprint: str
    created_at: int


class RunView(RunRecord):
    events_url: str
    pending_inputs: list[PendingInput] = Field(default_factory=list)
    pending_approvals: list[PendingApproval] = Field(default_factory=list)


class RunList(BaseModel):
    runs: list[RunView]
    total: int


class RunQuery(Query):
    limit: int = Field(default=50, ge=1, le=500)
    session_id: str | None = None
    status: RunStatus | None = None


class EventsQuery(Query):
    after: int = Field(default=0, ge=0)
    wait: float = Field(default=0, ge=0, le=30, description="seconds to hold the request for a new event")


class EventsPage(BaseModel):
    run_id: str
    events: list[dict[str, Any]]
    cursor: int
    done: bool


class Decision(Strict):
    decision: Literal["allow", "deny"]
    reason: str | None = Field(default=None, max_length=2_000)

    @field_validator("decision", mode="before")
    @classmethod
    def _approve_is_allow(cls, value: Any) -> Any:
        return "allow" if value == "approve" else value


class Decided(BaseModel):
    ok: Literal[True] = True
    call_id: str
    decision: Literal["allow", "deny"]


class Answer(Strict):
    request_id: str = Field(min_length=1, max_length=100)
    answer: str = Field(max_length=MAX_MESSAGE)


class Ok(BaseModel):
    ok: Literal[True] = True


class Aborted(Ok):
    status: RunStatus


class ApprovalRow(PendingApproval):
    run_id: str


class ApprovalList(BaseModel):
    approvals: list[ApprovalRow]


class TraceTree(BaseModel):
    trace_id: str | None
    span_count: int
    roots: list[dict[str, Any]]


class SessionQuery(Query):
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class SessionList(BaseModel):
    sessions: list[dict[str, Any]]
    total: int


class SessionTree(BaseModel):
    session_id: str
    tree: dict[str, Any] | None
    children: list[dict[str, Any]]


class Fork(Strict):
    from_entry_id: str = Field(min_length=1, max_length=200)


class Forked(BaseModel):
    session_id: str


class ModelRow(BaseModel):
    id: str
    provider: str
    label: str
    available: bool
    local: bool
    context_window: int | None = None
    input_per_1m: float = 0.0
    output_per_1m: float = 0.0


class ModelList(BaseModel):
    models: list[ModelRow]


class ProviderStatus(BaseModel):
    provider: str
    configured: bool
    source: Literal["env", "file"] | None = None


class ProviderList(BaseModel):
    providers: list[ProviderStatus]


class TokenBody(Strict):
    token: str = Field(min_length=1, max_length=4_000)


class Health(BaseModel):
    ok: Literal[True] = True
    worker: str = "app"
    version: str
    uptime_ms: int
    profile: str
    features: dict[str, Any]


class CompatRun(BaseModel):
    """`POST /run` as the original app's iii backend sends it."""

    model_config = ConfigDict(extra="ignore")

    mode: str = Field(min_length=1)
    message: str = Field(min_length=1, max_length=MAX_MESSAGE, pattern=r"\S")
    model: str | None = Field(default=None, max_length=200)
    provider: str | None = Field(default=None, max_length=100)
    history: list[Turn] | None = Field(default=None, max_length=50)
    conversationId: str | None = Field(default=None, max_length=100)
    backend: Backend = "inproc"


class CompatQueued(BaseModel):
    queued: Literal[True] = True
    runId: str
    streamName: str
    group: str = "events"


class CompatEventsQuery(Query):
    runId: str = Field(min_length=1)
    after: int = Field(default=0, ge=0)


class CompatEvents(BaseModel):
    runId: str
    cursor: int
    events: list[dict[str, Any]]
    done: bool


class ErrorBody(BaseModel):
    error: str
    code: str
