"""HTTP responses for `iii-http`: a function's returned value, its streamed channel, server errors (§4.7)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from teamster.engine.channels import Channel

log = logging.getLogger("teamster.engine")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# aiohttp frames the body itself; a user-set length or encoding would contradict it.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """A server-generated error: `{"error": {"code", "message"}}` plus any extra top-level keys."""
    return web.json_response({"error": {"code": code, "message": message}, **extra}, status=status)


def returned_response(value: Any) -> web.Response:
    """The response a function (or a responding middleware) returned as `{status_code, headers, body}`."""
    spec = value if isinstance(value, dict) else {}
    headers = header_pairs(spec.get("headers"))
    body = spec.get("body", {})
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    if content_type is not None and isinstance(body, str):
        data = body.encode()
    elif content_type is not None and body is None:
        data = b""
    else:  # JSON text, sent under the user's Content-Type when there is one
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if content_type is None:
            headers.append(("Content-Type", "application/json"))
    return web.Response(status=_status(spec.get("status_code")), headers=CIMultiDict(headers), body=data)


def header_pairs(raw: Any) -> list[tuple[str, str]]:
    """Headers given as `{name: value}` or `["Name: value"]`; malformed entries are dropped."""
    if isinstance(raw, dict):
        pairs = [(name, value) for name, value in raw.items() if isinstance(value, str)]
    elif isinstance(raw, list):
        pairs = [
            (name.strip(), value.strip())
            for line in raw
            if isinstance(line, str)
            for name, sep, value in [line.partition(":")]
            if sep
        ]
    else:
        pairs = []
    return [
        (name, value)
        for name, value in pairs
        if _TOKEN.fullmatch(name) and name.lower() not in _FRAMING and not any(c in value for c in "\r\n\0")
    ]


@dataclass(slots=True)
class StreamState:
    """What a streaming function has sent so far on its response channel."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunk: bytes | None = None  # a body chunk read but not yet sent
    seen: bool = False  # any frame (or the close) arrived
    closed: bool = False  # the writer's close was consumed

    def apply(self, text: str) -> None:
        """Apply a `set_status` / `set_headers` control message; anything else is ignored, as in iii."""
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("type") == "set_status":
            self.status = _status(msg.get("status_code"), self.status)
        elif msg.get("type") == "set_headers" and isinstance(msg.get("headers"), dict):
            self.headers.update({k: v for k, v in msg["headers"].items() if isinstance(v, str)})


async def read_head(channel: Channel, state: StreamState) -> None:
    """Consume control messages up to the first body chunk or the writer's close."""
    while (frame := await channel.queue.get()) is not None:
        state.seen = True
        is_text, payload = frame
        if not is_text:
            state.chunk = _as_bytes(payload)
            return
        state.apply(payload if isinstance(payload, str) else payload.decode(errors="replace"))
    state.seen = state.closed = True


async def send_stream(request: web.Request, state: StreamState, channel: Channel) -> web.StreamResponse:
    """Send the head, then each binary frame until the writer closes; later control messages are ignored."""
    response = web.StreamResponse(status=state.status, headers=CIMultiDict(header_pairs(state.headers)))
    await response.prepare(request)
    try:
        while state.chunk is not None:
            await response.write(state.chunk)
            state.chunk = await _next_chunk(channel)
        state.closed = True
        await response.write_eof()
    except ConnectionResetError:
        log.debug("HTTP client left during a streamed response to %s", request.path)
    return response


async def _next_chunk(channel: Channel) -> bytes | None:
    while (frame := await channel.queue.get()) is not None:
        if not frame[0]:
            return _as_bytes(frame[1])
    return None


def _as_bytes(payload: str | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode()


def _status(value: Any, default: int = 200) -> int:
    valid = isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599
    return value if valid else default


def refusal(status: int, code: str, message: str) -> web.Response:
    """A request refused at the door (host, origin, token, body): `{"error": message, "code"}`, the run API's
    shape, so a client of the app reads the engine's refusals the same way as the app's own errors."""
    return web.json_response({"error": message, "code": code}, status=status)
