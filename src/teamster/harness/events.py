"""`agent::events`: every harness event of a session, in order, with a gapless sequence, readable later.

Events are stream items (`stream::set`, so stream triggers fire for live readers) keyed by a zero-padded
sequence. The owner of `events::emit` counts each session's sequence in memory (see `owned.py`); a
session it does not remember starts from the last item in the stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from teamster.harness.owned import OwnedCache
from teamster.sdk import Worker

STREAM = "agent::events"
TURN_END_STREAM = "agent::turn_end"


class Emit(BaseModel):
    """One event, or several in order (`events`), for one session."""

    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    event: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> Emit:
        if (self.event is None) == (self.events is None):
            raise ValueError("give event or events, not both or neither")
        return self

    def batch(self) -> list[dict[str, Any]]:
        return self.events if self.events is not None else [self.event or {}]


class ListEvents(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    after: int = Field(default=0, ge=0)
    limit: int = Field(default=500, ge=1, le=5000)


class Sequences:
    """The last sequence number of each session, counted by the owner of `events::emit`."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._last: OwnedCache[int] = OwnedCache(worker)
        self._reading: dict[str, asyncio.Lock] = {}

    async def take(self, session_id: str, count: int) -> int:
        """Reserve `count` numbers for a session; returns the first."""
        last = self._last.get(session_id)
        if last is None:
            async with self._reading.setdefault(session_id, asyncio.Lock()):
                last = self._last.get(session_id)
                if last is None:
                    last = await self._stored_last(session_id)
            self._reading.pop(session_id, None)
        self._last.put(session_id, last + count)
        return last + 1

    async def _stored_last(self, session_id: str) -> int:
        items = await self._worker.trigger("stream::list", {"stream_name": STREAM, "group_id": session_id})
        return max((int(item["seq"]) for item in items), default=0)


def create_worker() -> Worker:
    worker = Worker("agent-events")
    sequences = Sequences(worker)

    @worker.function("events::emit", description="Append events to a session's agent::events stream, in order")
    async def emit(req: Emit) -> dict[str, int]:
        batch = req.batch()
        seq = await sequences.take(req.session_id, len(batch))
        for offset, event in enumerate(batch):
            item = {**event, "session_id": req.session_id, "seq": seq + offset}
            key = _key(seq + offset)
            await worker.trigger(
                "stream::set", {"stream_name": STREAM, "group_id": req.session_id, "item_id": key, "data": item}
            )
            if event.get("type") == "turn_end":
                await worker.trigger(
                    "stream::set",
                    {"stream_name": TURN_END_STREAM, "group_id": req.session_id, "item_id": key, "data": item},
                )
        return {"seq": seq + len(batch) - 1}

    @worker.function("events::list", description="A session's events after a sequence number, oldest first")
    async def list_events(req: ListEvents) -> dict[str, Any]:
        items = await worker.trigger("stream::list", {"stream_name": STREAM, "group_id": req.session_id})
        ordered = sorted((e for e in items if e["seq"] > req.after), key=lambda e: e["seq"])
        page = ordered[: req.limit]
        return {"events": page, "cursor": page[-1]["seq"] if page else req.after, "more": len(ordered) > len(page)}

    return worker


def _key(seq: int) -> str:
    return f"{seq:012d}"
