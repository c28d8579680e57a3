"""Data shapes shared by harness workers (iii-harness.md §2.5, §2.6, §3, §4, §6, §7.3, §7.4).

Workers never import each other; when two of them exchange a payload, its model lives here, and a
worker reading another's reply validates it with that model at the boundary. Shapes only, apart from
the context-window arithmetic at the end, which the orchestrator's preflight and the compaction worker
must agree on and which runs on every turn (too hot for a function call).

A reply model here is the reply as its readers read it (unknown keys ignored, fields no reader uses
left out), so a worker that replaces the owner need only send what is read. The owner's own reply
model may say more (budget's `CheckReply`, skills' `SkillList`); where it would say exactly the same,
the owner returns the model from here (the session tree's `Transcript`, `Written`, `Drained`).

The harness events (what a session's `agent::events` stream carries) are in `harness_events`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Streams one worker writes and another binds a trigger on: the names are part of the exchange.
TURN_END_STREAM = "agent::turn_end"  # every turn_end event, written by the events worker (compaction listens)
DECIDED_STREAM = "approval::decided"  # the approval worker announces each decision (the orchestrator wakes)
# Hook topics the orchestrator publishes through hook-fanout.
BEFORE_FUNCTION_CALL = "agent::before_function_call"
AFTER_FUNCTION_CALL = "agent::after_function_call"


class Shape(BaseModel):
    """Lenient on input (unknown keys are kept out, not refused), exact on output."""

    model_config = ConfigDict(extra="ignore")


# ---- content and messages (§2.6) -------------------------------------------------------------


class TextBlock(Shape):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(Shape):
    type: Literal["thinking"] = "thinking"
    text: str
    signature: str | None = None


class FunctionCallBlock(Shape):
    type: Literal["function_call"] = "function_call"
    id: str
    function_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ImageBlock(Shape):
    type: Literal["image"] = "image"
    data: str  # base64
    mime: str


ContentBlock = Annotated[TextBlock | ThinkingBlock | FunctionCallBlock | ImageBlock, Field(discriminator="type")]

StopReason = Literal["end", "length", "function_call", "aborted", "error"]
ErrorKind = Literal["auth_expired", "rate_limited", "context_overflow", "transient", "permanent"]


class Usage(Shape):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost_usd: float | None = None


class UserMessage(Shape):
    role: Literal["user"] = "user"
    content: str | list[ContentBlock]
    timestamp: int = 0


class AssistantMessage(Shape):
    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock] = Field(default_factory=list)
    stop_reason: StopReason = "end"
    error_message: str | None = None
    error_kind: ErrorKind | None = None
    usage: Usage | None = None
    model: str = ""
    provider: str = ""
    timestamp: int = 0


class FunctionResultMessage(Shape):
    role: Literal["function_result"] = "function_result"
    function_call_id: str
    function_id: str
    content: list[ContentBlock] = Field(default_factory=list)
    details: Any = None
    is_error: bool = False
    terminate: bool = False
    timestamp: int = 0


class CustomMessage(Shape):
    role: Literal["custom"] = "custom"
    custom_type: str
    content: Any = None
    display: bool | None = None
    details: Any = None
    timestamp: int = 0


AgentMessage = Annotated[
    UserMessage | AssistantMessage | FunctionResultMessage | CustomMessage, Field(discriminator="role")
]


# ---- provider streaming (§2.5) ---------------------------------------------------------------


class FunctionSpec(Shape):
    """A function the model may call, exposed as a native tool."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class StreamRequest(Shape):
    """The payload of `provider::<name>::stream`."""

    writer_ref: dict[str, Any]
    system_prompt: str | None = None
    model: str
    messages: list[AgentMessage] = Field(default_factory=list)
    tools: list[FunctionSpec] = Field(default_factory=list)
    max_output_tokens: int | None = None
    agent_id: str | None = None  # who is speaking, for providers that answer per agent (scripted books)


PartialType = Literal[
    "start",
    "text_start",
    "text_delta",
    "text_end",
    "thinking_start",
    "thinking_delta",
    "thinking_end",
    "functioncall_start",
    "functioncall_delta",
    "functioncall_end",
]


class PartialEvent(Shape):
    """A progress event: carries the assistant message as built so far."""

    type: PartialType
    partial: AssistantMessage
    delta: str | None = None


class UsageEvent(Shape):
    type: Literal["usage"] = "usage"
    usage: Usage


class StopEvent(Shape):
    type: Literal["stop"] = "stop"
    stop_reason: StopReason
    error_message: str | None = None
    error_kind: ErrorKind | None = None


class DoneEvent(Shape):
    """Terminal: the final assistant message."""

    type: Literal["done"] = "done"
    message: AssistantMessage


class ErrorEvent(Shape):
    """Terminal: the stream failed; `error` is an assistant message with stop_reason `error`."""

    type: Literal["error"] = "error"
    error: AssistantMessage


AssistantMessageEvent = Annotated[
    PartialEvent | UsageEvent | StopEvent | DoneEvent | ErrorEvent, Field(discriminator="type")
]


# ---- model catalog (§7.3) --------------------------------------------------------------------


class Pricing(Shape):
    """USD per million tokens."""

    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None


class Model(Shape):
    id: str
    provider: str
    api: str = ""
    display_name: str = ""
    context_window: int
    max_output_tokens: int | None = None
    supports_thinking: bool = False
    supports_xhigh: bool = False
    supports_tools: bool = True
    supports_vision: bool = False
    supports_cache: bool = False
    pricing: Pricing | None = None


# ---- credentials (§7.4) ----------------------------------------------------------------------


class ApiKeyCredential(Shape):
    type: Literal["api_key"] = "api_key"
    key: str


class OAuthCredential(Shape):
    type: Literal["oauth"] = "oauth"
    access_token: str
    refresh_token: str | None = None
    expires_at: int | None = None
    scopes: list[str] | None = None
    provider_extra: dict[str, Any] | None = None


Credential = Annotated[ApiKeyCredential | OAuthCredential, Field(discriminator="type")]


# ---- policy and denials (§3) -----------------------------------------------------------------


class MatchedConstraint(Shape):
    field: str
    operator: Literal["equals", "matches"]
    value: Any


class PolicyDecision(Shape):
    """The reply of `policy::check_permissions`."""

    decision: Literal["allow", "deny", "needs_approval"]
    rule_id: str | None = None
    rule_action: Literal["allow", "deny"] | None = None
    matched_constraint: MatchedConstraint | None = None


class DenialEnvelope(Shape):
    """The `details` of a denied call's result, whoever denied it."""

    schema_version: int = 1
    status: Literal["denied"] = "denied"
    denied_by: Literal["permissions", "user", "gate_unavailable", "budget"]
    function_id: str
    rule_id: str | None = None
    rule_action: str | None = None
    matched_constraint: MatchedConstraint | None = None
    args_excerpt: str | None = None
    reason: str


class BudgetCheck(Shape):
    """The reply of `budget::check`."""

    allowed: bool
    remaining_usd: float | None = None
    reason: str | None = None


# ---- approvals (§4) --------------------------------------------------------------------------


class ApprovalCheck(Shape):
    """The reply of `approval::decide`: whether a session's approval settings alone settle a call."""

    decision: Literal["allow", "ask", "deny"]
    reason: str


class HumanDecision(Shape):
    """A person's decision on one parked call, as `approval::resolve` records it."""

    decision: Literal["allow", "deny", "aborted"]
    reason: str | None = None


class DecisionsQuery(Shape):
    """The payload of `approval::decisions`: which parked calls of a session to look up."""

    session_id: str = Field(min_length=1)
    function_call_ids: list[str]


class Decisions(Shape):
    """The reply of `approval::decisions`: the decided calls among those asked for, by call id."""

    decisions: dict[str, HumanDecision] = Field(default_factory=dict)


class DecisionMade(Shape):
    """An item of the `approval::decided` stream: a person decided a parked call (the orchestrator wakes)."""

    session_id: str
    function_call_id: str
    decision: Literal["allow", "deny", "aborted"]
    reason: str | None = None


# ---- hooks (§6) ------------------------------------------------------------------------------


class BeforeVerdict(Shape):
    """The reply of `hook-fanout::before`: the first blocking subscriber's reply, or `{block: false}`."""

    block: bool = False
    reason: str | None = None


class PublishStatus(Shape):
    ok: bool
    error: str | None = None


ResolvedBy = Literal["expected", "quiescence", "deadline", "deadline_no_replies", "no_subscribers", "publish_failed"]


class Collected(Shape):
    """The reply of `hook-fanout::publish_collect`."""

    event_id: str
    replies: list[Any]
    merged: Any
    publish: PublishStatus
    publish_failed: bool = False
    resolved_by: ResolvedBy


# ---- sessions (§2.1) -------------------------------------------------------------------------


class TranscriptRow(Shape):
    entry_id: str
    message: AgentMessage


class Transcript(Shape):
    """The reply of `session-tree::messages`: the messages a model sees (a summary first, after a compaction)."""

    messages: list[TranscriptRow]


class Drained(Shape):
    """The reply of `session-inbox::drain`: what was waiting in the inbox, oldest first."""

    items: list[Any]


class CompactionRef(Shape):
    id: str
    timestamp: int


class Compactions(Shape):
    """The reply of `session-tree::compactions`: the session's compaction entries, oldest first."""

    entries: list[CompactionRef]


class Written(Shape):
    """The reply of `session-tree::compact` (and of other writes of one entry): the entry's id."""

    entry_id: str


# ---- compaction (§7.2) -----------------------------------------------------------------------

# ok: compacted. overflow: at or over the usable window all the same (compacted or not). empty: nothing to
# summarise. busy: another compaction holds the lease. concurrent: another compaction finished after this
# request began, so this one did nothing. skipped (turn_end only): usage below the trigger, or no model known.
CompactStatus = Literal["ok", "overflow", "empty", "busy", "concurrent", "skipped"]


class CompactReply(Shape):
    """The reply of `context-compaction::compact_now` and `::compact_session`; the ids name the entry
    written (or, for `concurrent`, the one found)."""

    status: CompactStatus
    compaction_entry_id: str | None = None
    tail_start_id: str | None = None
    tokens_before: int = 0
    tokens_after: int = 0


# ---- skills (§7.5) ---------------------------------------------------------------------------


class SkillSummary(Shape):
    """A row of `directory::skills::list`'s reply, as far as the system prompt reads it."""

    id: str
    title: str
    description: str
    default: bool = False


class SkillListing(Shape):
    """The reply of `directory::skills::list`."""

    skills: list[SkillSummary]


class SkillText(Shape):
    """The reply of `directory::skills::get`, as far as the system prompt reads it."""

    body: str


# ---- the engine's function catalogue ---------------------------------------------------------


class FunctionDescription(Shape):
    """A function as `engine::functions::info` describes it, as far as the orchestrator reads it."""

    function_id: str
    description: str | None = None
    request_format: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class FunctionDescriptions(Shape):
    """The reply of `engine::functions::info {function_ids}`."""

    functions: list[FunctionDescription]


# ---- the orchestrator (§2) -------------------------------------------------------------------


class RunModel(Shape):
    """The reply of `run::model`: the provider and model a session's run streams from."""

    provider: str
    model: str


# ---- context-window arithmetic (the preflight rule) ------------------------------------------

DEFAULT_RESERVE = 20_000  # output tokens kept free when the model names no max_output_tokens


def usable_tokens(model: Model) -> int:
    """The input tokens a model takes with room left for its reply."""
    return max(0, model.context_window - (model.max_output_tokens or DEFAULT_RESERVE))


def estimate_tokens(messages: Sequence[BaseModel]) -> int:
    """A cheap estimate: four characters of JSON a token."""
    return sum(len(m.model_dump_json()) for m in messages) // 4
