"""`iii-worker-manager`: the worker WebSocket listener with `/`, `/otel` and `/ws/channels/{id}` (§1.1)."""

from __future__ import annotations

import logging

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict

from teamster.engine.builtin import Module
from teamster.engine.channels import Channel
from teamster.engine.config import DEFAULT_WS_PORT
from teamster.engine.connection import WsConnection
from teamster.engine.listener import listen
from teamster.protocol import ProtocolError, decode

log = logging.getLogger("teamster.engine")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TELEMETRY_PREFIXES = (b"OTLP", b"MTRC", b"LOGS")


class WorkerManagerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int = DEFAULT_WS_PORT
    host: str = "127.0.0.1"
    max_message_bytes: int = MAX_MESSAGE_BYTES


class WorkerManager(Module):
    name = "iii-worker-manager"
    Config = WorkerManagerConfig
    config: WorkerManagerConfig

    async def start(self) -> None:
        app = web.Application(client_max_size=self.config.max_message_bytes)
        app.router.add_get("/", self._worker)
        app.router.add_get("/otel", self._otel)
        app.router.add_get("/ws/channels/{channel_id}", self._channel)
        self._runner, self.engine.ports["ws"] = await listen(app, self.config.host, self.config.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _worker(self, request: web.Request) -> web.StreamResponse:
        if self.engine.stopping:
            raise web.HTTPServiceUnavailable(text="engine shutting down")
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, compress=False)
        await ws.prepare(request)
        transport = request.transport
        if transport is None:  # the client went away during the upgrade
            return ws
        conn = WsConnection(ws, transport, request.remote)
        engine = self.engine
        await engine.connect(conn)
        try:
            async for frame in ws:
                if frame.type is WSMsgType.TEXT:
                    raw: str | bytes = frame.data
                elif frame.type is WSMsgType.BINARY:
                    binary: bytes = frame.data
                    if binary[:4] in TELEMETRY_PREFIXES:
                        engine.ingest_telemetry(binary[:4].decode(), binary[4:])
                        continue
                    raw = binary
                else:
                    continue
                if not raw:
                    continue
                try:
                    msg = decode(raw)
                except ProtocolError as exc:
                    log.debug("dropped frame from %s: %s", conn.worker_id, exc)
                    continue
                await engine.handle(conn, msg)
        finally:
            await engine.disconnect(conn)
        return ws

    async def _otel(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, compress=False)
        await ws.prepare(request)
        async for frame in ws:
            if frame.type is WSMsgType.BINARY and frame.data[:4] in TELEMETRY_PREFIXES:
                self.engine.ingest_telemetry(frame.data[:4].decode(), frame.data[4:])
        return ws

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        channel = self.engine.channels.get(request.match_info["channel_id"], request.query.get("key"))
        direction = request.query.get("dir")
        if channel is None or direction not in ("read", "write"):
            raise web.HTTPNotFound(text="unknown channel or wrong key")
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, compress=False)
        await ws.prepare(request)
        taken = channel.writer_taken if direction == "write" else channel.reader_taken
        if taken:
            await ws.close(code=1008, message=b"channel end already taken")
            return ws
        if direction == "write":
            channel.writer_taken = True
            await _pump_in(ws, channel)
        else:
            channel.reader_taken = True
            await _pump_out(ws, channel)
            self.engine.channels.delete(channel.id)
        return ws


async def _pump_in(ws: web.WebSocketResponse, channel: Channel) -> None:
    try:
        async for frame in ws:
            if frame.type is WSMsgType.TEXT:
                await channel.put((True, frame.data))
            elif frame.type is WSMsgType.BINARY:
                await channel.put((False, frame.data))
    finally:
        await channel.close_writer()


async def _pump_out(ws: web.WebSocketResponse, channel: Channel) -> None:
    while True:
        frame = await channel.queue.get()
        if frame is None:
            break
        is_text, payload = frame
        if is_text:
            await ws.send_str(payload if isinstance(payload, str) else payload.decode())
        else:
            await ws.send_bytes(payload if isinstance(payload, bytes) else payload.encode())
    await ws.close()
