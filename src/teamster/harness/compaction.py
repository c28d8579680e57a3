"""`context-compaction`: fold a session's older messages into a summary so the session fits its model (§7.2).

Two ways in, one procedure:
- `context-compaction::compact_now {session_id, model?, tail_tokens?, wait_ms?}`: on demand, and from the
  orchestrator's preflight once the transcript reaches the model's usable window.
- `context-compaction::compact_session`: bound by a `stream` trigger to `agent::turn_end` (the stream
  `events::emit` also writes every `turn_end` to); it compacts when the turn's token usage reached
  `trigger_ratio` of the usable window, so the next turn need not wait for a preflight compaction.

A compaction keeps the recent tail (cut only where no function call is parted from its result),
summarises everything before it with the session's own provider, and appends a compaction entry through
`session-tree::compact`; `session-tree::messages` then reads as the summary followed by the tail. A lease
in state keeps two compactions of one session apart.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from pydantic import AliasChoices, Field, TypeAdapter, ValidationError

from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    AssistantMessageEvent,
    ContentBlock,
    DoneEvent,
    ErrorEvent,
    FunctionCallBlock,
    FunctionResultMessage,
    ImageBlock,
    Model,
    Shape,
    StreamRequest,
    TextBlock,
    UserMessage,
)
from teamster.harness.lease import Lease
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.sdk import ChannelReader, Worker

LEASE_SCOPE = "compaction_lease"
RUN_REQUESTS = "run_request"  # the orchestrator's run request per session: the session's provider and model
TURN_END_STREAM = "agent::turn_end"
DEFAULT_RESERVE = 20_000  # output tokens kept free when the model names no max_output_tokens (as the preflight)
RESULT_CHARS = 2_000  # a function result is cut to this many characters in the summary prompt
READER_GRACE_S = 2.0  # after the provider call ends, how long its last frames may still take


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
_EVENT: TypeAdapter[AssistantMessageEvent] = TypeAdapter(AssistantMessageEvent)


@dataclass(frozen=True, slots=True)
class Settings:
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
    model: Model | None = None  # default: the session's run request, looked up with models::get
    tail_tokens: int | None = Field(default=None, ge=0)  # default: the settings' share of the usable window
    wait_ms: int | None = Field(default=None, ge=0)  # default: Settings.busy_wait_s


class TurnEnd(Shape):
    message: AssistantMessage | None = None


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


class _Row(Shape):
    entry_id: str
    message: AgentMessage


class _View(Shape):
    messages: list[_Row]


class _Compaction(Shape):
    id: str
    timestamp: int


class _Compactions(Shape):
    entries: list[_Compaction]


class _RunRequest(Shape):
    provider: str
    model: str


# ---- the worker ------------------------------------------------------------------------------


def create_worker(settings: Settings | None = None) -> Worker:
    """The `context-compaction` worker, its turn_end trigger bound, ready to connect or attach."""
    worker = Worker("context-compaction", description="Summarises old session history to fit the model")
    compactor = _Compactor(worker, settings or Settings())

    @worker.function("context-compaction::compact_now")
    async def compact_now(req: CompactNow) -> CompactReply:
        """Compact a session now, waiting up to wait_ms for a compaction already running."""
        started = now_ms()
        if not await compactor.view(req.session_id):
            raise InvocationError(
                ErrorCode.SESSION_NOT_FOUND, f"session {req.session_id} has no messages (unknown session?)"
            )
        model = await compactor.model(req.session_id, req.model)
        wait_s = compactor.settings.busy_wait_s if req.wait_ms is None else req.wait_ms / 1000
        return await compactor.run(req.session_id, model, "sync", since=started, wait_s=wait_s, tail=req.tail_tokens)

    @worker.function("context-compaction::compact_session")
    async def compact_session(frame: TurnEndFrame) -> CompactReply:
        """On turn_end: compact when the turn's usage reached the trigger share of the usable window."""
        session_id, message = frame.group_id, frame.event.data.message
        if message is None or message.usage is None:
            return CompactReply(status="skipped")
        try:
            model = await compactor.model(session_id, None)
        except InvocationError as exc:
            if exc.code == ErrorCode.MODEL_UNKNOWN:
                return CompactReply(status="skipped")  # no window to measure against
            raise
        usage = message.usage
        used = usage.input + usage.output + usage.cache_read + usage.cache_write
        if used < compactor.settings.trigger_ratio * usable(model):
            return CompactReply(status="skipped")
        # The usage describes the context as sent when the message began: a compaction since then makes it stale.
        since = message.timestamp or None
        return await compactor.run(session_id, model, "async", since=since, wait_s=0.0, tail=None)

    worker.register_trigger("stream", "context-compaction::compact_session", {"stream_name": TURN_END_STREAM})
    return worker


class _Compactor:
    """One compaction: lease, cut, summary, entry, event; every step through function ids."""

    def __init__(self, worker: Worker, settings: Settings) -> None:
        self.worker = worker
        self.settings = settings

    async def model(self, session_id: str, given: Model | None) -> Model:
        """The model whose window the session must fit: the one given, else the run request's in the catalog."""
        if given is not None:
            return given
        stored = await self.worker.trigger("state::get", {"scope": RUN_REQUESTS, "key": session_id})
        if stored is None:
            raise InvocationError(ErrorCode.MODEL_UNKNOWN, f"session {session_id} has no run request: pass `model`")
        run = _RunRequest.model_validate(stored)
        found = await self.worker.trigger("models::get", {"provider": run.provider, "model_id": run.model})
        if found is None:
            raise InvocationError(
                ErrorCode.MODEL_UNKNOWN,
                f"the catalog has no model {run.model} of provider {run.provider}: pass `model`",
            )
        return Model.model_validate(found)

    async def view(self, session_id: str) -> list[_Row]:
        """The session's messages as its model sees them (an earlier summary first, when there is one)."""
        reply = await self.worker.trigger("session-tree::messages", {"session_id": session_id})
        return _View.model_validate(reply).messages

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
        window = usable(model)
        before = tokens(messages)
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
        entry_id = str(written["entry_id"])
        after = tokens([row.message for row in await self.view(session_id)])
        await self.worker.trigger(
            "events::emit",
            {
                "session_id": session_id,
                "event": {
                    "type": "compaction_done",
                    "mode": mode,
                    "summary_text": summary,
                    "tokens_before": before,
                    "tokens_after": after,
                    "compaction_entry_id": entry_id,
                    "tail_start_id": tail_start_id,
                },
            },
        )
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
        writer, reader = await self.worker.create_channel()
        request = StreamRequest(
            writer_ref=writer.ref,
            system_prompt=SUMMARY_SYSTEM,
            model=model.id,
            messages=[UserMessage(content=prompt, timestamp=now_ms())],
        )
        call = asyncio.ensure_future(
            self.worker.trigger(
                f"provider::{model.provider}::stream",
                request.model_dump(mode="json"),
                timeout=self.settings.provider_timeout_s,
            )
        )
        reading = asyncio.ensure_future(_final_message(reader))
        failure = "the provider's channel closed without a final message"
        try:
            await asyncio.wait({call, reading}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                await asyncio.wait({reading}, timeout=READER_GRACE_S)  # the provider closes its end as it returns
            try:
                await call
            except InvocationError as exc:
                failure = exc.message
        finally:
            call.cancel()
            reading.cancel()
        final: AssistantMessage | None = None
        if reading.done() and not reading.cancelled():
            if (broken := reading.exception()) is not None:
                failure = f"the channel failed: {broken}"
            else:
                final = reading.result()
        if final is None:
            raise InvocationError(ErrorCode.SUMMARY_FAILED, f"provider {model.provider}: {failure}")
        if final.stop_reason in ("error", "aborted"):
            raise InvocationError(
                ErrorCode.SUMMARY_FAILED, f"provider {model.provider}: {final.error_message or 'failed'}"
            )
        text = "".join(block.text for block in final.content if isinstance(block, TextBlock)).strip()
        if not text:
            raise InvocationError(ErrorCode.SUMMARY_FAILED, f"provider {model.provider} returned no summary text")
        return text


# ---- pure parts ------------------------------------------------------------------------------


def usable(model: Model) -> int:
    """The input tokens a model takes with room left for its reply (the orchestrator's preflight rule)."""
    return max(0, model.context_window - (model.max_output_tokens or DEFAULT_RESERVE))


def tokens(messages: list[AgentMessage]) -> int:
    """A cheap estimate, the preflight's: four characters of JSON a token."""
    return sum(len(m.model_dump_json()) for m in messages) // 4


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


async def _final_message(reader: ChannelReader) -> AssistantMessage | None:
    """The terminal message of a provider stream: `done`'s message or `error`'s error message."""
    final: AssistantMessage | None = None
    async for frame in reader:
        try:
            event = _EVENT.validate_json(frame)
        except ValidationError:
            continue  # a frame we cannot read is skipped, not fatal
        if isinstance(event, DoneEvent):
            final = event.message
        elif isinstance(event, ErrorEvent):
            final = event.error
    return final
