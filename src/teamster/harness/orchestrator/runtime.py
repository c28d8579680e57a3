"""The orchestrator's I/O, all through function ids: the record, the run request, events, the transcript."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from teamster.harness.contracts import AgentMessage, AssistantMessage, ErrorKind, StopReason, TextBlock
from teamster.harness.orchestrator.record import PARKED, RunRequest, TurnRecord
from teamster.sdk import Enqueue, Worker

RECORDS = "turn_state"
REQUESTS = "run_request"
_MESSAGES: TypeAdapter[list[AgentMessage]] = TypeAdapter(list[AgentMessage])


@dataclass(frozen=True, slots=True)
class Settings:
    """Which gates the orchestrator consults: the thin profile turns them off, the thick one on."""

    policy: bool = True
    approvals: bool = True
    budgets: bool = True
    hooks: bool = True
    compaction: bool = True
    skills: bool = True
    catalog: bool = True
    queue: str = "turn-step"
    policy_timeout_s: float = 5.0
    provider_timeout_s: float = 300.0
    hook_timeout_ms: int = 500


def now_ms() -> int:
    return int(time.time() * 1000)


def own_message(
    text: str, stop_reason: StopReason, *, error_kind: ErrorKind | None = None, model: str = "", provider: str = ""
) -> AssistantMessage:
    """An assistant message the harness writes itself (a refusal, a stop, a failure); errors carry their text."""
    return AssistantMessage(
        content=[TextBlock(text=text)],
        stop_reason=stop_reason,
        error_message=text if stop_reason == "error" else None,
        error_kind=error_kind,
        model=model,
        provider=provider,
        timestamp=now_ms(),
    )


class Runtime:
    def __init__(self, worker: Worker, settings: Settings) -> None:
        self.worker = worker
        self.settings = settings

    async def call(self, function_id: str, payload: Any, timeout: float | None = None) -> Any:
        return await self.worker.trigger(function_id, payload, timeout=timeout)

    # ---- the record ---------------------------------------------------------------------------

    async def load(self, session_id: str) -> TurnRecord | None:
        raw = await self.call("state::get", {"scope": RECORDS, "key": session_id})
        return TurnRecord.model_validate(raw) if raw is not None else None

    async def save(self, rec: TurnRecord, previous: TurnRecord | None) -> None:
        """Store, tell the UI when its view changed, then wake the next step unless parked or unchanged."""
        rec.updated_at_ms = now_ms()
        await self.checkpoint(rec)
        old_view = previous.view() if previous is not None else None
        new_view = rec.view()
        if new_view != old_view:
            event: dict[str, Any] = {
                "type": "turn_state_changed",
                "event_type": "state:created" if previous is None else "state:updated",
                "new_value": new_view,
            }
            if old_view is not None:
                event["old_value"] = old_view
            await self.emit(rec.session_id, event)
        if rec.state not in PARKED and (previous is None or previous.state != rec.state):
            await self.wake(rec.session_id, rec.state)

    async def checkpoint(self, rec: TurnRecord) -> None:
        """A silent write: no event, no wake (after every executed call)."""
        await self.call("state::set", {"scope": RECORDS, "key": rec.session_id, "value": rec.model_dump(mode="json")})

    async def wake(self, session_id: str, state: str) -> None:
        await self.worker.trigger(f"turn::{state}", {"session_id": session_id}, action=Enqueue(self.settings.queue))

    # ---- the run request ----------------------------------------------------------------------

    async def request(self, session_id: str) -> RunRequest:
        raw = await self.call("state::get", {"scope": REQUESTS, "key": session_id})
        if raw is None:
            raise LookupError(f"no run request for session {session_id}")
        return RunRequest.model_validate(raw)

    async def save_request(self, session_id: str, request: RunRequest) -> None:
        await self.call("state::set", {"scope": REQUESTS, "key": session_id, "value": request.model_dump(mode="json")})

    # ---- events and transcript ----------------------------------------------------------------

    async def emit(self, session_id: str, event: dict[str, Any]) -> None:
        await self.call("events::emit", {"session_id": session_id, "event": event})

    async def messages(self, session_id: str) -> list[AgentMessage]:
        reply = await self.call("session-tree::messages", {"session_id": session_id})
        return _MESSAGES.validate_python([row["message"] for row in reply["messages"]])

    async def append(self, session_id: str, message: AgentMessage, entry_id: str) -> None:
        """Append with a deterministic id, so a redelivered step appends nothing twice."""
        await self.call(
            "session-tree::append",
            {"session_id": session_id, "message": message.model_dump(mode="json"), "entry_id": entry_id},
        )
