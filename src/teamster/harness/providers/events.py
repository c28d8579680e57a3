"""`EventWriter`: builds the partial `AssistantMessage` as deltas arrive and writes the §2.5 events (iii-harness.md).

Events go out, in order, as JSON text frames: `start`, then per content block `<kind>_start` /
`<kind>_delta`* / `<kind>_end` (kind = text, thinking, functioncall), then `usage`, `stop`, and one
terminal `done` or `error`. A provider only feeds it deltas.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from teamster.harness.contracts import (
    AssistantMessage,
    ContentBlock,
    DoneEvent,
    ErrorEvent,
    ErrorKind,
    FunctionCallBlock,
    PartialEvent,
    PartialType,
    StopEvent,
    StopReason,
    TextBlock,
    ThinkingBlock,
    Usage,
    UsageEvent,
)
from teamster.harness.providers.errors import ProviderError
from teamster.protocol.clock import now_ms

Sink = Callable[[str], Awaitable[None]]
Status = Literal["done", "error", "aborted"]


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
