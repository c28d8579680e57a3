"""Data channels (§4.9): a bounded pipe of text and binary frames between one writer and one reader."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from teamster.protocol.transport import ChannelFrame

DEFAULT_BUFFER = 64
MAX_BUFFER = 1024
UNCLAIMED_TTL_S = 300


@dataclass(slots=True)
class Channel:
    id: str
    access_key: str
    buffer_size: int
    owner: str | None  # worker id; the channel goes when that worker disconnects
    queue: asyncio.Queue[ChannelFrame | None]  # None marks the writer's close
    created_at: float = field(default_factory=time.monotonic)
    writer_taken: bool = False
    reader_taken: bool = False
    reader_gone: bool = False  # e.g. an HTTP client left mid-stream: the writer should stop

    def ref(self, direction: str) -> dict[str, Any]:
        return {"channel_id": self.id, "access_key": self.access_key, "direction": direction}

    async def put(self, frame: ChannelFrame) -> None:
        if self.reader_gone:
            raise ConnectionResetError("the channel's reader has gone")
        await self.queue.put(frame)

    async def close_writer(self) -> None:
        await self.queue.put(None)

    async def get(self) -> ChannelFrame | None:
        """The next frame, waiting for it; None once the writer has closed."""
        return await self.queue.get()


class ChannelRegistry:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def create(self, owner: str | None, buffer_size: int | None = None) -> Channel:
        size = min(max(buffer_size or DEFAULT_BUFFER, 1), MAX_BUFFER)
        channel = Channel(
            id=str(uuid.uuid4()),
            access_key=secrets.token_urlsafe(24),
            buffer_size=size,
            owner=owner,
            queue=asyncio.Queue(maxsize=size),
        )
        self.channels[channel.id] = channel
        return channel

    def get(self, channel_id: str, access_key: str | None) -> Channel | None:
        channel = self.channels.get(channel_id)
        if channel is None or access_key is None or not secrets.compare_digest(channel.access_key, access_key):
            return None
        return channel

    def delete(self, channel_id: str) -> None:
        self.channels.pop(channel_id, None)

    def delete_owned_by(self, worker_id: str) -> None:
        for cid in [c.id for c in self.channels.values() if c.owner == worker_id]:
            del self.channels[cid]

    def sweep(self) -> int:
        """Drop channels left half-unclaimed for too long; returns how many."""
        cutoff = time.monotonic() - UNCLAIMED_TTL_S
        stale = [
            c.id for c in self.channels.values() if c.created_at < cutoff and not (c.writer_taken and c.reader_taken)
        ]
        for cid in stale:
            del self.channels[cid]
        return len(stale)
