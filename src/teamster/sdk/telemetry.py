"""Tracing in workers: W3C `traceparent`/`baggage`, a span around every handler, batched export to the engine.

A handler's span takes its parent from the invocation's `traceparent` and is tagged `iii.function.id`,
`iii.session.id` and `iii.message.id`. Calls the handler makes carry the span's `traceparent` and a
`baggage` holding those ids (plus entries set with `set_baggage`), so a whole turn is one trace.
Spans go only to the engine the worker is connected to; sending them further is the engine's choice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from teamster.protocol import InvocationError
from teamster.protocol.ids import rng
from teamster.protocol.otlp import FUNCTION_ID, MESSAGE_ID, SESSION_ID, SpanRecord

log = logging.getLogger("teamster.sdk")

MAX_ID_CHARS = 128
MAX_BUFFER = 8192  # finished spans waiting for export; past this new ones are dropped (and counted), never waited for
MAX_BATCH = 64  # spans per frame: the engine reads a frame in one go, and 512 of them stalled its calls for ~1.7 ms
LINGER_S = 0.05  # how long a finished span may wait for others to share its frame
FLUSH_TIMEOUT_S = 2.0
MAX_BAGGAGE_MEMBERS = 180  # W3C baggage limits
MAX_BAGGAGE_BYTES = 8192

# Set lookups rather than regexes: these run on every call.
_HEX = frozenset("0123456789abcdef")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")  # a baggage key
# Baggage value octets that travel unescaped: printable ASCII but space, DQUOTE, comma, semicolon, backslash
# (and `%`, which must be escaped to survive decoding).
_VALUE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\%')
_VALUE_CHARS = frozenset(_VALUE_SAFE)
_random_bits = rng.getrandbits  # W3C ids need uniqueness, not secrecy; os.urandom costs several times more


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str
    span_id: str
    sampled: bool


def parse_traceparent(value: str | None) -> TraceParent | None:
    """A W3C `traceparent`; anything invalid is None (the callee then starts a new trace, as the spec says)."""
    if not value:
        return None
    value = value.strip()
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if len(value) > 55 and (version == "00" or value[55] != "-"):  # later versions may append fields
        return None
    digits = value[:55].replace("-", "")
    if len(digits) != 52 or not _HEX.issuperset(digits) or version == "ff":
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceParent(trace_id, span_id, bool(int(flags, 16) & 1))


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def parse_baggage(value: str | None) -> dict[str, str]:
    """W3C `baggage` entries; properties are ignored, members that do not parse are skipped."""
    entries: dict[str, str] = {}
    if not value or len(value) > MAX_BAGGAGE_BYTES:
        return entries
    for member in value.split(",")[:MAX_BAGGAGE_MEMBERS]:
        key, sep, raw = member.partition("=")
        key = key.strip()
        if not sep or not key or not _TOKEN.issuperset(key):
            continue
        if ";" in raw:
            raw = raw.split(";", 1)[0]
        raw = raw.strip()
        entries[key] = unquote(raw) if "%" in raw else raw
    return entries


def format_baggage(entries: Mapping[str, str]) -> str | None:
    """The `baggage` header for `entries`, values percent-encoded where needed; members past the limits left out."""
    members: list[str] = []
    size = 0
    for key, value in entries.items():
        encoded = value if _VALUE_CHARS.issuperset(value) else quote(value, safe=_VALUE_SAFE)
        member = f"{key}={encoded}"
        if len(members) == MAX_BAGGAGE_MEMBERS or size + len(member) + 1 > MAX_BAGGAGE_BYTES:
            break
        members.append(member)
        size += len(member) + 1
    return ",".join(members) or None


def ids_from_payload(data: Any) -> tuple[str | None, str | None]:
    """`session_id` and `message_id` from the payload, else its `body`, else `body.payload` (the HTTP bridge shape)."""
    session = message = None
    node = data
    for child in ("body", "payload", None):
        if not isinstance(node, dict):
            break
        if session is None:
            session = valid_id(node.get("session_id"))
        if message is None:
            message = valid_id(node.get("message_id"))
        if (session is not None and message is not None) or child is None:
            break
        node = node.get(child)
    return session, message


def valid_id(value: Any) -> str | None:
    """An id worth tagging a span with: printable ASCII, 1 to 128 characters."""
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable():
        return value
    return None


@dataclass(slots=True)
class Active:
    """The trace context code runs in: the live span of a handler call and the baggage its calls carry.

    The exported SpanRecord is built from it at flush time, so a call pays for one small object only.
    """

    name: str
    trace_id: str | None  # None: no trace at all (tracing off and no incoming context)
    span_id: str | None  # this span's when recording; otherwise the parent's, passed on unchanged
    parent_id: str | None
    sampled: bool
    recording: bool
    tags: dict[str, str]  # the attributes the span starts with: incoming baggage plus its ids
    baggage: dict[str, str]  # what calls carry; the same dict as `tags` until set_baggage copies it
    start_ns: int = 0
    end_ns: int = 0
    status: str = "unset"
    status_message: str | None = None
    extra: dict[str, Any] | None = None  # set_attribute's, and the error code
    _traceparent: str | None = None
    _baggage: str | None = None

    def outgoing(self) -> tuple[str | None, str | None]:
        """`traceparent` and `baggage` for a call made now; formatted once and reused."""
        if self._traceparent is None and self.trace_id is not None and self.span_id is not None:
            self._traceparent = format_traceparent(self.trace_id, self.span_id, self.sampled)
        if self._baggage is None and self.baggage:
            self._baggage = format_baggage(self.baggage)
        return self._traceparent, self._baggage

    def record(self, service_name: str) -> SpanRecord:
        attributes: dict[str, Any] = dict(self.tags)
        if self.extra:
            attributes.update(self.extra)
        return SpanRecord(
            self.trace_id or "",
            self.span_id or "",
            self.parent_id,
            self.name,
            service_name,
            self.start_ns,
            self.end_ns,
            "server",
            self.status,
            self.status_message,
            attributes,
        )


_active: ContextVar[Active | None] = ContextVar("teamster_trace", default=None)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the handler span running in this context, e.g. for `engine::log::*`."""
    active = _active.get()
    if active is None or not active.recording or active.trace_id is None or active.span_id is None:
        return None
    return active.trace_id, active.span_id


def set_attribute(key: str, value: Any) -> None:
    """Tag the running handler's span (a no-op outside handlers or when it is not recorded)."""
    active = _active.get()
    if active is not None and active.recording:
        if active.extra is None:
            active.extra = {}
        active.extra[key] = value


def baggage() -> dict[str, str]:
    """A copy of the baggage this handler's calls carry."""
    active = _active.get()
    return dict(active.baggage) if active is not None else {}


def set_baggage(key: str, value: str) -> None:
    """Add an entry to the baggage of the calls this handler makes from now on."""
    active = _active.get()
    if active is None:
        raise RuntimeError("set_baggage works inside a handler, where a trace context is active")
    if not key or not _TOKEN.issuperset(key):
        raise ValueError(f"baggage key {key!r} is not a token")
    if active.baggage is active.tags:
        active.baggage = dict(active.tags)  # the span keeps the tags it started with
    active.baggage[key] = value
    active._baggage = None


def outgoing() -> tuple[str | None, str | None]:
    """`traceparent` and `baggage` for a call made from this context; (None, None) outside handlers."""
    active = _active.get()
    return active.outgoing() if active is not None else (None, None)


Exporter = Callable[[list[SpanRecord]], Awaitable[bool]]


class Tracer:
    """One worker's handler spans: opened from the incoming context, buffered, and exported in batches."""

    def __init__(self, service_name: str, *, enabled: bool = True) -> None:
        self.service_name = service_name
        self.enabled = enabled
        self.export: Exporter | None = None  # set while connected to an engine that takes spans
        self.exported = 0
        self.dropped = 0  # spans lost to a full buffer or a failed export
        self._buffer: list[Active] = []
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def open(
        self, function_id: str, data: Any, traceparent: str | None, baggage: str | None
    ) -> tuple[Active, Token[Active | None]]:
        """Start the span of a handler call and make it current; pair with `close`."""
        current = _active.get()
        if (
            current is not None
            and traceparent is not None
            and traceparent is current._traceparent
            and baggage is current._baggage
        ):
            # An in-process call made from this very task (the strings are the ones it formatted, so the
            # context is unchanged since): take the caller's context as is, with no string parsing.
            trace_id, parent_id, sampled = current.trace_id, current.span_id, current.sampled
            tags = dict(current.baggage)
        else:
            parent = parse_traceparent(traceparent) if traceparent else None
            if parent is None:
                trace_id, parent_id, sampled = None, None, True
            else:
                trace_id, parent_id, sampled = parent.trace_id, parent.span_id, parent.sampled
            tags = parse_baggage(baggage) if baggage else {}
        if isinstance(data, dict) and ("session_id" in data or "message_id" in data or "body" in data):
            session, message = ids_from_payload(data)
        else:
            session = message = None
        if session is None and tags:
            session = valid_id(tags.get(SESSION_ID))
        if message is None and tags:
            message = valid_id(tags.get(MESSAGE_ID))
        tags[FUNCTION_ID] = function_id
        if session is not None:
            tags[SESSION_ID] = session
        if message is not None:
            tags[MESSAGE_ID] = message
        if self.enabled and sampled:
            if trace_id is None:
                trace_id = "%032x" % (_random_bits(128) or 1)
            span_id: str | None = "%016x" % (_random_bits(64) or 1)
            active = Active(function_id, trace_id, span_id, parent_id, True, True, tags, tags, time.time_ns())
        else:
            # Not recorded: the calls this handler makes pass the incoming context on unchanged.
            active = Active(function_id, trace_id, parent_id, None, sampled, False, tags, tags)
        return active, _active.set(active)

    def close(self, active: Active, token: Token[Active | None], error: BaseException | None) -> None:
        """End the span opened by `open`, restore the previous context and queue the span for export."""
        _active.reset(token)
        if not active.recording or self.export is None:
            return
        active.end_ns = time.time_ns()
        if error is None:
            active.status = "ok"
        else:
            active.status = "error"
            if isinstance(error, InvocationError):
                active.status_message = error.message
                if active.extra is None:
                    active.extra = {}
                active.extra["iii.error.code"] = error.code
            else:
                active.status_message = type(error).__name__  # cancelled: the caller or the link went away
        if len(self._buffer) >= MAX_BUFFER:
            self.dropped += 1
            return
        self._buffer.append(active)
        if self._task is not None:
            return  # the running export picks it up
        if len(self._buffer) >= MAX_BATCH:
            self._start_export()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._start_export)

    async def flush(self) -> None:
        """Export what is buffered now, waiting at most FLUSH_TIMEOUT_S (the worker is closing)."""
        if self._task is None and self._buffer:
            self._start_export()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), FLUSH_TIMEOUT_S)
            except TimeoutError:
                log.debug("span export did not finish within %.1fs", FLUSH_TIMEOUT_S)

    def _start_export(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            self._task = asyncio.ensure_future(self._export_buffer())

    async def _export_buffer(self) -> None:
        """One export at a time; spans finished meanwhile go in the next batch."""
        try:
            while self._buffer:
                batch = self._buffer[:MAX_BATCH]
                del self._buffer[:MAX_BATCH]
                export = self.export
                try:
                    sent = export is not None and await export([a.record(self.service_name) for a in batch])
                except Exception as exc:  # a telemetry failure must never reach the handlers
                    log.debug("span export failed: %s", exc)
                    sent = False
                if sent:
                    self.exported += len(batch)
                else:
                    self.dropped += len(batch)
        finally:
            self._task = None
