"""The in-process transport: how a worker in the engine's own process reaches it, with no socket.

The engine hands one to any worker that asks (`Engine.local_transport`); the SDK's `Worker.attach`
takes it as it takes a WebSocket transport, knowing only the shape it has, never the engine. Calls go
straight into the router, messages are the protocol's own objects with no encoding, spans go straight
into iii-traces, and a data channel's ends are the engine's queue itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from teamster.engine.channels import Channel
from teamster.engine.connection import InprocConnection
from teamster.protocol import InvokeFunction, Message
from teamster.protocol.errors import ConnectionLost, ErrorCode
from teamster.protocol.otlp import SpanRecord
from teamster.protocol.transport import LocalPeer, timed_out

if TYPE_CHECKING:
    from teamster.engine.engine import Engine


class LocalTransport:
    """One worker's in-process link to `engine`; `open` attaches the worker, `close` lets it go."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: InprocConnection | None = None

    @property
    def takes_spans(self) -> bool:
        """Whether spans have anywhere to go (iii-traces runs): a worker need not buffer them otherwise."""
        return self.engine.traces is not None

    async def open(self, peer: LocalPeer) -> None:
        self.conn = await self.engine.attach(peer)

    async def send(self, msg: Message) -> None:
        if self.conn is not None:
            await self.engine.handle(self.conn, msg)

    async def invoke(self, msg: InvokeFunction, timeout: float | None) -> Any:
        """A direct await; bounded only when the caller gave a timeout (nothing on the way can drop it)."""
        if self.conn is None:
            raise ConnectionLost(ErrorCode.CONNECTION_LOST, "worker is not attached", function_id=msg.function_id)
        if timeout is None:
            return await self.engine.router.invoke(self.conn, msg)
        try:
            async with asyncio.timeout(timeout):
                return await self.engine.router.invoke(self.conn, msg)
        except TimeoutError:
            raise timed_out(msg.function_id, timeout) from None

    async def export_spans(self, spans: list[SpanRecord]) -> bool:
        """Straight into the engine's span store: no frame, no encoding."""
        traces = self.engine.traces
        if traces is None:
            return False
        traces.add(spans)
        return True

    def channel_writer(self, ref: dict[str, Any]) -> Channel | None:
        """The channel behind a writer ref, its writer end taken now (as `/ws/channels` marks a connected one)."""
        channel = self.engine.channels.get(ref["channel_id"], ref["access_key"])
        if channel is not None:
            channel.writer_taken = True
        return channel

    def channel_reader(self, ref: dict[str, Any]) -> Channel | None:
        """The channel behind a reader ref, its reader end taken now."""
        channel = self.engine.channels.get(ref["channel_id"], ref["access_key"])
        if channel is not None:
            channel.reader_taken = True
        return channel

    def release_channel(self, channel_id: str) -> None:
        """Drop a channel its reader has drained, as the socket path does when the reader leaves."""
        self.engine.channels.delete(channel_id)

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await self.engine.disconnect(conn)
