"""`context-compaction`: fold a session's older messages into a summary so the session fits its model (§7.2).

Two ways in, one procedure:
- `context-compaction::compact_now {session_id, model?, tail_tokens?, wait_ms?}`: on demand, and from the
  orchestrator's preflight once the transcript reaches the model's usable window.
- `context-compaction::compact_session`: bound by a `stream` trigger to `agent::turn_end` (the stream
  `events::emit` also writes every `turn_end` to); it compacts when the turn's token usage reached
  `trigger_ratio` of the usable window, so the next turn need not wait for a preflight compaction.

Without a `model`, the session's model is the one its run streams from (`run::model`, the orchestrator's),
looked up in the catalog (`models::get`). The usable window and the token estimate are the preflight's own
rule (`contracts.usable_tokens`, `contracts.estimate_tokens`).

A compaction keeps the recent tail (cut only where no function call is parted from its result),
summarises everything before it with the session's own provider, and appends a compaction entry through
`session-tree::compact`; `session-tree::messages` then reads as the summary followed by the tail. A lease
in state keeps two compactions of one session apart.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

from pydantic import AliasChoices, Field

from teamster.harness.assistant_stream import stream_assistant
from teamster.harness.contracts import (
    TURN_END_STREAM,
    AgentMessage,
    AssistantMessage,
    ContentBlock,
    FunctionCallBlock,
    FunctionResultMessage,
    ImageBlock,
    Model,
    RunModel,
    Shape,
    StreamRequest,
    TextBlock,
    Transcript,
    TranscriptRow,
    UserMessage,
    estimate_tokens,
    usable_tokens,
)
from teamster.harness.harness_events import CompactionDone, TurnEnd, encode
from teamster.harness.lease import Lease
from teamster.protocol import InvocationError
from teamster.protocol.handles import handles
from teamster.sdk import Worker

LEASE_SCOPE = "compaction_lease"
RESULT_CHARS = 2_000  # a function result is cut to this many characters in the summary prompt

SESSION_NOT_FOUND = "session_not_found"
MODEL_UNKNOWN = "model_unknown"
SUMMARY_FAILED = "summary_failed"
LEASE_LOST = "lease_lost"

SUMMARY_SYSTEM = (
    "You compact an AI agent's conversation. Write a summary that lets the agent carry on with only your "
    "summary and the most recent messages, which are kept as they are. Be specific: names, paths, values, "
    "commands, decisions and open questions. If the conversation opens with an earlier summary, carry "
    "forward everything in it that still matters. Reply with the summary only, in Markdown, under these "
    "headings: ## Goal, ## Constraints, ## Progress, ## Key Decisions, ## Function Calls Made, "
    "## Next Steps, ## Critical Context, ## Relevant Files."
)

# ok: compacted. overflow: at or over the usable window all the same (compacted or not). empty: nothing to
# summarise. busy: another compaction holds the lease. concurrent: another compaction finished after this
# request began, so this one did nothing. skipped (turn_end only): usage below the trigger, or no model known.
Status = Literal["ok", "overflow", "empty", "busy", "concurrent", "skipped"]
Mode = Literal["sync", "async"]


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    """Thresholds and timings; the defaults follow the reference's context-compaction worker."""

    trigger_ratio: float = 0.8  # on turn_end, compact once usage reaches this share of the usable window
    tail_ratio: float = 0.25  # the kept tail may hold this share of the usable window...
    max_tail_tokens: int = 8_000  # ...but never more than this
    lease_ttl_s: float = 300.0  # a crashed compaction blocks its session this long at most
    busy_wait_s: float = 20.0  # compact_now waits this long for a running compaction before answering busy
    provider_timeout_s: float = 240.0  # below lease_ttl_s, so a summary ends before its lease can expire

    def tail_budget(self, usable_tokens: int) -> int:
        """The most tokens the kept tail may hold."""
        return min(self.max_tail_tokens, int(usable_tokens * self.tail_ratio))


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


class CompactReply(Shape):
    """The reply of both functions; the ids name the entry written (or, for `concurrent`, the one found)."""

    status: Status
    compaction_entry_id: str | None = None
    tail_start_id: str | None = None
    tokens_before: int = 0
    tokens_after: int = 0


class _Compaction(Shape):
    id: str
    timestamp: int


class _Compactions(Shape):
    entries: list[_Compaction]


# ---- the worker ------------------------------------------------------------------------------


def create_worker(settings: CompactionSettings | None = None) -> Worker:
    """The `context-compaction` worker, its turn_end trigger bound, ready to connect or attach."""
    worker = Worker("context-compaction", description="Summarises old session history to fit the model")
    worker.serve(Compactor(worker, settings or CompactionSettings()))
    worker.register_trigger("stream", "context-compaction::compact_session", {"stream_name": TURN_END_STREAM})
    return worker


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
            raise InvocationError(SESSION_NOT_FOUND, f"session {req.session_id} has no messages (unknown session?)")
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
            if exc.code == MODEL_UNKNOWN:
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
            raise InvocationError(MODEL_UNKNOWN, problem) from exc
        if stored is None:
            raise InvocationError(MODEL_UNKNOWN, f"session {session_id} has no run request: pass `model`")
        run = RunModel.model_validate(stored)
        found = await self.worker.trigger("models::get", {"provider": run.provider, "model_id": run.model})
        if found is None:
            raise InvocationError(
                MODEL_UNKNOWN, f"the catalog has no model {run.model} of provider {run.provider}: pass `model`"
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
        earlier = _Compactions.model_validate(reply).entries
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
            raise InvocationError(LEASE_LOST, f"the compaction lease of {session_id} expired before the summary")
        tail_start_id = rows[cut].entry_id
        written = await self.worker.trigger(
            "session-tree::compact",
            {"session_id": session_id, "summary": summary, "tokens_before": before, "tail_start_id": tail_start_id},
        )
        entry_id = str(written["entry_id"])
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
            raise InvocationError(SUMMARY_FAILED, f"provider {model.provider}: {failure}")
        if final.stop_reason in ("error", "aborted"):
            raise InvocationError(SUMMARY_FAILED, f"provider {model.provider}: {final.error_message or 'failed'}")
        text = "".join(block.text for block in final.content if isinstance(block, TextBlock)).strip()
        if not text:
            raise InvocationError(SUMMARY_FAILED, f"provider {model.provider} returned no summary text")
        return text


# ---- pure parts ------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cut_point(messages: list[AgentMessage], tail_tokens: int, first: int = 1) -> int | None:
    """Where the kept tail `messages[i:]` starts: the longest tail within `tail_tokens`, else the shortest one.

    None when no cut is allowed: only from `first` on, never at a function result, never inside a call's span.
    """
    # A cut at i summarises messages[:i]; `first` keeps something in that head worth summarising.
    open_calls = [0] * (len(messages) + 1)  # +1 from just after a call to just after its last result
    call_at: dict[str, int] = {}
    for i, message in enumerate(messages):
        if isinstance(message, AssistantMessage):
            call_at.update((b.id, i) for b in message.content if isinstance(b, FunctionCallBlock))
        elif isinstance(message, FunctionResultMessage) and message.function_call_id in call_at:
            open_calls[call_at[message.function_call_id] + 1] += 1
            open_calls[i + 1] -= 1
    allowed: list[int] = []
    spanning = 0
    for i, message in enumerate(messages):
        spanning += open_calls[i]
        if i >= first and spanning == 0 and not isinstance(message, FunctionResultMessage):
            allowed.append(i)
    if not allowed:
        return None
    tail_chars = list(accumulate(len(m.model_dump_json()) for m in reversed(messages)))[::-1]  # [i]: messages[i:]
    return next((i for i in allowed if tail_chars[i] // 4 <= tail_tokens), allowed[-1])


def render(messages: list[AgentMessage]) -> str:
    """The messages as plain text for the summariser: no images, no thinking, long results cut short."""
    parts: list[str] = []
    for message in messages:
        if isinstance(message, UserMessage):
            parts.append(f"[user]\n{_text(message.content)}")
        elif isinstance(message, AssistantMessage):
            calls = [b for b in message.content if isinstance(b, FunctionCallBlock)]
            said = _text(message.content)
            parts.append("[assistant]" + (f"\n{said}" if said else ""))
            parts += [f"[assistant calls {c.function_id}] {json.dumps(c.arguments, ensure_ascii=False)}" for c in calls]
        elif isinstance(message, FunctionResultMessage):
            output = _text(message.content)
            if len(output) > RESULT_CHARS:
                output = f"{output[:RESULT_CHARS]}… [{len(output) - RESULT_CHARS} more characters]"
            parts.append(f"[result of {message.function_id}{' (error)' if message.is_error else ''}]\n{output}")
        else:
            parts.append(f"[{message.custom_type}]\n{json.dumps(message.content, ensure_ascii=False, default=str)}")
    return "\n\n".join(parts)


def _text(content: str | list[ContentBlock]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(
        block.text if isinstance(block, TextBlock) else "[image]"
        for block in content
        if isinstance(block, TextBlock | ImageBlock)
    )
