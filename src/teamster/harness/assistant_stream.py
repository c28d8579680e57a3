"""Read one assistant message from `provider::<name>::stream` through a channel (iii-harness.md §2.5).

The turn orchestrator streams every model call this way and the compaction worker its summaries; both
share this reading loop (as they share `lease.py`), never each other's modules. The provider call and
the channel are read side by side: the provider returns as it closes its end, so once either finishes
the other gets READER_GRACE_S more. A frame that is not an assistant-message event is skipped. A
caller cancelled mid-stream cancels the provider call and keeps draining the channel in the
background, so the provider's writer never blocks on a full channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from teamster.harness.contracts import (
    AssistantMessage,
    AssistantMessageEvent,
    DoneEvent,
    ErrorEvent,
    PartialEvent,
    StreamRequest,
)
from teamster.protocol import InvocationError
from teamster.sdk import ChannelReader, Worker

EVENT: TypeAdapter[AssistantMessageEvent] = TypeAdapter(AssistantMessageEvent)
READER_GRACE_S = 2.0  # after the provider call ends, how long its last frames may still take

OnPartial = Callable[[PartialEvent], None]


@dataclass(slots=True)
class Streamed:
    """How one stream ended: the final message (None: none arrived) and what went wrong, if anything."""

    final: AssistantMessage | None = None
    streamed: bool = False  # whether the body arrived as text deltas
    failure: str | None = None  # the provider call's error message, when it failed
    broken: str | None = None  # the channel's own failure, when reading it failed


async def stream_assistant(
    worker: Worker,
    provider: str,
    request: Callable[[dict[str, Any]], StreamRequest],
    timeout_s: float,
    on_partial: OnPartial | None = None,
) -> Streamed:
    """Call `provider::<provider>::stream` with `request(writer_ref)` and read its channel to the end."""
    writer, reader = await worker.create_channel()
    payload = request(writer.ref).model_dump(mode="json")
    call = asyncio.ensure_future(worker.trigger(f"provider::{provider}::stream", payload, timeout=timeout_s))
    outcome = Streamed()
    reading = asyncio.ensure_future(_read(reader, outcome, on_partial))
    try:
        await asyncio.wait({call, reading}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), READER_GRACE_S)
    except asyncio.CancelledError:
        call.cancel()
        reading.cancel()
        drain = asyncio.ensure_future(_drain(reader))
        _DRAINS.add(drain)
        drain.add_done_callback(_DRAINS.discard)
        raise
    reading.cancel()
    [read] = await asyncio.gather(reading, return_exceptions=True)
    if isinstance(read, Exception):
        outcome.broken = str(read) or type(read).__name__
    try:
        await call
    except InvocationError as exc:
        outcome.failure = exc.message
    return outcome


async def _read(reader: ChannelReader, outcome: Streamed, on_partial: OnPartial | None) -> None:
    async for frame in reader:
        try:
            event = EVENT.validate_json(frame)
        except ValidationError:
            continue  # a frame we cannot read is skipped, not fatal
        if isinstance(event, DoneEvent):
            outcome.final = event.message
        elif isinstance(event, ErrorEvent):
            outcome.final = event.error
        elif isinstance(event, PartialEvent):
            outcome.streamed = outcome.streamed or event.type == "text_delta"
            if on_partial is not None:
                on_partial(event)


_DRAINS: set[asyncio.Task[None]] = set()


async def _drain(reader: ChannelReader) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(READER_GRACE_S * 150):
            async for _ in reader:
                pass
