"""`agent::events`: every harness event of a session, in order, with a gapless sequence, readable later.

Events are stream items (`stream::set`, so stream triggers fire for live readers) keyed by a zero-padded
sequence. The owner of `events::emit` counts each session's sequence in memory (see `owned.py`); a
session it does not remember starts from the last item in the stream.

Each event must be one of the harness events (`harness_events.HarnessEvent`): `events::emit` decodes it
at the door and refuses a batch holding anything else, then stores each event as it was sent (its wire
form is the contract, byte for byte). An event may carry an `id` beside its fields: one sent again with an
id already stored is left out, so a sender that does not know whether its last send landed (its reply was
lost, this worker died) sends it again safely. Every `turn_end` is also written to `agent::turn_end`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from teamster.harness.contracts import TURN_END_STREAM
from teamster.harness.harness_events import HARNESS_EVENTS, HarnessEvent, TurnEnd
from teamster.harness.owned import OwnedCache
from teamster.protocol.handles import handles
from teamster.sdk import Worker
from teamster.sdk.keyed_lock import KeyedLock

STREAM = "agent::events"
REMEMBERED_IDS = 1024  # a sender re-sends only its latest unconfirmed events; far fewer than this


class Emit(BaseModel):
    """One event, or several in order (`events`), for one session."""

    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    event: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    _decoded: list[HarnessEvent] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _one_of(self) -> Emit:
        if (self.event is None) == (self.events is None):
            raise ValueError("give event or events, not both or neither")
        self._decoded = [HARNESS_EVENTS.validate_python(event) for event in self.batch()]
        return self

    def batch(self) -> list[dict[str, Any]]:
        """The events as sent: what is stored."""
        return self.events if self.events is not None else [self.event or {}]

    def decoded(self) -> list[HarnessEvent]:
        """The same events decoded, in the same order."""
        return self._decoded


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

    def admit(self, batch: list[dict[str, Any]]) -> list[tuple[int, int]]:
        """Number the events not stored yet, as (seq, index in the batch); one whose id is already here
        (sent again) is left out."""
        numbered: list[tuple[int, int]] = []
        for index, event in enumerate(batch):
            event_id = event.get("id")
            if isinstance(event_id, str):
                if event_id in self.ids:
                    continue
                self.ids[event_id] = None
                if len(self.ids) > REMEMBERED_IDS:
                    self.ids.popitem(last=False)
            self.last += 1
            numbered.append((self.last, index))
        return numbered


class Sequences:
    """Each session's log, kept by the owner of `events::emit`; a session it does not remember is read back."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._logs: OwnedCache[Log] = OwnedCache(worker)
        self._reading = KeyedLock()

    async def admit(self, session_id: str, batch: list[dict[str, Any]]) -> tuple[list[tuple[int, int]], int]:
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


class EventLog:
    """The handlers, with what they share: the worker to call streams through and the sessions' sequences."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.sequences = Sequences(worker)

    @handles("events::emit", description="Append events to a session's agent::events stream, in order")
    async def emit(self, req: Emit) -> dict[str, int]:
        batch, decoded = req.batch(), req.decoded()
        numbered, last = await self.sequences.admit(req.session_id, batch)
        for seq, index in numbered:
            item = {**batch[index], "session_id": req.session_id, "seq": seq}
            key = _key(seq)
            await self.worker.trigger(
                "stream::set", {"stream_name": STREAM, "group_id": req.session_id, "item_id": key, "data": item}
            )
            if isinstance(decoded[index], TurnEnd):
                await self.worker.trigger(
                    "stream::set",
                    {"stream_name": TURN_END_STREAM, "group_id": req.session_id, "item_id": key, "data": item},
                )
        return {"seq": numbered[-1][0] if numbered else last}

    @handles("events::list", description="A session's events after a sequence number, oldest first")
    async def list_events(self, req: ListEvents) -> dict[str, Any]:
        items = await self.worker.trigger("stream::list", {"stream_name": STREAM, "group_id": req.session_id})
        ordered = sorted((e for e in items if e["seq"] > req.after), key=lambda e: e["seq"])
        page = ordered[: req.limit]
        return {"events": page, "cursor": page[-1]["seq"] if page else req.after, "more": len(ordered) > len(page)}


def create_worker() -> Worker:
    worker = Worker("agent-events")
    worker.serve(EventLog(worker))
    return worker


def _key(seq: int) -> str:
    return f"{seq:012d}"
