"""The harness event contract: one pydantic model per event a session's `agent::events` stream carries.

The orchestrator and compaction emit these through `events::emit`; the events worker checks each one
against the union, numbers it and stores it with `session_id` and a gapless `seq` (plus the sender's `id`,
when it gave one, for idempotent re-sends); readers of `events::list` and of the stream triggers (the
pattern engine backend; compaction, on `agent::turn_end`) decode the stored items back into the union.
The published JSON Schema is schemas/harness-events.json (`python -m teamster.schemas` regenerates it).

A field declared `sparse()` is left out of the wire form when it is None, as the events have always
been written: `turn_end` without `model_limit` when no model is known, `turn_state_changed` without
`old_value` for a new record. Every other field is always present, null or not.

The envelope (ENVELOPE) is not part of the models: the orchestrator adds an `id` after an event's own
fields (so a re-send is stored once), and `events::emit` stamps `session_id` and a gapless `seq` after
them; a reader that needs them (a cursor) reads them off the stored item.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from teamster.harness.contracts import AssistantMessage, FunctionResultMessage, PartialEvent


def _is_none(value: Any) -> bool:
    return value is None


def sparse() -> Any:
    """A field that defaults to None and is left out of the wire form while it is None."""
    return Field(default=None, exclude_if=_is_none)


# ---- the turn's view (what the UI sees of a turn record) -------------------------------------


TurnState = Literal[
    "provisioning",
    "assistant_streaming",
    "function_execute",
    "function_awaiting_approval",
    "steering_check",
    "stopped",
    "failed",
]


class AwaitingCall(BaseModel):
    """A call parked until a person decides it."""

    function_call_id: str
    function_id: str
    args: dict[str, Any] = Field(default_factory=dict)


class TurnError(BaseModel):
    kind: str
    message: str


class TurnView(BaseModel):
    """`TurnStateView`: a turn's state as `turn::get_state` and `turn_state_changed` show it."""

    model_config = ConfigDict(extra="ignore")

    session_id: str
    state: TurnState
    turn_count: int = 0
    max_turns: int | None = sparse()
    awaiting_approval: list[AwaitingCall] | None = sparse()  # None, not [], when nothing waits
    error: TurnError | None = sparse()


# ---- the events ------------------------------------------------------------------------------

ENVELOPE = frozenset({"id", "session_id", "seq"})  # on a stored event, after its own fields


class HarnessEventBase(BaseModel):
    """What every harness event shares: a stored event's envelope is ignored on decoding."""

    model_config = ConfigDict(extra="ignore")


class MessageUpdate(HarnessEventBase):
    """The assistant message as streamed so far, with the provider event that grew it."""

    type: Literal["message_update"] = "message_update"
    message: AssistantMessage
    llm_event: PartialEvent


class MessageComplete(HarnessEventBase):
    """An assistant message is final: the model's, or one the harness wrote (a refusal, a stop, a failure)."""

    type: Literal["message_complete"] = "message_complete"
    message: AssistantMessage
    body_streamed: bool  # whether its text arrived as message_update deltas first


class FunctionExecutionStart(HarnessEventBase):
    type: Literal["function_execution_start"] = "function_execution_start"
    function_call_id: str
    function_id: str
    args: dict[str, Any] = Field(default_factory=dict)


class ApprovalRequested(HarnessEventBase):
    """A call is parked until a person allows or denies it (`approval::resolve`)."""

    type: Literal["approval_requested"] = "approval_requested"
    function_call_id: str
    function_id: str
    args: dict[str, Any] = Field(default_factory=dict)


class PolicyDenied(HarnessEventBase):
    """A gate refused a call; `details` is its denial envelope (contracts.DenialEnvelope)."""

    type: Literal["policy_denied"] = "policy_denied"
    function_call_id: str
    function_id: str
    details: Any = None


class FunctionExecutionEnd(HarnessEventBase):
    type: Literal["function_execution_end"] = "function_execution_end"
    function_call_id: str
    function_id: str
    result: FunctionResultMessage
    is_error: bool
    duration_ms: int


class TurnEnd(HarnessEventBase):
    """Once per turn: its assistant message and the results of its calls, in the model's order."""

    type: Literal["turn_end"] = "turn_end"
    message: AssistantMessage | None = None
    function_results: list[FunctionResultMessage] = Field(default_factory=list)
    model_limit: int | None = sparse()  # the model's context window, when the catalog knows it


class AgentEnd(HarnessEventBase):
    """The run is over; nothing more comes for it."""

    type: Literal["agent_end"] = "agent_end"
    messages: list[Any] = Field(default_factory=list)


class BudgetExceeded(HarnessEventBase):
    type: Literal["budget_exceeded"] = "budget_exceeded"
    budget_id: str
    reason: str
    remaining_usd: float | None = None
    estimated_cost_usd: float


class TurnStateChanged(HarnessEventBase):
    """The turn's view changed (`old_value` is left out for a new record)."""

    type: Literal["turn_state_changed"] = "turn_state_changed"
    event_type: Literal["state:created", "state:updated"]
    new_value: TurnView
    old_value: TurnView | None = sparse()


class CompactionDone(HarnessEventBase):
    """Older messages were folded into a summary; the transcript now reads from `tail_start_id` on."""

    type: Literal["compaction_done"] = "compaction_done"
    mode: Literal["sync", "async"]
    summary_text: str
    tokens_before: int
    tokens_after: int
    compaction_entry_id: str
    tail_start_id: str


HarnessEvent = Annotated[
    MessageUpdate
    | MessageComplete
    | FunctionExecutionStart
    | ApprovalRequested
    | PolicyDenied
    | FunctionExecutionEnd
    | TurnEnd
    | AgentEnd
    | BudgetExceeded
    | TurnStateChanged
    | CompactionDone,
    Field(discriminator="type"),
]
HARNESS_EVENTS: TypeAdapter[HarnessEvent] = TypeAdapter(HarnessEvent)


def encode(event: HarnessEvent) -> dict[str, Any]:
    """The event's wire form, as `events::emit` takes it."""
    data: dict[str, Any] = event.model_dump(mode="json")
    return data


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the event union, as published in schemas/harness-events.json."""
    schema = HARNESS_EVENTS.json_schema()
    schema["title"] = "HarnessEvent"
    schema["$id"] = "https://teamster.dev/schemas/harness-events.json"
    return schema
