"""A bare WebSocket peer that speaks protocol frames by hand, to pin the exact wire behaviour."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp
import orjson


class RawPeer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.worker_id = ""
        self.reattach_token = ""

    async def __aenter__(self) -> RawPeer:
        self.ws = await self.session.ws_connect(self.url, max_msg_size=0)
        hello = await self.recv()
        assert hello["type"] == "workerregistered"
        self.worker_id, self.reattach_token = hello["worker_id"], hello["reattach_token"]
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.session.close()

    async def name(self, name: str, namespace: str | None = None) -> None:
        data: dict[str, Any] = {"name": name, "runtime": "raw"}
        if namespace is not None:
            data["namespace"] = namespace
        await self.send(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "action": {"type": "void"},
                "data": data,
            }
        )

    async def send(self, frame: dict[str, Any], *, binary: bool = False) -> None:
        assert self.ws is not None
        if binary:
            await self.ws.send_bytes(orjson.dumps(frame))
        else:
            await self.ws.send_str(orjson.dumps(frame).decode())

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.ws is not None
        msg = await self.ws.receive(timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"expected a text frame, got {msg.type.name}")
        frame: dict[str, Any] = orjson.loads(msg.data)
        return frame

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of `kind`, skipping others."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame

    async def nothing(self, within: float = 0.3) -> None:
        """Assert no frame arrives for a while."""
        assert self.ws is not None
        try:
            msg = await self.ws.receive(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {msg.data!r}")

    async def call(self, function_id: str, data: Any, invocation_id: str = "call-1", **extra: Any) -> dict[str, Any]:
        await self.send(
            {
                "type": "invokefunction",
                "function_id": function_id,
                "invocation_id": invocation_id,
                "data": data,
                **extra,
            }
        )
        return await self.recv_type("invocationresult")
