"""The orchestrator's I/O, all through function ids: the record, the run request, events, the transcript."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from teamster.harness.contracts import AgentMessage, AssistantMessage, ErrorKind, StopReason, TextBlock
from teamster.harness.orchestrator.record import PARKED, TERMINAL, RunRequest, TurnRecord
from teamster.harness.owned import OwnedCache
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.sdk import Enqueue, Worker

log = logging.getLogger("teamster.harness")

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
    lease_ttl_s: float = 10.0  # a crashed step keeps its session's lease this long at most
    policy_timeout_s: float = 5.0
    provider_timeout_s: float = 300.0
    hook_timeout_ms: int = 500


def stage(rec: TurnRecord, event: dict[str, Any]) -> None:
    """Queue an event on the record: it is stored with the record's next write and published after it."""
    rec.unsent.append({**event, "id": uuid.uuid4().hex})


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
        # This worker is the only writer of records and requests: it reads them back from memory.
        self._records: OwnedCache[dict[str, Any]] = OwnedCache(worker)
        self._requests: OwnedCache[dict[str, Any]] = OwnedCache(worker)

    async def call(self, function_id: str, payload: Any, timeout: float | None = None) -> Any:
        return await self.worker.trigger(function_id, payload, timeout=timeout)

    # ---- the record ---------------------------------------------------------------------------

    async def load(self, session_id: str) -> TurnRecord | None:
        """A fresh copy of the stored record, or None."""
        raw = await self._read(self._records, RECORDS, session_id)
        return TurnRecord.model_validate(raw) if raw is not None else None

    async def save(self, rec: TurnRecord, previous: TurnRecord | None) -> None:
        """Store, tell the UI when its view changed, then wake the next step unless parked or unchanged."""
        rec.updated_at_ms = now_ms()
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
            stage(rec, event)
        await self.checkpoint(rec)
        if rec.state not in PARKED and (previous is None or previous.state != rec.state):
            await self.wake(rec.session_id, rec.state)

    async def checkpoint(self, rec: TurnRecord) -> None:
        """Store the record with its staged events, then publish them: no wake."""
        await self._write(self._records, RECORDS, rec.session_id, rec.model_dump(mode="json"))
        await self.publish(rec)

    async def publish(self, rec: TurnRecord) -> None:
        """Send the stored record's unsent events.

        A failure is not the step's: the events stay in the record, and the next checkpoint or step sends
        them again, ahead of anything newer. An event that did land before the failure carries the same
        id the second time, and `events::emit` stores it once.
        """
        if not rec.unsent:
            return
        try:
            await self.call("events::emit", {"session_id": rec.session_id, "events": rec.unsent})
        except InvocationError as exc:
            log.warning("events of %s not sent yet: %s", rec.session_id, exc.message)
            return
        sent = {event["id"] for event in rec.unsent}
        rec.unsent = []
        cached = self._records.get(rec.session_id)
        if cached is not None:  # marked sent in memory only: a reader after a restart sends them again, once
            cached["unsent"] = [event for event in cached.get("unsent", []) if event["id"] not in sent]

    async def resume(self, session_id: str) -> None:
        """Enqueue the step of the record's current state, even a parked one (to look at its decisions again)."""
        rec = await self.load(session_id)
        if rec is not None and rec.state not in TERMINAL:
            await self.wake(session_id, rec.state)

    async def wake(self, session_id: str, state: str) -> None:
        await self.worker.trigger(f"turn::{state}", {"session_id": session_id}, action=Enqueue(self.settings.queue))

    # ---- the run request ----------------------------------------------------------------------

    async def request(self, session_id: str) -> RunRequest:
        raw = await self._read(self._requests, REQUESTS, session_id)
        if raw is None:
            raise LookupError(f"no run request for session {session_id}")
        return RunRequest.model_validate(raw)

    async def save_request(self, session_id: str, request: RunRequest) -> None:
        await self._write(self._requests, REQUESTS, session_id, request.model_dump(mode="json"))

    async def _read(self, cache: OwnedCache[dict[str, Any]], scope: str, key: str) -> dict[str, Any] | None:
        raw = cache.get(key)
        if raw is None:
            raw = await self.call("state::get", {"scope": scope, "key": key})
            if raw is not None:
                cache.put(key, raw)
        return raw

    async def _write(self, cache: OwnedCache[dict[str, Any]], scope: str, key: str, value: dict[str, Any]) -> None:
        cache.put(key, value)  # before the write, so concurrent writers leave the cache in the order they wrote
        try:
            await self.call("state::set", {"scope": scope, "key": key, "value": value})
        except BaseException:
            cache.discard(key)  # it may or may not have been stored: read it back next time
            raise

    # ---- events and transcript ----------------------------------------------------------------

    def outbox(self, session_id: str) -> Outbox:
        return Outbox(self, session_id)

    async def messages(self, session_id: str) -> list[AgentMessage]:
        reply = await self.call("session-tree::messages", {"session_id": session_id})
        return _MESSAGES.validate_python([row["message"] for row in reply["messages"]])

    async def append(self, session_id: str, message: AgentMessage, entry_id: str) -> None:
        """Append with a deterministic id, so a redelivered step appends nothing twice."""
        await self.call(
            "session-tree::append",
            {"session_id": session_id, "message": message.model_dump(mode="json"), "entry_id": entry_id},
        )


class Outbox:
    """A session's events sent in order without waiting: those that queue up during a send go in one batch."""

    def __init__(self, rt: Runtime, session_id: str) -> None:
        self._rt = rt
        self._session_id = session_id
        self._queued: list[dict[str, Any]] = []
        self._sending: asyncio.Task[None] | None = None

    def push(self, event: dict[str, Any]) -> None:
        self._queued.append(event)
        if self._sending is None:
            self._start()

    async def flush(self) -> None:
        """Wait until everything pushed is stored; a failed send raises here."""
        while self._sending is not None:
            await self._sending  # `_sent` runs first: it clears `_sending` or starts the next send

    def discard(self) -> None:
        """Send nothing more (the step was aborted or failed); a batch already on its way still lands whole."""
        self._queued.clear()
        self._sending = None

    def _start(self) -> None:
        self._sending = asyncio.ensure_future(self._send())
        self._sending.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        if task is not self._sending or task.cancelled() or task.exception() is not None:
            return  # a failure stays in `_sending`, for `flush` to raise
        self._sending = None
        if self._queued:  # pushed after the send loop ended, before this callback ran
            self._start()

    async def _send(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            await self._rt.call("events::emit", {"session_id": self._session_id, "events": batch})
