"""`agent::events`: every harness event of a session, in order, with a gapless sequence, readable later.

Events are stream items (`stream::set`, so stream triggers fire for live readers) keyed by a zero-padded
sequence. The owner of `events::emit` counts each session's sequence in memory (see `owned.py`); a
session it does not remember starts from the last item in the stream.

An event may carry an `id`: one sent again with an id already stored is left out, so a sender that does
not know whether its last send landed (its reply was lost, this worker died) sends it again safely.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from teamster.harness.owned import OwnedCache
from teamster.sdk import Worker
from teamster.sdk.keyed_lock import KeyedLock

STREAM = "agent::events"
REMEMBERED_IDS = 1024  # a sender re-sends only its latest unconfirmed events; far fewer than this
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


class Log:
    """What the owner of `events::emit` remembers of one session: its last sequence and its latest event ids."""

    def __init__(self, last: int, ids: list[str]) -> None:
        self.last = last
        self.ids: OrderedDict[str, None] = OrderedDict.fromkeys(ids[-REMEMBERED_IDS:])

    def admit(self, batch: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """Number the events not stored yet; one whose id is already here (sent again) is left out."""
        numbered: list[tuple[int, dict[str, Any]]] = []
        for event in batch:
            event_id = event.get("id")
            if isinstance(event_id, str):
                if event_id in self.ids:
                    continue
                self.ids[event_id] = None
                if len(self.ids) > REMEMBERED_IDS:
                    self.ids.popitem(last=False)
            self.last += 1
            numbered.append((self.last, event))
        return numbered


class Sequences:
    """Each session's log, kept by the owner of `events::emit`; a session it does not remember is read back."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._logs: OwnedCache[Log] = OwnedCache(worker)
        self._reading = KeyedLock()

    async def admit(self, session_id: str, batch: list[dict[str, Any]]) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        """Number the batch's new events, in order (nothing awaits between the check and the count); the last number."""
        log = self._logs.get(session_id)
        if log is None:
            async with self._reading.hold(session_id):
                log = self._logs.get(session_id)
                if log is None:
                    log = await self._stored(session_id)
                    self._logs.put(session_id, log)
        return log.admit(batch), log.last

    async def _stored(self, session_id: str) -> Log:
        items = await self._worker.trigger("stream::list", {"stream_name": STREAM, "group_id": session_id})
        ordered = sorted(items, key=lambda item: int(item["seq"]))
        ids = [item["id"] for item in ordered if isinstance(item.get("id"), str)]
        return Log(int(ordered[-1]["seq"]) if ordered else 0, ids)


def create_worker() -> Worker:
    worker = Worker("agent-events")
    sequences = Sequences(worker)

    @worker.function("events::emit", description="Append events to a session's agent::events stream, in order")
    async def emit(req: Emit) -> dict[str, int]:
        numbered, last = await sequences.admit(req.session_id, req.batch())
        for seq, event in numbered:
            item = {**event, "session_id": req.session_id, "seq": seq}
            key = _key(seq)
            await worker.trigger(
                "stream::set", {"stream_name": STREAM, "group_id": req.session_id, "item_id": key, "data": item}
            )
            if event.get("type") == "turn_end":
                await worker.trigger(
                    "stream::set",
                    {"stream_name": TURN_END_STREAM, "group_id": req.session_id, "item_id": key, "data": item},
                )
        return {"seq": numbered[-1][0] if numbered else last}

    @worker.function("events::list", description="A session's events after a sequence number, oldest first")
    async def list_events(req: ListEvents) -> dict[str, Any]:
        items = await worker.trigger("stream::list", {"stream_name": STREAM, "group_id": req.session_id})
        ordered = sorted((e for e in items if e["seq"] > req.after), key=lambda e: e["seq"])
        page = ordered[: req.limit]
        return {"events": page, "cursor": page[-1]["seq"] if page else req.after, "more": len(ordered) > len(page)}

    return worker


def _key(seq: int) -> str:
    return f"{seq:012d}"
