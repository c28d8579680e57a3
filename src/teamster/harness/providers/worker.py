"""The provider worker: `provider::<name>::stream` around a provider's stream function (iii-harness.md §2.5).

A provider is a stream function, `stream_fn(request, events, credentials)`, that feeds `events` (an
`EventWriter`) and ends it with `events.finish(...)`. `ProviderStream` is the handler that serves it: it
opens the channel writer, runs the provider, turns any exception into an `error` event (with a mapped
`error_kind`), always closes the writer, and returns `{ok, status}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from teamster.harness.contracts import StreamRequest
from teamster.harness.providers.credentials import Credentials, get_credential
from teamster.harness.providers.errors import ProviderError, classify_error
from teamster.harness.providers.events import EventWriter
from teamster.sdk import Worker

log = logging.getLogger("teamster.harness.providers")

StreamFn = Callable[[StreamRequest, EventWriter, Credentials], Awaitable[None]]

# How long the error path may spend writing the final frames to a channel nobody reads.
_FINAL_WRITE_TIMEOUT_S = 5.0


class ProviderStream:
    """The handler of `provider::<name>::stream` for one provider's `stream_fn`.

    Its function id carries the provider's name, known only when the worker is built (one openai module
    serves `provider::openai::stream` and `provider::ollama::stream` alike), so `register` registers it
    by hand rather than through `@handles`.
    """

    def __init__(self, worker: Worker, name: str, stream_fn: StreamFn) -> None:
        self.worker = worker
        self.name = name
        self.stream_fn = stream_fn

    @property
    def function_id(self) -> str:
        return f"provider::{self.name}::stream"

    def register(self) -> None:
        self.worker.register_function(
            self.function_id,
            self.stream,
            description=f"Stream one {self.name} assistant turn as AssistantMessageEvents to writer_ref",
        )

    async def stream(self, req: StreamRequest) -> dict[str, Any]:
        name = self.name
        channel = self.worker.channel_writer(req.writer_ref)
        events = EventWriter(channel.send_text, provider=name, model=req.model)
        try:
            await events.start()
            await self.stream_fn(req, events, lambda provider: get_credential(self.worker, provider))
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


def provider_worker(name: str, stream_fn: StreamFn, *, description: str | None = None) -> Worker:
    """A worker serving `provider::<name>::stream` with `stream_fn(request, events, credentials)`.

    `stream_fn` feeds `events` and ends it with `events.finish(...)`; raising instead ends the stream
    with an `error` event whose `error_kind` comes from `classify_error`.
    """
    worker = Worker(f"provider-{name}", description=description or f"{name} model provider")
    ProviderStream(worker, name, stream_fn).register()
    return worker


async def _bounded(step: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(step, _FINAL_WRITE_TIMEOUT_S)
    except Exception as exc:  # the channel is gone or stuck: the caller's trigger result still says ok=False
        log.warning("provider stream: could not write the final frames: %s", exc)
