"""A session's streamed events (the provider's deltas), sent in order without waiting for each send."""

from __future__ import annotations

import asyncio
from typing import Any

from teamster.harness.harness_events import HarnessEvent, encode
from teamster.sdk import Worker


class Outbox:
    """A session's events sent in order without waiting: those that queue up during a send go in one batch."""

    def __init__(self, worker: Worker, session_id: str) -> None:
        self._worker = worker
        self._session_id = session_id
        self._queued: list[dict[str, Any]] = []
        self._sending: asyncio.Task[None] | None = None

    def push(self, event: HarnessEvent) -> None:
        self._queued.append(encode(event))
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
            await self._worker.trigger("events::emit", {"session_id": self._session_id, "events": batch})
