"""`iii-worker-manager`: the worker WebSocket listener with `/`, `/otel` and `/ws/channels/{id}` (§1.1).
Each entry in the config is its own listener. Its `Gate` admits or refuses every upgrade before any frame
(token, `Origin`, `Host`); each admitted worker gets a session at the handshake: the one its token's role
gives, or the one the RBAC auth function grants when there is one (§1.3)."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import WSMsgType, web
from pydantic import Field

from teamster.engine.access import refuse_unguarded
from teamster.engine.builtin import Module
from teamster.engine.channels import Channel
from teamster.engine.config import DEFAULT_WS_PORT
from teamster.engine.connection import WsConnection
from teamster.engine.listener import listen
from teamster.engine.rbac import AuthError, RbacConfig, Session, open_session, role_session
from teamster.engine.worker_access import Gate, WorkerAccess
from teamster.protocol import Error, ProtocolError, decode, encode, stand_in
from teamster.protocol.errors import ErrorCode

log = logging.getLogger("teamster.engine")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TELEMETRY_PREFIXES = (b"OTLP", b"MTRC", b"LOGS")


class WorkerManagerConfig(WorkerAccess):
    port: int = DEFAULT_WS_PORT
    host: str = "127.0.0.1"
    max_message_bytes: int = MAX_MESSAGE_BYTES
    middleware_function_id: str | None = None
    rbac: RbacConfig | None = None
    handshake_timeout_ms: int = Field(default=10_000, gt=0)  # TCP accept to a complete upgrade request


class WorkerManager(Module):
    name = "iii-worker-manager"
    Config = WorkerManagerConfig
    config: WorkerManagerConfig

    async def start(self) -> None:
        config = self.config
        # aiohttp's keep-alive timer also runs from accept until the first request has been read.
        app = web.Application(
            client_max_size=config.max_message_bytes,
            handler_args={"keepalive_timeout": config.handshake_timeout_ms / 1000},
        )
        app.router.add_get("/", self._worker)
        app.router.add_get("/otel", self._otel)
        app.router.add_get("/ws/channels/{channel_id}", self._channel)
        self._auth_function = config.rbac is not None and config.rbac.auth_function_id is not None
        self._gate = Gate(config)
        refuse_unguarded(
            self.name,
            config.host,
            bool(self._gate.tokens) or self._auth_function,
            "set TEAMSTER_TOKEN (or the entry's token) to a secret, give it an rbac.auth_function_id, "
            "or listen on 127.0.0.1",
        )
        self._runner, self.port = await listen(app, config.host, config.port)
        if next(m for m in self.engine.modules if m.name == self.name) is self:  # the engine's worker URL
            self.engine.ports["ws"] = self.port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _worker(self, request: web.Request) -> web.StreamResponse:
        role = self._gate.admit(request)
        if self.engine.stopping:
            raise web.HTTPServiceUnavailable(text="engine shutting down")
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, compress=False)
        await ws.prepare(request)
        if self._auth_function:
            session = await self._admit(request, ws)
        else:
            session = role_session(role, self.config.rbac, self.config.middleware_function_id)
        transport = request.transport
        if transport is None or ws.closed:  # the client went away during the upgrade, or was refused
            return ws
        conn = WsConnection(ws, transport, request.remote)
        conn.session = session
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
                    self._refused(conn, raw, exc)
                    continue
                if not engine.route(conn, msg):
                    await engine.settle(conn, msg)
        finally:
            await engine.disconnect(conn)
        return ws

    def _refused(self, conn: WsConnection, raw: str | bytes, exc: ProtocolError) -> None:
        """A frame that did not decode: the caller waiting on it gets the error at once (the sender of
        a call, or the caller of a call out to this worker whose result it was); others are dropped."""
        refusal = stand_in(raw, exc)
        if refusal is None:
            log.debug("dropped frame from %s: %s", conn.worker_id, exc)
        elif refusal[0] == "invokefunction":
            conn.answer(refusal[1])
        elif (pending := self.engine.router.pending.get(refusal[1].invocation_id)) and pending[1] is conn:
            self.engine.router.resolve(refusal[1])

    async def _otel(self, request: web.Request) -> web.StreamResponse:
        self._gate.admit(request)
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, compress=False)
        await ws.prepare(request)
        if self._auth_function:  # telemetry must not be a way around the auth function
            await self._admit(request, ws)
        async for frame in ws:
            if frame.type is WSMsgType.BINARY and frame.data[:4] in TELEMETRY_PREFIXES:
                self.engine.ingest_telemetry(frame.data[:4].decode(), frame.data[4:])
        return ws

    async def _admit(self, request: web.Request, ws: web.WebSocketResponse) -> Session | None:
        """Authenticate the upgraded socket; a refusal is one `error` frame (AUTH_ERROR), then a close."""
        try:
            return await open_session(
                self.engine.call,
                self.config.rbac,
                self.config.middleware_function_id,
                headers={name.lower(): value for name, value in request.headers.items()},
                query_params={key: request.query.getall(key) for key in request.query},
                ip_address=request.remote or "",
            )
        except AuthError as exc:
            log.info("worker from %s refused: %s", request.remote, exc)
            with contextlib.suppress(ConnectionError):  # it may have gone already
                await ws.send_str(encode(Error(error={"code": ErrorCode.AUTH_ERROR, "message": str(exc)})).decode())
            await ws.close(code=1008, message=b"authentication failed")
            return None

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        self._gate.check_browser(request)
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
