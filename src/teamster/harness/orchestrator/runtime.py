"""The orchestrator's I/O, all through function ids: the record, the run request, events, the transcript."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from teamster.harness.contracts import AgentMessage, AssistantMessage, ErrorKind, StopReason, TextBlock, Transcript
from teamster.harness.harness_events import HarnessEvent, TurnStateChanged, encode
from teamster.harness.orchestrator.outbox import Outbox
from teamster.harness.orchestrator.record import PARKED, TERMINAL, RunSpec, TurnRecord
from teamster.harness.orchestrator.settings import TurnSettings
from teamster.harness.owned import OwnedCache
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.sdk import Enqueue, Worker

log = logging.getLogger("teamster.harness")

RECORDS = "turn_state"
REQUESTS = "run_request"


def stage(rec: TurnRecord, event: HarnessEvent) -> None:
    """Queue an event on the record: it is stored with the record's next write and published after it."""
    rec.unsent.append({**encode(event), "id": uuid.uuid4().hex})


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
    def __init__(self, worker: Worker, settings: TurnSettings) -> None:
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
            change = TurnStateChanged(
                event_type="state:created" if previous is None else "state:updated",
                new_value=new_view,
                old_value=old_view,
            )
            stage(rec, change)
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

    async def request(self, session_id: str) -> RunSpec:
        spec = await self.find_request(session_id)
        if spec is None:
            raise LookupError(f"no run request for session {session_id}")
        return spec

    async def find_request(self, session_id: str) -> RunSpec | None:
        raw = await self._read(self._requests, REQUESTS, session_id)
        return RunSpec.model_validate(raw) if raw is not None else None

    async def save_request(self, session_id: str, request: RunSpec) -> None:
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
        return Outbox(self.worker, session_id)

    async def messages(self, session_id: str) -> list[AgentMessage]:
        reply = await self.call("session-tree::messages", {"session_id": session_id})
        return [row.message for row in Transcript.model_validate(reply).messages]

    async def append(self, session_id: str, message: AgentMessage, entry_id: str) -> None:
        """Append with a deterministic id, so a redelivered step appends nothing twice."""
        await self.call(
            "session-tree::append",
            {"session_id": session_id, "message": message.model_dump(mode="json"), "entry_id": entry_id},
        )
