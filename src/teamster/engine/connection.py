"""A worker's link to the engine: over WebSocket, or in-process with no socket and no encoding."""

from __future__ import annotations

import asyncio
import logging
import uuid
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import WSMsgType, web

from teamster.engine.registry import Executor, Invocation
from teamster.protocol import InvocationResult, Message, ProtocolError, encode
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.protocol.frames import LARGE_FRAME, TEXT, FrameWriter

if TYPE_CHECKING:
    from teamster.engine.rbac import Session

log = logging.getLogger("teamster.engine")


class Connection(ABC):
    """What the engine knows of one connected worker; the engine owns its lifecycle."""

    def __init__(self, ip_address: str | None = None) -> None:
        self.worker_id = str(uuid.uuid4())
        self.reattach_token = str(uuid.uuid4())
        self.namespace: str | None = None  # set by engine::workers::register or the grace period
        self.name = f"worker-{self.worker_id[:8]}"
        self.info: dict[str, Any] = {}
        self.ip_address = ip_address
        self.connected_at_ms = now_ms()
        self.closing = False
        # Registrations held until the namespace is known (§1.3); None once it is.
        self.held: list[Message] | None = []
        self.functions: set[tuple[str, str]] = set()
        self.triggers: set[str] = set()
        self.trigger_types: set[tuple[str, str]] = set()
        self.executing: set[str] = set()
        # Set by an RBAC or middleware listener at the handshake; None (no checks at all) everywhere else.
        self.session: Session | None = None

    @property
    def runtime(self) -> str:
        return str(self.info.get("runtime") or "unknown")

    @abstractmethod
    async def send(self, msg: Message) -> None:
        """Deliver a message to the worker; dropped silently once the link is closing."""

    @abstractmethod
    def post(self, msg: Message) -> None:
        """`send` that never waits, not even for the socket to drain after a large frame: for answers
        given straight from an incoming frame."""

    def answer(self, reply: InvocationResult) -> None:
        """Post a call's result; one JSON cannot carry goes back as a serialization_error instead."""
        try:
            self.post(reply)
        except ProtocolError as exc:
            reply.result, reply.error = None, {"code": ErrorCode.SERIALIZATION_ERROR, "message": str(exc)}
            self.post(reply)

    @abstractmethod
    def executor(self, function_id: str, remote: Executor) -> Executor:
        """How a call to `function_id` owned by this worker runs; `remote` sends it as a frame."""

    @abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class WsConnection(Connection):
    """Small frames leave through a FrameWriter, batched per loop iteration; large ones take
    aiohttp's path, which applies flow control, after the small ones waiting before them."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, ip_address: str | None) -> None:
        super().__init__(ip_address)
        self.ws = ws
        self._frames = FrameWriter(transport, masked=False)

    async def send(self, msg: Message) -> None:
        if self.closing or self.ws.closed:
            return
        payload = encode(msg)
        if len(payload) <= LARGE_FRAME:
            self._frames.write(TEXT, payload)
            return
        self._frames.flush()
        try:
            await self.ws.send_frame(payload, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("send to %s failed: %s", self.worker_id, exc)

    def post(self, msg: Message) -> None:
        if not (self.closing or self.ws.closed):
            self._frames.write(TEXT, encode(msg))

    def executor(self, function_id: str, remote: Executor) -> Executor:
        return remote

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._frames.flush()
        await self.ws.close(code=code, message=reason.encode())


class LocalPeer(Protocol):
    """The in-process side of a worker: receives messages and runs its own handlers directly."""

    def deliver(self, msg: Message) -> None: ...

    async def execute(self, invocation: Invocation) -> Any: ...

    def detached(self) -> None: ...


class InprocConnection(Connection):
    def __init__(self, peer: LocalPeer) -> None:
        super().__init__("inproc")
        self.peer = peer

    async def send(self, msg: Message) -> None:
        self.post(msg)

    def post(self, msg: Message) -> None:
        if not self.closing:
            self.peer.deliver(msg)

    def executor(self, function_id: str, remote: Executor) -> Executor:
        return self.peer.execute

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.peer.detached()
