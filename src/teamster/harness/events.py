"""`agent::events`: every harness event of a session, in order, with a gapless sequence, readable later.

Events are stream items (`stream::set`, so stream triggers fire for live readers) keyed by a zero-padded
sequence taken atomically from state, so the order survives restarts and reads page by `after`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from teamster.sdk import Worker

STREAM = "agent::events"
TURN_END_STREAM = "agent::turn_end"
SEQUENCES = "agent_event_seq"


class Emit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    event: dict[str, Any]


class ListEvents(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    after: int = Field(default=0, ge=0)
    limit: int = Field(default=500, ge=1, le=5000)


def create_worker() -> Worker:
    worker = Worker("agent-events")

    @worker.function("events::emit", description="Append an event to a session's agent::events stream")
    async def emit(req: Emit) -> dict[str, int]:
        counted = await worker.trigger(
            "state::update",
            {"scope": SEQUENCES, "key": req.session_id, "ops": [{"type": "increment", "path": "", "by": 1}]},
        )
        seq = int(counted["new_value"])
        item = {**req.event, "session_id": req.session_id, "seq": seq}
        await worker.trigger(
            "stream::set", {"stream_name": STREAM, "group_id": req.session_id, "item_id": _key(seq), "data": item}
        )
        if req.event.get("type") == "turn_end":
            await worker.trigger(
                "stream::set",
                {"stream_name": TURN_END_STREAM, "group_id": req.session_id, "item_id": _key(seq), "data": item},
            )
        return {"seq": seq}

    @worker.function("events::list", description="A session's events after a sequence number, oldest first")
    async def list_events(req: ListEvents) -> dict[str, Any]:
        items = await worker.trigger("stream::list", {"stream_name": STREAM, "group_id": req.session_id})
        ordered = sorted((e for e in items if e["seq"] > req.after), key=lambda e: e["seq"])
        page = ordered[: req.limit]
        return {"events": page, "cursor": page[-1]["seq"] if page else req.after, "more": len(ordered) > len(page)}

    return worker


def _key(seq: int) -> str:
    return f"{seq:012d}"
