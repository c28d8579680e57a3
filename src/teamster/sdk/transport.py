"""How a Worker reaches the engine: a WebSocket with reconnect, or an in-process attachment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from teamster.protocol import (
    InvocationError,
    InvocationResult,
    InvokeFunction,
    Message,
    ProtocolError,
    decode,
    encode,
)
from teamster.protocol.errors import ConnectionLost, ErrorCode, Timeout
from teamster.protocol.frames import BINARY, LARGE_FRAME, TEXT
from teamster.protocol.ids import rng
from teamster.protocol.otlp import OTLP_FRAME_PREFIX, SpanRecord, encode_otlp
from teamster.sdk.websocket import Address, HandshakeError, WebSocket, connect

if TYPE_CHECKING:
    from teamster.engine.connection import InprocConnection, LocalPeer
    from teamster.engine.engine import Engine

log = logging.getLogger("teamster.sdk")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REFUSED = frozenset({401, 403})  # the engine will not take this worker as it is: retrying cannot help


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: initial × multiplier^attempt, capped, with ± jitter."""

    initial_s: float = 0.2
    multiplier: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.3

    def delay(self, attempt: int) -> float:
        base = min(self.initial_s * self.multiplier**attempt, self.max_s)
        return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))


class Transport(Protocol):
    async def send(self, msg: Message) -> None: ...

    async def invoke(self, msg: InvokeFunction, timeout: float | None) -> Any: ...

    async def export_spans(self, spans: list[SpanRecord]) -> bool:
        """Hand finished spans to the engine; False when they could not go (they are then dropped)."""
        ...

    async def close(self) -> None: ...


class LocalTransport:
    """Calls go straight into the engine's router: no socket, no encoding."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: InprocConnection | None = None

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
            raise timed_out(msg, timeout) from None

    async def export_spans(self, spans: list[SpanRecord]) -> bool:
        """Straight into the engine's span store: no frame, no encoding."""
        traces = self.engine.traces
        if traces is None:
            return False
        traces.add(spans)
        return True

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await self.engine.disconnect(conn)


class WsTransport:
    """One WebSocket at a time; on loss it reconnects with backoff and `on_open` replays state."""

    def __init__(
        self,
        url: str,
        on_message: Callable[[Message], Awaitable[None]],
        on_open: Callable[[], Awaitable[None]],
        backoff: Backoff,
        default_timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        Address.parse(url)  # a malformed URL fails here, not after `wait` seconds of retries
        self.url = url
        self.default_timeout = default_timeout
        self._on_message = on_message
        self._on_open = on_open
        self._backoff = backoff
        self._headers = headers or {}
        self._ws: WebSocket | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._connected = asyncio.Event()
        self._stopped = False
        self._runner: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def open(self, wait: float = 30.0) -> None:
        """Connect, retrying until `wait` runs out; a refusal of the token or origin fails at once."""
        self._runner = runner = asyncio.create_task(self._run())
        connected = asyncio.create_task(self._connected.wait())
        try:
            await asyncio.wait({runner, connected}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
        if self._connected.is_set():
            return
        refusal = runner.exception() if runner.done() else None
        await self.close()
        if isinstance(refusal, HandshakeError):
            hint = "; set TEAMSTER_TOKEN (or pass headers) to the engine's token" if refusal.status == 401 else ""
            message = f"the engine at {self.url} refused this worker: {refusal}{hint}"
            raise HandshakeError(message, refusal.status) from None
        if refusal is not None:
            raise refusal
        raise ConnectionError(f"could not reach the engine at {self.url} within {wait:g} s")

    async def send(self, msg: Message) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return  # replayed from the worker's own records on reconnect
        with contextlib.suppress(ConnectionError):  # closing: the same replay covers it
            await ws.send(TEXT, encode(msg))

    async def invoke(self, msg: InvokeFunction, timeout: float | None) -> Any:
        """Send the call and await its result frame; a lost link or the deadline ends it with an error."""
        timeout = self.default_timeout if timeout is None else timeout
        try:
            frame = encode(msg)
        except ProtocolError as exc:
            raise InvocationError(ErrorCode.SERIALIZATION_ERROR, str(exc), function_id=msg.function_id) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        iid = msg.invocation_id
        future: asyncio.Future[Any] | None = None
        if iid is not None:
            future = loop.create_future()
            self._pending[iid] = future
        try:
            if not self._connected.is_set() or len(frame) > LARGE_FRAME:  # only these sends can wait
                async with asyncio.timeout_at(deadline):
                    await self._send_call(msg, frame)
            else:
                await self._send_call(msg, frame)
            if future is None:
                return None
            # One timer that fails the future, not a timeout scope: this is every call's path.
            expiry = loop.call_at(deadline, _expire, future)
            try:
                return await future
            finally:
                expiry.cancel()
        except TimeoutError:
            raise timed_out(msg, timeout) from None
        finally:
            if iid is not None:
                self._pending.pop(iid, None)

    async def _send_call(self, msg: InvokeFunction, frame: bytes) -> None:
        await self._connected.wait()
        ws = self._ws
        if ws is None:
            raise ConnectionLost(ErrorCode.CONNECTION_LOST, "not connected to the engine", function_id=msg.function_id)
        try:
            await ws.send(TEXT, frame)
        except ConnectionError:
            raise ConnectionLost(
                ErrorCode.CONNECTION_LOST, "the engine connection is closing", function_id=msg.function_id
            ) from None

    async def export_spans(self, spans: list[SpanRecord]) -> bool:
        """One binary `OTLP` frame on this socket; the engine reads telemetry here as it does on `/otel`."""
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send(BINARY, OTLP_FRAME_PREFIX + encode_otlp(spans))
        except ConnectionError:
            return False
        return True

    def resolve(self, msg: InvocationResult) -> None:
        future = self._pending.get(msg.invocation_id)
        if future is None or future.done():
            return
        if msg.error is not None:
            future.set_exception(InvocationError.from_wire(msg.error, msg.function_id))
        else:
            future.set_result(msg.result)

    async def close(self) -> None:
        self._stopped = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    def stop_reconnecting(self) -> None:
        self._stopped = True

    async def _run(self) -> None:
        attempt = 0
        admitted = False
        while not self._stopped:
            try:
                self._ws = await connect(self.url, self._headers, MAX_MESSAGE_BYTES, heartbeat_s=20.0)
            except OSError as exc:
                if isinstance(exc, HandshakeError) and exc.status in REFUSED:
                    if not admitted:
                        raise  # `open` reports it; a worker admitted before keeps trying (a restart may fix it)
                    log.warning("the engine at %s refused this worker: %s", self.url, exc)
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.debug("connect to %s failed (%s); retrying in %.2fs", self.url, exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt, admitted = 0, True
            await self._on_open()
            self._ws.flush()  # registrations are on the wire before `open` returns
            self._connected.set()
            await self._read(self._ws)
            self._connected.clear()
            self._ws = None
            for iid, future in list(self._pending.items()):
                if not future.done():
                    future.set_exception(
                        ConnectionLost(
                            ErrorCode.CONNECTION_LOST, "the engine connection closed before the result arrived"
                        )
                    )
                self._pending.pop(iid, None)

    async def _read(self, ws: WebSocket) -> None:
        while (frame := await ws.receive()) is not None:
            try:
                msg = decode(frame[1])
            except ProtocolError as exc:
                log.warning("dropped a frame from the engine: %s", exc)
                continue
            if isinstance(msg, InvocationResult):
                self.resolve(msg)
            else:
                await self._on_message(msg)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def timed_out(msg: InvokeFunction, timeout: float) -> Timeout:
    return Timeout(
        ErrorCode.TIMEOUT, f"{msg.function_id} did not answer within {timeout:g} s", function_id=msg.function_id
    )
