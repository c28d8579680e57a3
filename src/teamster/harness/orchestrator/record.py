"""The persisted turn record and the run's spec (iii-harness.md §2.2); the UI's view is harness_events.TurnView."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from teamster.harness.contracts import AssistantMessage, FunctionResultMessage, FunctionSpec, Model
from teamster.harness.harness_events import AwaitingCall, TurnError, TurnState, TurnView

TERMINAL: frozenset[str] = frozenset({"stopped", "failed"})
PARKED: frozenset[str] = frozenset({"function_awaiting_approval", *TERMINAL})  # nothing enqueued for these


class Call(BaseModel):
    id: str
    function_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class PreparedCall(BaseModel):
    """How one call of a batch will run."""

    route: Literal["dispatch", "pre_approved", "synthetic"]
    call: Call
    result: FunctionResultMessage | None = None  # for synthetic calls


class ExecutedCall(BaseModel):
    call: Call
    result: FunctionResultMessage
    is_error: bool
    duration_ms: int


class Work(BaseModel):
    prepared: list[PreparedCall] = Field(default_factory=list)
    executed: dict[str, ExecutedCall] = Field(default_factory=dict)
    started: list[str] = Field(default_factory=list)  # ids sent to their function; not in `executed` = interrupted


class TurnRecord(BaseModel):
    session_id: str
    state: TurnState
    turn_count: int = 0
    max_turns: int | None = None
    function_results: list[FunctionResultMessage] = Field(default_factory=list)
    turn_end_emitted: bool = False
    started_at_ms: int = 0
    updated_at_ms: int = 0
    model_meta: Model | None = None  # the catalog's entry for the run's model, when the catalog knows it
    error: TurnError | None = None
    last_assistant: AssistantMessage | None = None
    work: Work | None = None
    awaiting_approval: list[AwaitingCall] = Field(default_factory=list)
    # Events stored with the checkpoint they belong to, each with a stable `id`; published after the write.
    unsent: list[dict[str, Any]] = Field(default_factory=list)

    def clone(self) -> TurnRecord:
        """An independent copy: a dump and validate round trip is several times faster than a deep copy."""
        return TurnRecord.model_validate(self.model_dump())

    def view(self) -> TurnView:
        """What the UI needs, nothing it does not."""
        return TurnView(
            session_id=self.session_id,
            state=self.state,
            turn_count=self.turn_count,
            max_turns=self.max_turns,
            awaiting_approval=list(self.awaiting_approval) or None,
            error=self.error,
        )


class RunSpec(BaseModel):
    """What `run::start` was asked for, plus what provisioning derived from it."""

    provider: str
    model: str
    mode: Literal["plan", "ask", "agent"] | None = None
    system_prompt: str = ""
    functions: list[str] = Field(default_factory=list)  # ids the model may call as native tools
    agent_trigger: bool = True  # offer the agent_trigger meta-tool; off: the model sees only `functions`
    function_schemas: list[FunctionSpec] = Field(default_factory=list)
    budget_id: str | None = None
    workspace_id: str | None = None
    agent_id: str | None = None
    message_id: str | None = None
