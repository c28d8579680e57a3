"""`iii-traces`: spans from workers kept in a bounded ring, `engine::traces::*`, OTLP export when configured.

The span record and its OTLP/JSON codec are in `protocol/otlp.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from teamster.engine.builtin import Input, Module, parse
from teamster.engine.registry import Invocation
from teamster.protocol.handles import handles
from teamster.protocol.otlp import (
    FUNCTION_ID,
    MESSAGE_ID,
    SESSION_ID,
    MalformedTelemetry,
    SpanRecord,
    decode_otlp,
    encode_otlp,
)

log = logging.getLogger("teamster.engine")

_EXPORT_TIMEOUT_S = 10.0


# ---- storage and export -------------------------------------------------------------------------


class TraceStore:
    """The newest `capacity` spans, oldest evicted first.

    Spans of one trace are found by a scan: an index by trace id cost every span at ingest more than
    the scan costs a query (about half a millisecond for 10,000 spans).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.evicted = 0
        self._ring: deque[SpanRecord] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, spans: Collection[SpanRecord]) -> None:
        self.evicted += max(0, len(self._ring) + len(spans) - self.capacity)
        self._ring.extend(spans)

    def newest_first(self, trace_id: str | None = None) -> Iterator[SpanRecord]:
        if trace_id is None:
            return reversed(self._ring)
        return (span for span in reversed(self._ring) if span.trace_id == trace_id)

    def clear(self) -> int:
        count = len(self._ring)
        self._ring.clear()
        return count


class OtlpExporter:
    """Posts spans to an OTLP/HTTP collector as JSON from one background task; never blocks the caller."""

    def __init__(self, url: str, headers: Mapping[str, str], *, max_queue: int, max_batch: int, interval_s: float):
        self.url = url
        self.headers = {**headers, "Content-Type": "application/json"}
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.interval_s = interval_s
        self.exported = 0
        self.failed = 0  # spans in batches the collector did not take
        self.dropped = 0  # spans refused because the queue was full
        self._queue: deque[SpanRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def offer(self, spans: Iterable[SpanRecord]) -> None:
        for span in spans:
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
            else:
                self._queue.append(span)
        if len(self._queue) >= self.max_batch:
            self._wake.set()

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_EXPORT_TIMEOUT_S))
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop, then send what is queued: until a batch fails, and no longer than one export timeout."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(_EXPORT_TIMEOUT_S):
                while self._queue and await self._send_batch():
                    pass
        except TimeoutError:
            pass
        self.failed += len(self._queue)
        self._queue.clear()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # the interval passed: send what has gathered
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            while self._queue:
                await self._send_batch()

    async def _send_batch(self) -> bool:
        assert self._session is not None
        batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        try:
            async with self._session.post(self.url, data=encode_otlp(batch), headers=self.headers) as resp:
                ok = resp.status < 300
                if not ok:
                    log.warning("OTLP collector %s answered %s; %d spans dropped", self.url, resp.status, len(batch))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("OTLP export to %s failed (%s); %d spans dropped", self.url, exc, len(batch))
            ok = False
        if ok:
            self.exported += len(batch)
        else:
            self.failed += len(batch)
        return ok


def otlp_traces_url(endpoint: str | None, env: Mapping[str, str]) -> str | None:
    """Where spans go: the config's endpoint, else the standard OTel env vars, else nowhere."""
    if endpoint:
        return _traces_path(endpoint)
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]  # the signal-specific URL is used as given
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return _traces_path(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    return None


def otlp_headers(configured: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """`OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (`k=v,k2=v2`, values URL-encoded), then the config's over them."""
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[key.strip()] = unquote(value.strip())
    headers.update(configured)
    return headers


def _traces_path(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


# ---- the module ---------------------------------------------------------------------------------


class TracesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_spans: int = Field(default=10_000, ge=1)
    # OTLP/HTTP collector base URL (`/v1/traces` is appended); unset: the OTEL_EXPORTER_OTLP_* env, else no export.
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    otlp_interval_ms: int = Field(default=1000, ge=10)
    otlp_max_batch: int = Field(default=512, ge=1)
    otlp_max_queue: int = Field(default=10_000, ge=1)


class TraceQuery(Input):
    trace_id: str | None = None
    session_id: str | None = None
    message_id: str | None = None
    function_id: str | None = None
    service_name: str | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class TraceId(Input):
    trace_id: str


class Traces(Module):
    name = "iii-traces"
    Config = TracesConfig
    config: TracesConfig

    async def start(self) -> None:
        config = self.config
        self.store = TraceStore(config.max_spans)
        self.malformed_frames = 0
        self.malformed_spans = 0
        url = otlp_traces_url(config.otlp_endpoint, os.environ)
        self.exporter = (
            OtlpExporter(
                url,
                otlp_headers(config.otlp_headers, os.environ),
                max_queue=config.otlp_max_queue,
                max_batch=config.otlp_max_batch,
                interval_s=config.otlp_interval_ms / 1000,
            )
            if url
            else None
        )
        engine = self.engine
        engine.serve(self)
        if self.exporter is not None:
            self.exporter.start()
        engine.traces = self

    async def stop(self) -> None:
        self.engine.traces = None
        if self.exporter is not None:
            await self.exporter.stop()

    def add(self, spans: list[SpanRecord]) -> None:
        """Spans from a worker (in-process ones hand them over directly)."""
        self.store.add(spans)
        if self.exporter is not None:
            self.exporter.offer(spans)

    def ingest_otlp(self, payload: bytes) -> None:
        """An `OTLP` frame from any worker: malformed telemetry is counted and dropped, never raised."""
        try:
            spans, skipped = decode_otlp(payload)
        except MalformedTelemetry as exc:
            self.malformed_frames += 1
            log.debug("dropped a malformed OTLP frame: %s", exc)
            return
        self.malformed_spans += skipped
        self.add(spans)

    @handles("engine::traces::list", description="Stored spans, newest first, filtered")
    async def _list(self, inv: Invocation) -> dict[str, Any]:
        query = parse(TraceQuery, inv.data, inv.function_id)
        wanted = {
            key: value
            for key, value in (
                (SESSION_ID, query.session_id),
                (MESSAGE_ID, query.message_id),
                (FUNCTION_ID, query.function_id),
            )
            if value is not None
        }
        matched = [
            span
            for span in self.store.newest_first(query.trace_id)
            if (query.service_name is None or span.service_name == query.service_name)
            and all(span.attributes.get(key) == value for key, value in wanted.items())
        ]
        return {"spans": [span.to_json() for span in matched[: query.limit]], "total": len(matched)}

    @handles("engine::traces::tree", description="One trace as a tree of spans")
    async def _tree(self, inv: Invocation) -> dict[str, Any]:
        trace_id = parse(TraceId, inv.data, inv.function_id).trace_id
        spans = sorted(self.store.newest_first(trace_id), key=lambda span: span.start_ns)
        nodes = {span.span_id: {**span.to_json(), "children": []} for span in spans}  # a span sent twice counts once
        roots: list[dict[str, Any]] = []
        for span_id, node in nodes.items():
            parent_id = node["parent_span_id"]
            parent = nodes.get(parent_id) if parent_id and parent_id != span_id else None
            # A span whose parent is not stored (evicted, never sent, or in another process) roots its subtree.
            (parent["children"] if parent is not None else roots).append(node)
        return {"trace_id": trace_id, "span_count": len(nodes), "roots": roots}

    @handles("engine::traces::clear", description="Forget every stored span")
    async def _clear(self, inv: Invocation) -> dict[str, Any]:
        return {"cleared": self.store.clear()}

    @handles("engine::traces::stats", description="Span store and export counters")
    async def _stats(self, inv: Invocation) -> dict[str, Any]:
        exporter = self.exporter
        return {
            "stored": len(self.store),
            "capacity": self.store.capacity,
            "evicted": self.store.evicted,
            "malformed_frames": self.malformed_frames,
            "malformed_spans": self.malformed_spans,
            "export": None
            if exporter is None
            else {"exported": exporter.exported, "failed": exporter.failed, "dropped": exporter.dropped},
        }
