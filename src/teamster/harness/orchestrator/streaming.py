"""Stream one assistant message from `provider::<name>::stream` through a channel (§2.5)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    AssistantMessageEvent,
    DoneEvent,
    ErrorEvent,
    PartialEvent,
    StreamRequest,
)
from teamster.harness.orchestrator.record import RunRequest
from teamster.harness.orchestrator.runtime import Runtime, own_message
from teamster.protocol import InvocationError
from teamster.sdk import ChannelReader

EVENT: TypeAdapter[AssistantMessageEvent] = TypeAdapter(AssistantMessageEvent)
READER_GRACE_S = 2.0  # after the provider call ends, how long its last frames may still take

OnPartial = Callable[[PartialEvent], None]


async def stream_assistant(
    rt: Runtime, run: RunRequest, messages: list[AgentMessage], on_partial: OnPartial
) -> tuple[AssistantMessage, bool]:
    """The final assistant message (an error message when the provider failed) and whether a body streamed."""
    writer, reader = await rt.worker.create_channel()
    request = StreamRequest(
        writer_ref=writer.ref,
        system_prompt=run.system_prompt,
        model=run.model,
        messages=messages,
        tools=run.function_schemas,
        agent_id=run.agent_id,
    )
    call = asyncio.ensure_future(
        rt.call(
            f"provider::{run.provider}::stream", request.model_dump(mode="json"), timeout=rt.settings.provider_timeout_s
        )
    )
    outcome: dict[str, Any] = {"final": None, "streamed": False}

    async def pump() -> None:
        async for frame in reader:
            try:
                event = EVENT.validate_json(frame)
            except ValidationError:
                continue  # a frame we cannot read is skipped, not fatal
            if isinstance(event, DoneEvent):
                outcome["final"] = event.message
            elif isinstance(event, ErrorEvent):
                outcome["final"] = event.error
            elif isinstance(event, PartialEvent):
                outcome["streamed"] = outcome["streamed"] or event.type == "text_delta"
                on_partial(event)

    reading = asyncio.ensure_future(pump())
    try:
        await asyncio.wait({call, reading}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), READER_GRACE_S)
    except asyncio.CancelledError:
        # Aborted: stop listening, but keep draining so the provider's writer never blocks on a full channel.
        call.cancel()
        reading.cancel()
        drain = asyncio.ensure_future(_drain(reader))
        _DRAINS.add(drain)
        drain.add_done_callback(_DRAINS.discard)
        raise
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    failure: str | None = None
    try:
        await call
    except InvocationError as exc:
        failure = f"provider {run.provider} failed: {exc.message}"
    final = outcome["final"]
    if final is None:
        text = failure or "provider channel closed without a final message"
        final = own_message(text, "error", error_kind="transient", model=run.model, provider=run.provider)
    return final, bool(outcome["streamed"])


_DRAINS: set[asyncio.Task[None]] = set()


async def _drain(reader: ChannelReader) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(READER_GRACE_S * 150):
            async for _ in reader:
                pass
