"""What every provider worker shares (iii-harness.md §2.5).

- `EventWriter` builds the partial `AssistantMessage` as deltas arrive and writes the §2.5 events, in order,
  as JSON text frames: `start`, then per content block `<kind>_start` / `<kind>_delta`* / `<kind>_end`
  (kind = text, thinking, functioncall), then `usage`, `stop`, and one terminal `done` or `error`.
  A provider only feeds it deltas.
- `provider_worker(name, stream_fn)` registers `provider::<name>::stream`: it opens the channel writer,
  runs the provider, turns any exception into an `error` event (with a mapped `error_kind`), always closes
  the writer, and returns `{ok, status}`.
- `classify_error` maps an exception to an `ErrorKind` and a readable message.
- `ToolNames` maps function ids (`billing::charge`) to tool names that model APIs accept
  (`^[a-zA-Z0-9_-]{1,64}$`, here `billing__charge`) and back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    ContentBlock,
    Credential,
    DoneEvent,
    ErrorEvent,
    ErrorKind,
    FunctionCallBlock,
    FunctionResultMessage,
    ImageBlock,
    PartialEvent,
    PartialType,
    StopEvent,
    StopReason,
    StreamRequest,
    TextBlock,
    ThinkingBlock,
    Usage,
    UsageEvent,
)
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker

log = logging.getLogger("teamster.harness.providers")

Sink = Callable[[str], Awaitable[None]]
Credentials = Callable[[str], Awaitable[Any]]  # provider name -> Credential, or None when there is none
StreamFn = Callable[[StreamRequest, "EventWriter", Credentials], Awaitable[None]]
Status = Literal["done", "error", "aborted"]

# How long the error path may spend writing the final frames to a channel nobody reads.
_FINAL_WRITE_TIMEOUT_S = 5.0


class ProviderError(Exception):
    """A failure the provider already understands: `kind` goes straight into the `error` event."""

    def __init__(self, message: str, kind: ErrorKind = "permanent") -> None:
        super().__init__(message)
        self.message = message
        self.kind: ErrorKind = kind


# ---- the event builder -----------------------------------------------------------------------


class EventWriter:
    """Builds the assistant message from deltas and writes each §2.5 event to `sink` as JSON text.

    Blocks open implicitly (a text delta while a thinking block is open ends the thinking block and
    starts a text block) or explicitly (`text_start`, `thinking_start`, `function_call_start`), and end
    with `end_block()`, or when the next block starts, or at `finish()` / `fail()`.
    """

    def __init__(self, sink: Sink, *, provider: str, model: str) -> None:
        self.message = AssistantMessage(provider=provider, model=model, timestamp=now_ms())
        self.status: Status | None = None
        self._sink = sink
        self._started = False
        self._open: int | None = None  # index in message.content of the open block
        self._raw_args: dict[int, str] = {}  # function-call block index -> JSON text received so far

    @property
    def finished(self) -> bool:
        return self.status is not None

    # -- blocks --

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self._partial("start")

    async def text_start(self) -> None:
        await self._open_block(TextBlock(text=""), "text_start")

    async def text(self, delta: str) -> None:
        if not delta:
            return
        block = self._current(TextBlock)
        if block is None:
            await self.text_start()
            block = self._current(TextBlock)
            assert block is not None
        block.text += delta
        await self._partial("text_delta", delta)

    async def thinking_start(self, signature: str | None = None) -> None:
        await self._open_block(ThinkingBlock(text="", signature=signature), "thinking_start")

    async def thinking(self, delta: str) -> None:
        if not delta:
            return
        block = self._current(ThinkingBlock)
        if block is None:
            await self.thinking_start()
            block = self._current(ThinkingBlock)
            assert block is not None
        block.text += delta
        await self._partial("thinking_delta", delta)

    def thinking_signature(self, signature: str) -> None:
        """Append to the open thinking block's signature (no event: signatures are opaque)."""
        block = self._current(ThinkingBlock)
        if block is not None:
            block.signature = (block.signature or "") + signature

    async def function_call_start(self, call_id: str, function_id: str) -> int:
        """Open a function-call block; returns its index, to feed deltas to it later."""
        await self._open_block(FunctionCallBlock(id=call_id, function_id=function_id), "functioncall_start")
        assert self._open is not None
        self._raw_args[self._open] = ""
        return self._open

    async def function_call_delta(self, fragment: str, index: int | None = None) -> None:
        """Feed a piece of the arguments' JSON text to the open call (or to block `index`).

        A fragment for a call that has already ended (some servers interleave parallel calls) is kept
        without an event; its arguments are parsed again when the message finishes.
        """
        if not fragment:
            return
        target = self._open if index is None else index
        if target is None or target not in self._raw_args:
            raise ProviderError("function-call arguments arrived outside a function call", "transient")
        self._raw_args[target] += fragment
        block = self.message.content[target]
        assert isinstance(block, FunctionCallBlock)
        if fragment.rstrip().endswith("}"):  # cheap: only try when the text may be complete
            parsed = _try_object(self._raw_args[target])
            if parsed is not None:
                block.arguments = parsed
        if target == self._open:
            await self._partial("functioncall_delta", fragment)

    async def function_call_end(self, arguments: dict[str, Any] | None = None) -> None:
        """End the open call; `arguments`, when given, replace whatever the deltas said."""
        if self._open is not None and arguments is not None:
            block = self.message.content[self._open]
            if isinstance(block, FunctionCallBlock):
                block.arguments = arguments
                self._raw_args.pop(self._open, None)
        await self.end_block()

    async def end_block(self) -> None:
        if self._open is None:
            return
        index, self._open = self._open, None
        block = self.message.content[index]
        if isinstance(block, TextBlock):
            await self._partial("text_end")
        elif isinstance(block, ThinkingBlock):
            await self._partial("thinking_end")
        elif isinstance(block, FunctionCallBlock):
            if index in self._raw_args:
                block.arguments = parse_arguments(self._raw_args[index])
            await self._partial("functioncall_end")

    # -- usage and the end --

    def update_usage(
        self,
        *,
        input: int | None = None,
        output: int | None = None,
        cache_read: int | None = None,
        cache_write: int | None = None,
    ) -> None:
        """Record token counts (no event: one `usage` event goes out before `stop`)."""
        usage = self.message.usage or Usage()
        if input is not None:
            usage.input = input
        if output is not None:
            usage.output = output
        if cache_read is not None:
            usage.cache_read = cache_read
        if cache_write is not None:
            usage.cache_write = cache_write
        self.message.usage = usage

    async def finish(self, stop_reason: StopReason = "end") -> AssistantMessage:
        """End normally: `usage`, `stop`, `done`. A message with function calls stops with `function_call`."""
        if self.finished:
            raise RuntimeError("the stream has already ended")
        await self.start()
        await self.end_block()
        self._reparse_arguments()
        if stop_reason == "end" and any(isinstance(b, FunctionCallBlock) for b in self.message.content):
            stop_reason = "function_call"
        self.message.stop_reason = stop_reason
        if self.message.usage is None:
            self.message.usage = Usage()
        self.status = "done"
        await self._emit(UsageEvent(usage=self.message.usage))
        await self._emit(StopEvent(stop_reason=stop_reason))
        await self._emit(DoneEvent(message=self.message))
        return self.message

    async def fail(
        self, message: str, kind: ErrorKind | None = "permanent", *, stop_reason: StopReason = "error"
    ) -> None:
        """End with an error: open blocks end, then `usage` (if any was reported), `stop`, `error`."""
        if self.finished:
            return
        self.status = "aborted" if stop_reason == "aborted" else "error"
        await self.start()
        await self.end_block()
        self._reparse_arguments()
        self.message.stop_reason = stop_reason
        self.message.error_message = message
        self.message.error_kind = kind
        if self.message.usage is not None:
            await self._emit(UsageEvent(usage=self.message.usage))
        await self._emit(StopEvent(stop_reason=stop_reason, error_message=message, error_kind=kind))
        await self._emit(ErrorEvent(error=self.message))

    # -- internals --

    async def _open_block(self, block: ContentBlock, event: PartialType) -> None:
        if self.finished:
            raise RuntimeError("the stream has already ended")
        await self.start()
        await self.end_block()
        self.message.content.append(block)
        self._open = len(self.message.content) - 1
        await self._partial(event)

    def _current(self, kind: type[TextBlock] | type[ThinkingBlock]) -> Any:
        if self._open is None:
            return None
        block = self.message.content[self._open]
        return block if isinstance(block, kind) else None

    def _reparse_arguments(self) -> None:
        for index, raw in self._raw_args.items():
            block = self.message.content[index]
            if isinstance(block, FunctionCallBlock):
                block.arguments = parse_arguments(raw)
        self._raw_args.clear()

    async def _partial(self, kind: PartialType, delta: str | None = None) -> None:
        await self._emit(PartialEvent(type=kind, partial=self.message, delta=delta))

    async def _emit(self, event: PartialEvent | UsageEvent | StopEvent | DoneEvent | ErrorEvent) -> None:
        await self._sink(event.model_dump_json(exclude_none=True))


def parse_arguments(raw: str) -> dict[str, Any]:
    """A call's final arguments: `{}` for no text, the object itself, `{"value": x}` for a JSON
    non-object, and `{"_raw_arguments": text}` for text that is not JSON (the callee will refuse it,
    and the model sees why)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw_arguments": raw}
    return value if isinstance(value, dict) else {"value": value}


def _try_object(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---- the worker ------------------------------------------------------------------------------


def provider_worker(name: str, stream_fn: StreamFn, *, description: str | None = None) -> Worker:
    """A worker serving `provider::<name>::stream` with `stream_fn(request, events, credentials)`.

    `stream_fn` feeds `events` and ends it with `events.finish(...)`; raising instead ends the stream
    with an `error` event whose `error_kind` comes from `classify_error`.
    """
    worker = Worker(f"provider-{name}", description=description or f"{name} model provider")

    async def stream(req: StreamRequest) -> dict[str, Any]:
        return await run_stream(worker, name, req, stream_fn)

    worker.register_function(
        f"provider::{name}::stream",
        stream,
        description=f"Stream one {name} assistant turn as AssistantMessageEvents to writer_ref",
    )
    return worker


async def run_stream(worker: Worker, name: str, req: StreamRequest, stream_fn: StreamFn) -> dict[str, Any]:
    channel = worker.channel_writer(req.writer_ref)
    events = EventWriter(channel.send_text, provider=name, model=req.model)
    try:
        await events.start()
        await stream_fn(req, events, lambda provider: get_credential(worker, provider))
        if not events.finished:
            raise ProviderError("the provider ended without a final message", "transient")
    except asyncio.CancelledError:
        await _bounded(events.fail(f"{name}: the stream was cancelled", None, stop_reason="aborted"))
        raise
    except Exception as exc:
        kind, message = classify_error(exc)
        if events.finished:  # the sink failed after the terminal event: nothing more to tell
            log.warning("provider %s: %s after the stream ended", name, message)
        else:
            log.info("provider %s stream failed (%s): %s", name, kind, message)
            await _bounded(events.fail(f"{name}: {message}", kind))
    finally:
        await _bounded(channel.close())
    return {"ok": events.status == "done", "status": events.status or "error"}


async def _bounded(step: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(step, _FINAL_WRITE_TIMEOUT_S)
    except Exception as exc:  # the channel is gone or stuck: the caller's trigger result still says ok=False
        log.warning("provider stream: could not write the final frames: %s", exc)


# ---- errors ----------------------------------------------------------------------------------

_OVERFLOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|input is too long|too many tokens"
    r"|exceeds? (the )?(model'?s? )?(maximum )?(context|token limit)|reduce the length",
    re.IGNORECASE,
)
_TYPE_KINDS: dict[str, ErrorKind] = {
    "authentication_error": "auth_expired",
    "permission_error": "auth_expired",
    "invalid_api_key": "auth_expired",
    "rate_limit_error": "rate_limited",
    "rate_limit_exceeded": "rate_limited",
    "overloaded_error": "transient",
    "api_error": "transient",
    "timeout_error": "transient",
    "server_error": "transient",
    "context_length_exceeded": "context_overflow",
}


def classify_error(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map an exception to `(error_kind, message)`.

    401/403 → auth_expired, 429 → rate_limited, a context-length complaint (or 413) → context_overflow,
    408/5xx/529, timeouts and connection failures → transient, everything else → permanent. Provider SDK
    errors are read by shape (`status_code`, `body`), so this needs no SDK import.
    """
    if isinstance(exc, ProviderError):
        return exc.kind, exc.message
    status = getattr(exc, "status_code", None)
    error_type, api_message = _body_error(getattr(exc, "body", None))
    message = api_message or str(exc) or type(exc).__name__
    kind: ErrorKind
    if isinstance(status, int) and status >= 400:
        message = f"HTTP {status}: {message}"
        kind = _status_kind(status)
        if kind == "permanent" and error_type in _TYPE_KINDS:
            kind = _TYPE_KINDS[error_type]
    elif error_type in _TYPE_KINDS:  # an error event inside a 200 stream
        kind = _TYPE_KINDS[error_type]
    elif isinstance(exc, TimeoutError) or _named(exc, "Timeout"):
        kind, message = "transient", f"timed out: {message}"
    elif isinstance(exc, ConnectionError) or _named(exc, "ConnectionError", "ConnectError"):
        kind, message = "transient", f"connection failed: {message}"
    elif isinstance(exc, InvocationError):
        kind = "transient" if exc.code == ErrorCode.TIMEOUT else "permanent"
    else:
        kind = "permanent"
    if kind == "permanent" and _OVERFLOW.search(message):
        kind = "context_overflow"
    return kind, message


def _status_kind(status: int) -> ErrorKind:
    if status in (401, 403):
        return "auth_expired"
    if status == 429:
        return "rate_limited"
    if status == 413:
        return "context_overflow"
    if status == 408 or status >= 500:
        return "transient"
    return "permanent"


def _body_error(body: Any) -> tuple[str | None, str | None]:
    """(type or code, message) from an API error body: `{error:{type,code,message}}` or the inner dict."""
    if not isinstance(body, dict):
        return None, body if isinstance(body, str) and body else None
    nested = body.get("error")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else body
    message = inner.get("message")
    kind = next((v for k in ("code", "type") if isinstance(v := inner.get(k), str) and v in _TYPE_KINDS), None)
    if kind is None:
        kind = inner.get("type") if isinstance(inner.get("type"), str) else None
    return kind, message if isinstance(message, str) and message else None


def _named(exc: BaseException, *parts: str) -> bool:
    return any(part in cls.__name__ for cls in type(exc).__mro__ for part in parts)


# ---- credentials -----------------------------------------------------------------------------

_CREDENTIAL: TypeAdapter[Any] = TypeAdapter(Credential)


async def get_credential(worker: Worker, provider: str, timeout: float = 5.0) -> Any:
    """`auth::get_token {provider}` → an ApiKeyCredential / OAuthCredential, or None when there is none
    (or when no worker serves `auth::get_token`)."""
    try:
        reply = await worker.trigger("auth::get_token", {"provider": provider}, timeout=timeout)
    except InvocationError as exc:
        if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
            return None
        raise ProviderError(f"could not get a credential for {provider}: {exc.message}", "transient") from exc
    if reply is None:
        return None
    try:
        return _CREDENTIAL.validate_python(reply)
    except ValidationError as exc:
        raise ProviderError(f"auth::get_token returned an unusable credential for {provider}", "auth_expired") from exc


def credential_secret(credential: Any) -> str:
    """The bearer secret of a credential: the API key or the OAuth access token."""
    secret = getattr(credential, "key", None) or getattr(credential, "access_token", None)
    if not isinstance(secret, str) or not secret:
        raise ProviderError("the credential has no key", "auth_expired")
    return secret


# ---- tool names ------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
MAX_TOOL_NAME = 64


def safe_tool_name(function_id: str) -> str:
    """`billing::charge` → `billing__charge`; other characters outside `[a-zA-Z0-9_-]` become `_`;
    names over 64 characters keep a prefix plus a hash of the full id."""
    name = _UNSAFE.sub("_", function_id.replace("::", "__")) or "function"
    if len(name) > MAX_TOOL_NAME:
        digest = hashlib.sha1(function_id.encode()).hexdigest()[:8]
        name = f"{name[: MAX_TOOL_NAME - 9]}_{digest}"
    return name


class ToolNames:
    """One request's two-way map between function ids and tool names.

    Names come from `safe_tool_name`; when two ids would share a name, later ones get `_2`, `_3`, ….
    A name the model invents (not in the map) maps back by turning `__` into `::`.
    """

    def __init__(self, function_ids: Iterable[str] = ()) -> None:
        self._names: dict[str, str] = {}
        self._ids: dict[str, str] = {}
        for function_id in function_ids:
            self.name(function_id)

    def name(self, function_id: str) -> str:
        known = self._names.get(function_id)
        if known is not None:
            return known
        base = name = safe_tool_name(function_id)
        n = 2
        while name in self._ids:
            suffix = f"_{n}"
            name = base[: MAX_TOOL_NAME - len(suffix)] + suffix
            n += 1
        self._names[function_id] = name
        self._ids[name] = function_id
        return name

    def function_id(self, name: str) -> str:
        return self._ids.get(name) or name.replace("__", "::")


# ---- message helpers -------------------------------------------------------------------------


def text_of(content: str | list[ContentBlock] | Any) -> str:
    """The text of a message's content: a string, or the text blocks joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.text for b in content if isinstance(b, TextBlock))
    return "" if content is None else json.dumps(content, default=str)


def result_text(message: FunctionResultMessage) -> str:
    """A function result as text: its text blocks, else its `details` as JSON."""
    text = text_of(message.content)
    if not text and message.details is not None:
        text = json.dumps(message.details, default=str)
    if any(isinstance(b, ImageBlock) for b in message.content):
        text = (text + "\n[image]").strip()
    return text


def function_ids_in(req: StreamRequest) -> list[str]:
    """Every function id a request names: the tools first, then calls found in the history."""
    ids = [tool.name for tool in req.tools]
    for message in req.messages:
        if isinstance(message, AssistantMessage):
            ids.extend(b.function_id for b in message.content if isinstance(b, FunctionCallBlock))
        elif isinstance(message, FunctionResultMessage):
            ids.append(message.function_id)
    return ids


def replayable(message: AgentMessage) -> bool:
    """Whether a history message goes back to a model: assistant turns that are empty, failed or were
    aborted do not (their calls never ran, and half a turn confuses the next one)."""
    if isinstance(message, AssistantMessage):
        return bool(message.content) and message.stop_reason not in ("error", "aborted")
    return True
