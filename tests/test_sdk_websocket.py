"""The SDK's own WebSocket client against real servers: a hand-written one that shows every byte,
and aiohttp's, which enforces RFC 6455 from the other side."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import WSMsgType, web

from teamster.protocol.frames import BINARY, CLOSE, PING, PONG, TEXT, mask, python_mask
from teamster.sdk import InvocationError, Worker
from teamster.sdk.websocket import Address, HandshakeError, connect

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawServer:
    """One connection at a time: answers the handshake by hand, then reads and writes raw frames."""

    def __init__(self, reply: Callable[[str], bytes] | None = None) -> None:
        self.reply = reply or self.upgrade
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.request = ""

    @staticmethod
    def upgrade(request: str) -> bytes:
        lines = request.split("\r\n")
        key = next(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        return (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.request = (await reader.readuntil(b"\r\n\r\n")).decode()
        writer.write(self.reply(self.request))
        await writer.drain()
        await self.accepted.put((reader, writer))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"ws://127.0.0.1:{port}/path?q=1"


def server_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if masked else 0
    if len(payload) < 126:
        head = struct.pack("!BB", first, bit | len(payload))
    else:
        head = struct.pack("!BBH", first, bit | 126, len(payload))
    if masked:
        key = b"\x01\x02\x03\x04"
        return head + key + mask(payload, key)
    return head + payload


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """(opcode, key, unmasked payload) of one client frame; asserts the client masked it."""
    first, second = await reader.readexactly(2)
    assert second & 0x80, "client frames must be masked"
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4)
    return first & 0x0F, key, mask(await reader.readexactly(length), key)


async def test_handshake_sends_path_host_and_headers_and_frames_are_masked_with_fresh_keys() -> None:
    raw = RawServer()
    async with raw.running() as url:
        ws = await connect(url, headers={"Authorization": "Bearer t0ken"})
        reader, writer = await raw.accepted.get()
        assert raw.request.startswith("GET /path?q=1 HTTP/1.1\r\n")
        assert f"Host: {url.split('/')[2]}\r\n" in raw.request
        assert "Authorization: Bearer t0ken\r\n" in raw.request
        await ws.send(TEXT, b'{"a":1}')
        await ws.send(BINARY, b"\x00\x01")
        first = await read_client_frame(reader)
        second = await read_client_frame(reader)
        assert (first[0], first[2]) == (TEXT, b'{"a":1}')
        assert (second[0], second[2]) == (BINARY, b"\x00\x01")
        assert first[1] != second[1]
        writer.close()  # the server hangs up: the stream ends
        assert await asyncio.wait_for(ws.receive(), 5) is None


async def test_fragments_are_joined_and_pings_answered_with_their_payload() -> None:
    raw = RawServer()
    async with raw.running() as url:
        ws = await connect(url)
        reader, writer = await raw.accepted.get()
        writer.write(
            server_frame(TEXT, b'{"par', fin=False)
            + server_frame(PING, b"are you there")  # control frames may come between fragments
            + server_frame(0x0, b't":', fin=False)
            + server_frame(0x0, b"1}")
            + server_frame(BINARY, b"next")
        )
        assert await ws.receive() == (TEXT, b'{"part":1}')
        assert await ws.receive() == (BINARY, b"next")
        opcode, _, payload = await read_client_frame(reader)
        assert (opcode, payload) == (PONG, b"are you there")
        writer.close()  # the server hangs up: the stream ends
        assert await asyncio.wait_for(ws.receive(), 5) is None


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (server_frame(TEXT, b"x" * 200), 1009),  # over the limit below
        (server_frame(TEXT, b"hi", masked=True), 1002),
        (server_frame(0x0, b"orphan"), 1002),
        (bytes([0x80 | 0x40 | TEXT, 1]) + b"x", 1002),  # a reserved bit, with no extension agreed
        (server_frame(0x3, b""), 1002),
    ],
    ids=["too-large", "masked", "orphan-continuation", "reserved-bit", "unknown-opcode"],
)
async def test_a_bad_server_frame_gets_a_close_with_its_code_and_the_socket_ends(frames: bytes, code: int) -> None:
    raw = RawServer()
    async with raw.running() as url:
        ws = await connect(url, max_size=100)
        reader, writer = await raw.accepted.get()
        writer.write(server_frame(TEXT, b"before") + frames)
        assert await ws.receive() == (TEXT, b"before")
        assert await asyncio.wait_for(ws.receive(), 5) is None
        opcode, _, payload = await read_client_frame(reader)
        assert opcode == CLOSE
        assert struct.unpack("!H", payload[:2])[0] == code
        assert ws.closed


async def test_a_server_close_is_answered_and_ends_the_stream() -> None:
    raw = RawServer()
    async with raw.running() as url:
        ws = await connect(url)
        reader, writer = await raw.accepted.get()
        writer.write(server_frame(TEXT, b"last") + server_frame(CLOSE, struct.pack("!H", 1001) + b"bye"))
        assert await ws.receive() == (TEXT, b"last")
        assert await asyncio.wait_for(ws.receive(), 5) is None
        assert ws.close_code == 1001
        opcode, _, payload = await read_client_frame(reader)
        assert (opcode, payload[:2]) == (CLOSE, struct.pack("!H", 1001))
        with pytest.raises(ConnectionError):
            await ws.send(TEXT, b"too late")


async def test_a_silent_server_is_dropped_after_two_heartbeats() -> None:
    raw = RawServer()
    async with raw.running() as url:
        ws = await connect(url, heartbeat_s=0.1)
        reader, _ = await raw.accepted.get()
        assert (await read_client_frame(reader))[0] == PING
        assert await asyncio.wait_for(ws.receive(), 5) is None
        assert ws.close_code == 1006


async def test_pongs_keep_the_link_up() -> None:
    raw = RawServer()
    async with raw.running() as url:
        ws = await connect(url, heartbeat_s=0.05)
        reader, writer = await raw.accepted.get()
        for _ in range(4):
            opcode, _, payload = await read_client_frame(reader)
            assert opcode == PING
            writer.write(server_frame(PONG, payload))
        assert not ws.closed
        writer.close()  # the server hangs up: the stream ends
        assert await asyncio.wait_for(ws.receive(), 5) is None


@pytest.mark.parametrize(
    ("reply", "message", "status"),
    [
        (lambda request: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "403 Forbidden", 403),
        (
            lambda request: (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: bogus\r\n\r\n"
            ),
            "not a valid WebSocket handshake",
            101,
        ),
    ],
    ids=["refused", "wrong-accept"],
)
async def test_a_refused_or_wrong_handshake_is_a_handshake_error(
    reply: Callable[[str], bytes], message: str, status: int
) -> None:
    async with RawServer(reply).running() as url:
        with pytest.raises(HandshakeError, match=message) as caught:
            await connect(url)
    assert caught.value.status == status


async def test_an_unreachable_server_is_an_os_error_and_a_bad_url_a_value_error() -> None:
    raw = RawServer()
    async with raw.running() as url:
        port = url.split(":")[2].split("/")[0]
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/")
    with pytest.raises(ValueError, match="not a ws:// or wss:// URL"):
        await connect("http://127.0.0.1:1/")


def test_addresses() -> None:
    assert Address.parse("ws://h:80/") == Address("h", 80, False, "/", "h")
    assert Address.parse("wss://h/x?y=1") == Address("h", 443, True, "/x?y=1", "h")
    assert Address.parse("ws://[::1]:9") == Address("::1", 9, False, "/", "[::1]:9")


@asynccontextmanager
async def aiohttp_echo() -> AsyncIterator[tuple[str, list[tuple[WSMsgType, bytes | str]]]]:
    """aiohttp's server, which rejects unmasked or malformed client frames, echoing what it gets."""
    seen: list[tuple[WSMsgType, bytes | str]] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            seen.append((msg.type, msg.data))
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            else:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}/", seen
    finally:
        await runner.cleanup()


async def test_small_and_large_frames_keep_their_order_through_a_strict_server() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: past the batching size, written at once
    sizes = [b"one", b"x" * 200, b"y" * 70_000, big, b"after"]
    async with aiohttp_echo() as (url, seen):
        ws = await connect(url)
        for payload in sizes:
            await ws.send(BINARY, payload)
        echoed = [await asyncio.wait_for(ws.receive(), 10) for _ in sizes]
        assert echoed == [(BINARY, payload) for payload in sizes]
        assert [data for _, data in seen] == sizes
        await ws.close()
        assert ws.close_code == 1000


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 4096, 70_001])
def test_masking_xors_each_byte_with_its_key_byte(size: int) -> None:
    payload = bytes((i * 7 + 3) % 256 for i in range(size))
    key = b"\x9a\x01\xff\x10"
    expected = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    assert mask(payload, key) == expected
    assert python_mask(payload, key) == expected
    assert mask(expected, key) == payload


async def test_a_worker_given_a_malformed_url_fails_at_once_and_stays_unconnected() -> None:
    worker = Worker("misdirected")
    with pytest.raises(ValueError, match="not a ws:// or wss:// URL"):
        await asyncio.wait_for(worker.open("http://127.0.0.1:1/"), 2)
    with pytest.raises(InvocationError):
        await worker.trigger("anything::at_all", {})


async def test_frames_after_the_servers_close_are_ignored() -> None:
    raw = RawServer()
    async with raw.running() as url:
        ws = await connect(url)
        _, writer = await raw.accepted.get()
        writer.write(server_frame(CLOSE, struct.pack("!H", 1000)) + server_frame(TEXT, b"after the close"))
        assert await asyncio.wait_for(ws.receive(), 5) is None
