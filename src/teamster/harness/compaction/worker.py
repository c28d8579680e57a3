"""The `context-compaction` worker's handlers and one compaction's steps (see the package's docstring)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field

from teamster.harness.assistant_stream import stream_assistant
from teamster.harness.compaction.cut import cut_point
from teamster.harness.compaction.settings import CompactionSettings
from teamster.harness.compaction.summary import SUMMARY_SYSTEM, render
from teamster.harness.contracts import (
    AgentMessage,
    Compactions,
    CompactReply,
    Model,
    RunModel,
    Shape,
    StreamRequest,
    TextBlock,
    Transcript,
    TranscriptRow,
    UserMessage,
    Written,
    estimate_tokens,
    usable_tokens,
)
from teamster.harness.harness_events import CompactionDone, TurnEnd, encode
from teamster.harness.lease import Lease
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.protocol.handles import handles
from teamster.sdk import Worker

LEASE_SCOPE = "compaction_lease"


Mode = Literal["sync", "async"]


# ---- payloads and replies --------------------------------------------------------------------


class CompactNow(Shape):
    session_id: str = Field(min_length=1)
    model: Model | None = None  # default: the model of the session's run (run::model), from the catalog
    tail_tokens: int | None = Field(default=None, ge=0)  # default: the settings' share of the usable window
    wait_ms: int | None = Field(default=None, ge=0)  # default: CompactionSettings.busy_wait_s


class TurnEndItem(Shape):
    data: TurnEnd


class TurnEndFrame(Shape):
    """What the `stream` trigger delivers for an item written to agent::turn_end."""

    group_id: str = Field(min_length=1, validation_alias=AliasChoices("groupId", "group_id"))
    event: TurnEndItem


class Compactor:
    """The handlers and one compaction's steps: lease, cut, summary, entry, event; all through function ids."""

    def __init__(self, worker: Worker, settings: CompactionSettings) -> None:
        self.worker = worker
        self.settings = settings

    @handles("context-compaction::compact_now")
    async def compact_now(self, req: CompactNow) -> CompactReply:
        """Compact a session now, waiting up to wait_ms for a compaction already running."""
        started = now_ms()
        if not await self.view(req.session_id):
            raise InvocationError(
                ErrorCode.SESSION_NOT_FOUND, f"session {req.session_id} has no messages (unknown session?)"
            )
        model = await self.model(req.session_id, req.model)
        wait_s = self.settings.busy_wait_s if req.wait_ms is None else req.wait_ms / 1000
        return await self.run(req.session_id, model, "sync", since=started, wait_s=wait_s, tail=req.tail_tokens)

    @handles("context-compaction::compact_session")
    async def compact_session(self, frame: TurnEndFrame) -> CompactReply:
        """On turn_end: compact when the turn's usage reached the trigger share of the usable window."""
        session_id, message = frame.group_id, frame.event.data.message
        if message is None or message.usage is None:
            return CompactReply(status="skipped")
        try:
            model = await self.model(session_id, None)
        except InvocationError as exc:
            if exc.code == ErrorCode.MODEL_UNKNOWN:
                return CompactReply(status="skipped")  # no window to measure against
            raise
        usage = message.usage
        used = usage.input + usage.output + usage.cache_read + usage.cache_write
        if used < self.settings.trigger_ratio * usable_tokens(model):
            return CompactReply(status="skipped")
        # The usage describes the context as sent when the message began: a compaction since then makes it stale.
        since = message.timestamp or None
        return await self.run(session_id, model, "async", since=since, wait_s=0.0, tail=None)

    async def model(self, session_id: str, given: Model | None) -> Model:
        """The model whose window the session must fit: the one given, else its run's model in the catalog."""
        if given is not None:
            return given
        try:
            stored = await self.worker.trigger("run::model", {"session_id": session_id})
        except InvocationError as exc:
            problem = f"the model of session {session_id} is unknown: {exc.message}"
            raise InvocationError(ErrorCode.MODEL_UNKNOWN, problem) from exc
        if stored is None:
            raise InvocationError(ErrorCode.MODEL_UNKNOWN, f"session {session_id} has no run request: pass `model`")
        run = RunModel.model_validate(stored)
        found = await self.worker.trigger("models::get", {"provider": run.provider, "model_id": run.model})
        if found is None:
            raise InvocationError(
                ErrorCode.MODEL_UNKNOWN,
                f"the catalog has no model {run.model} of provider {run.provider}: pass `model`",
            )
        return Model.model_validate(found)

    async def view(self, session_id: str) -> list[TranscriptRow]:
        """The session's messages as its model sees them (an earlier summary first, when there is one)."""
        reply = await self.worker.trigger("session-tree::messages", {"session_id": session_id})
        return Transcript.model_validate(reply).messages

    async def run(
        self, session_id: str, model: Model, mode: Mode, *, since: int | None, wait_s: float, tail: int | None
    ) -> CompactReply:
        """Compact under the lease; `since`: a compaction newer than this already did the job."""
        lease = Lease(self.worker, LEASE_SCOPE, session_id, self.settings.lease_ttl_s)
        if not await lease.take(wait_s):
            return CompactReply(status="busy")
        try:
            return await self._compact(lease, model, mode, since, tail)
        finally:
            await lease.release()

    async def _compact(
        self, lease: Lease, model: Model, mode: Mode, since: int | None, tail: int | None
    ) -> CompactReply:
        session_id = lease.key
        reply = await self.worker.trigger("session-tree::compactions", {"session_id": session_id})
        earlier = Compactions.model_validate(reply).entries
        if since is not None and earlier and earlier[-1].timestamp >= since:
            return CompactReply(status="concurrent", compaction_entry_id=earlier[-1].id)
        rows = await self.view(session_id)
        messages = [row.message for row in rows]
        window = usable_tokens(model)
        before = estimate_tokens(messages)
        # An earlier summary alone is not worth summarising again: the head must hold a newer message.
        first = 2 if rows and rows[0].entry_id in {c.id for c in earlier} else 1
        cut = cut_point(messages, self.settings.tail_budget(window) if tail is None else tail, first)
        if cut is None:
            return CompactReply(status="overflow" if before >= window else "empty", tokens_before=before)
        summary = await self._summarise(model, messages[:cut])
        if not await lease.held():
            raise InvocationError(
                ErrorCode.LEASE_LOST, f"the compaction lease of {session_id} expired before the summary"
            )
        tail_start_id = rows[cut].entry_id
        written = await self.worker.trigger(
            "session-tree::compact",
            {"session_id": session_id, "summary": summary, "tokens_before": before, "tail_start_id": tail_start_id},
        )
        entry_id = Written.model_validate(written).entry_id
        after = estimate_tokens([row.message for row in await self.view(session_id)])
        done = CompactionDone(
            mode=mode,
            summary_text=summary,
            tokens_before=before,
            tokens_after=after,
            compaction_entry_id=entry_id,
            tail_start_id=tail_start_id,
        )
        await self.worker.trigger("events::emit", {"session_id": session_id, "event": encode(done)})
        return CompactReply(
            status="overflow" if after >= window else "ok",
            compaction_entry_id=entry_id,
            tail_start_id=tail_start_id,
            tokens_before=before,
            tokens_after=after,
        )

    async def _summarise(self, model: Model, head: list[AgentMessage]) -> str:
        """The summary of `head`, from the session's own provider and model, read off its channel."""
        prompt = f"Summarise this conversation:\n\n<conversation>\n{render(head)}\n</conversation>"

        def request(writer_ref: dict[str, Any]) -> StreamRequest:
            return StreamRequest(
                writer_ref=writer_ref,
                system_prompt=SUMMARY_SYSTEM,
                model=model.id,
                messages=[UserMessage(content=prompt, timestamp=now_ms())],
            )

        outcome = await stream_assistant(self.worker, model.provider, request, self.settings.provider_timeout_s)
        final = outcome.final
        if final is None:
            if outcome.broken is not None:
                failure = f"the channel failed: {outcome.broken}"
            else:
                failure = outcome.failure or "the provider's channel closed without a final message"
            raise InvocationError(ErrorCode.SUMMARY_FAILED, f"provider {model.provider}: {failure}")
        if final.stop_reason in ("error", "aborted"):
            raise InvocationError(
                ErrorCode.SUMMARY_FAILED, f"provider {model.provider}: {final.error_message or 'failed'}"
            )
        text = "".join(block.text for block in final.content if isinstance(block, TextBlock)).strip()
        if not text:
            raise InvocationError(ErrorCode.SUMMARY_FAILED, f"provider {model.provider} returned no summary text")
        return text
