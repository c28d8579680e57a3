"""Channel ends for workers: over `/ws/channels/{id}`, or straight onto the engine's queue in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp

from teamster.protocol.transport import ChannelFrame

CHUNK = 64 * 1024


class LocalChannel(Protocol):
    """A channel held by an engine in this process, written and read with no socket in between."""

    async def put(self, frame: ChannelFrame) -> None: ...

    async def close_writer(self) -> None: ...

    async def get(self) -> ChannelFrame | None:
        """The next frame; None once the writer has closed."""
        ...


class ChannelWriter:
    """Writes text (control) and binary (data) frames; `close()` ends the stream for the reader."""

    def __init__(self, ref: dict[str, Any], base_url: str | None, local: LocalChannel | None = None) -> None:
        self.ref = ref
        self._base_url = base_url
        self._local = local
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closed = False

    async def send_text(self, text: str) -> None:
        if self._local is not None:
            await self._local.put((True, text))
        else:
            await (await self._socket()).send_str(text)

    async def write(self, data: bytes) -> None:
        for start in range(0, max(len(data), 1), CHUNK):
            chunk = data[start : start + CHUNK]
            if self._local is not None:
                await self._local.put((False, chunk))
            else:
                await (await self._socket()).send_bytes(chunk)

    async def close(self) -> None:
        """End the stream; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._local is not None:
            await self._local.close_writer()
            return
        ws = await self._socket()
        await ws.close()
        if self._session is not None:
            await self._session.close()

    async def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            self._session, self._ws = await _open(self._base_url, self.ref, "write")
        return self._ws


class ChannelReader:
    """Yields frames in order (str for text, bytes for binary) until the writer closes."""

    def __init__(
        self,
        ref: dict[str, Any],
        base_url: str | None,
        local: LocalChannel | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.ref = ref
        self._base_url = base_url
        self._local = local
        self._release = release  # drops an in-process channel once drained, as the socket path does

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        if self._local is not None:
            while (frame := await self._local.get()) is not None:
                yield frame[1]
            if self._release is not None:
                self._release()
            return
        session, ws = await _open(self._base_url, self.ref, "read")
        try:
            async for msg in ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    yield msg.data
        finally:
            await session.close()

    async def read_all(self) -> bytes:
        parts = [f if isinstance(f, bytes) else f.encode() async for f in self]
        return b"".join(parts)


async def _open(
    base_url: str | None, ref: dict[str, Any], direction: str
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    if base_url is None:
        raise RuntimeError("this worker is not connected over WebSocket; channels need an engine URL")
    url = f"{base_url.rstrip('/')}/ws/channels/{ref['channel_id']}"
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            url, params={"key": ref["access_key"], "dir": direction}, max_msg_size=64 * 1024 * 1024
        )
    except BaseException:
        await session.close()
        raise
    return session, ws
