"""The worker's WebSocket client: an asyncio protocol with its own framing.

A routed call is a handful of small frames, and a general-purpose client pays for each one: a queue
hop per frame in, a syscall per frame out. Here the frames of one read are handed over together, and
the frames sent in one loop iteration leave together (see `FrameWriter`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from teamster.protocol.frames import BINARY, CLOSE, CONTINUATION, LARGE_FRAME, PING, PONG, TEXT, FrameWriter

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024
CLOSE_TIMEOUT_S = 2.0


class HandshakeError(ConnectionError):
    """The server did not upgrade the connection to a WebSocket."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WebSocket(asyncio.Protocol):
    """One client connection; `connect` opens it. Messages are (opcode, payload) with fragments joined."""

    def __init__(self, max_size: int, heartbeat_s: float | None) -> None:
        self.max_size = max_size
        self.close_code: int | None = None
        self._heartbeat_s = heartbeat_s
        self._transport: asyncio.Transport | None = None
        self._writer: FrameWriter | None = None
        self._head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0
        self._messages: deque[tuple[int, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._open = False  # the handshake is done
        self._close_sent = False
        self._heard = True
        self._timer: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self._closed.done()

    # ---- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._writer = FrameWriter(self._transport, masked=True)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        self._buffer += data
        if not self._head.done():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    self._fail(HandshakeError("the server's handshake response is too large"))
                return
            self._head.set_result(bytes(self._buffer[: end + 4]))
            del self._buffer[: end + 4]
        if self._open:
            self._take_frames()

    def _take_frames(self) -> None:
        try:
            self._parse()
        except _Violation as exc:
            self.close_code = exc.code
            self._send_close(exc.code, exc.reason)
            if self._transport is not None:
                self._transport.close()  # after the close frame has left, unlike abort()
        if self._messages and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._head.done():
            self._head.set_exception(ConnectionError("the connection closed during the WebSocket handshake"))
        if self.close_code is None:
            self.close_code = 1006
        if not self._closed.done():
            self._closed.set_result(None)
        for waiter in (self._waiter, self._drained):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # ---- the API -----------------------------------------------------------------------------

    async def receive(self) -> tuple[int, bytes] | None:
        """The next text or binary message; None once the connection has closed."""
        while not self._messages:
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._messages.popleft()

    async def send(self, opcode: int, payload: bytes) -> None:
        """Queue a frame for the end of this loop iteration; a large one waits for the socket to drain."""
        if self._writer is None or not self._open or self._close_sent or self.closed:
            raise ConnectionError("the WebSocket is closed")
        self._writer.write(opcode, payload)
        if len(payload) > LARGE_FRAME and self._drained is not None:
            await self._drained

    def flush(self) -> None:
        """Write what is waiting for the end of the loop iteration now."""
        if self._writer is not None:
            self._writer.flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake: our close frame, the server's answer (briefly awaited), then the socket."""
        if self._transport is None or self.closed:
            return
        self._send_close(code, reason)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(self._closed)
        except TimeoutError:
            self._abort()

    # ---- internals ---------------------------------------------------------------------------

    async def _handshake(self, host: str, target: str, headers: dict[str, str]) -> None:
        assert self._transport is not None
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await self._head).decode("latin-1").split("\r\n")
        status_line, fields = head[0], _fields(head[1:])
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        if status != 101:
            raise HandshakeError(f"the server refused the WebSocket upgrade: {status_line.strip()}", status)
        expected = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest()).decode()
        if fields.get("sec-websocket-accept") != expected or fields.get("upgrade", "").lower() != "websocket":
            raise HandshakeError("the server's upgrade response is not a valid WebSocket handshake", status)
        self._open = True
        self._take_frames()  # what came in with the handshake response
        if self._heartbeat_s:
            self._timer = asyncio.get_running_loop().call_later(self._heartbeat_s, self._beat)

    def _parse(self) -> None:
        """Take every whole frame out of the buffer; control frames are answered here."""
        buffer = self._buffer
        offset = 0
        while self.close_code is None and len(buffer) - offset >= 2:  # nothing counts after a close
            first, second = buffer[offset], buffer[offset + 1]
            opcode, fin = first & 0x0F, first & 0x80
            if first & 0x70:
                raise _Violation(1002, "reserved bits set")
            if second & 0x80:
                raise _Violation(1002, "a server frame must not be masked")
            length, start = second & 0x7F, offset + 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                start += 2
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                start += 8
            if length > self.max_size:
                raise _Violation(1009, f"frame of {length} bytes is over the {self.max_size}-byte limit")
            if len(buffer) - start < length:
                break
            payload = bytes(buffer[start : start + length])
            offset = start + length
            if opcode >= CLOSE:
                self._control(opcode, fin, payload)
            else:
                self._data(opcode, fin, payload)
        if offset:
            del buffer[:offset]

    def _data(self, opcode: int, fin: int, payload: bytes) -> None:
        if opcode == CONTINUATION:
            if not self._fragments:
                raise _Violation(1002, "continuation frame with nothing to continue")
        elif opcode in (TEXT, BINARY):
            if self._fragments:
                raise _Violation(1002, "new message before the last one finished")
            self._fragment_opcode, self._fragment_size = opcode, 0
        else:
            raise _Violation(1002, f"unknown opcode {opcode:#x}")
        if fin and not self._fragments:
            self._messages.append((opcode, payload))
            return
        self._fragment_size += len(payload)
        if self._fragment_size > self.max_size:
            raise _Violation(1009, f"message over the {self.max_size}-byte limit")
        self._fragments.append(payload)
        if fin:
            self._messages.append((self._fragment_opcode, b"".join(self._fragments)))
            self._fragments.clear()

    def _control(self, opcode: int, fin: int, payload: bytes) -> None:
        if not fin or len(payload) > 125:
            raise _Violation(1002, "control frames must be whole and at most 125 bytes")
        assert self._writer is not None
        if opcode == PING and not self._close_sent:
            self._writer.write(PONG, payload)
        elif opcode == CLOSE:
            self.close_code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._send_close(self.close_code if self.close_code != 1005 else 1000, "")
            assert self._transport is not None
            self._transport.close()
        elif opcode != PONG:
            raise _Violation(1002, f"unknown control opcode {opcode:#x}")

    def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent or self._writer is None:
            return
        self._close_sent = True
        self._writer.write(CLOSE, struct.pack("!H", code) + reason.encode()[:123])
        self._writer.flush()

    def _beat(self) -> None:
        """Ping every heartbeat; a server silent for a whole heartbeat after a ping is gone."""
        if not self._heard:
            self._abort()
            return
        self._heard = False
        if self._writer is not None and not self._close_sent:
            self._writer.write(PING, b"")
        assert self._heartbeat_s is not None
        self._timer = asyncio.get_running_loop().call_later(self._heartbeat_s, self._beat)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: Exception) -> None:
        if not self._head.done():
            self._head.set_exception(exc)
        self._abort()


class _Violation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _fields(lines: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


@dataclass(frozen=True, slots=True)
class Address:
    """Where a ws:// or wss:// URL points, and what its handshake asks for."""

    hostname: str
    port: int
    secure: bool
    target: str  # path and query
    host: str  # the Host header

    @classmethod
    def parse(cls, url: str) -> Address:
        """ValueError for anything but a ws:// or wss:// URL with a host."""
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6 literals keep brackets
        host = name if port == (443 if secure else 80) else f"{name}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, secure, target, host)


async def connect(
    url: str,
    headers: dict[str, str] | None = None,
    max_size: int = 64 * 1024 * 1024,
    heartbeat_s: float | None = 20.0,
    timeout_s: float = 10.0,
) -> WebSocket:
    """Open a WebSocket; HandshakeError when the server will not upgrade, OSError when it cannot be reached."""
    address = Address.parse(url)
    async with asyncio.timeout(timeout_s):
        _, ws = await asyncio.get_running_loop().create_connection(
            lambda: WebSocket(max_size, heartbeat_s),
            address.hostname,
            address.port,
            ssl=ssl.create_default_context() if address.secure else None,
        )
        try:
            await ws._handshake(address.host, address.target, headers or {})
        except BaseException:
            ws._abort()
            raise
    return ws
