"""The `hook-fanout` worker's handlers: publish a topic, collect the subscribers' replies, merge them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import AliasChoices, Field, ValidationError

from teamster.harness.contracts import Collected, PublishStatus, ResolvedBy, Shape
from teamster.harness.hooks.merge import MergeRule, merge
from teamster.protocol.errors import InvocationError
from teamster.protocol.handles import handles
from teamster.sdk import Void, Worker

REPLY_STREAM = "agent::hook_reply"


class PublishCollect(Shape):
    topic: str = Field(min_length=1)
    payload: Any = None
    merge_rule: MergeRule
    timeout_ms: int | None = Field(default=None, ge=0)
    expected_replies: int | None = Field(default=None, ge=1)
    quiescence_ms: int | None = Field(default=None, ge=0)


class BeforeHook(Shape):
    topic: str = Field(min_length=1)
    payload: Any = None
    timeout_ms: int | None = Field(default=None, ge=0)


class ReplyEvent(Shape):
    type: str = "create"
    data: Any = None


class ReplyFrame(Shape):
    """What the `stream` trigger delivers for an item written to agent::hook_reply."""

    group_id: str = Field(validation_alias=AliasChoices("groupId", "group_id"))
    id: str | None = None
    event: ReplyEvent | None = None
    data: Any = None


class _Binding(Shape):
    trigger_type: str
    config: Any = None
    active: bool = True


class _Bindings(Shape):
    registered_triggers: list[_Binding]


@dataclass(slots=True)
class _Collector:
    """The replies of one published event, as they arrive."""

    replies: list[Any] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    last_at: float = 0.0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, deadline: float, expected: int | None, quiescence_s: float) -> ResolvedBy:
        """Until `expected` replies, a quiet spell after the last reply, or the deadline, whichever comes first."""
        loop = asyncio.get_running_loop()
        while True:
            self.arrived.clear()  # before looking, so a reply landing after the look wakes the wait
            if expected is not None and len(self.replies) >= expected:
                return "expected"
            quiet_at = self.last_at + quiescence_s if self.replies and quiescence_s > 0 else math.inf
            if loop.time() >= min(quiet_at, deadline):
                if quiet_at <= deadline:
                    return "quiescence"
                return "deadline" if self.replies else "deadline_no_replies"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(min(quiet_at, deadline)):
                    await self.arrived.wait()


class Fanout:
    """The handlers, with what they share: the calls waiting for replies and which topics have subscribers."""

    def __init__(
        self, worker: Worker, default_timeout_ms: int, min_timeout_ms: int, quiescence_ms: int, presence_ttl_s: float
    ) -> None:
        self.worker = worker
        self.default_timeout_ms = default_timeout_ms
        self.min_timeout_ms = min_timeout_ms
        self.quiescence_ms = quiescence_ms
        self.presence_ttl_s = presence_ttl_s
        self._collectors: dict[str, _Collector] = {}
        self._presence: dict[str, tuple[float, bool]] = {}  # topic -> (expires at, has subscribers)

    @handles("hook-fanout::publish_collect")
    async def publish_collect(self, req: PublishCollect) -> Collected:
        """Publish a hook topic and collect the subscribers' replies, merged by merge_rule."""
        loop = asyncio.get_running_loop()
        event_id = str(uuid.uuid4())
        timeout_s = (
            max(self.default_timeout_ms if req.timeout_ms is None else req.timeout_ms, self.min_timeout_ms) / 1000
        )
        deadline = loop.time() + timeout_s
        quiescence_s = (self.quiescence_ms if req.quiescence_ms is None else req.quiescence_ms) / 1000

        def result(collector: _Collector, resolved_by: ResolvedBy, error: str | None = None) -> Collected:
            merged = None if resolved_by == "no_subscribers" else merge(req.merge_rule, req.payload, collector.replies)
            return Collected(
                event_id=event_id,
                replies=collector.replies,
                merged=merged,
                publish=PublishStatus(ok=error is None, error=error),
                publish_failed=error is not None,
                resolved_by=resolved_by,
            )

        if not await self._has_subscribers(req.topic):
            return result(_Collector(), "no_subscribers")
        collector = self._collectors[event_id] = _Collector()  # before publishing, so no early reply is lost
        try:
            envelope = {"event_id": event_id, "reply_stream": REPLY_STREAM, "payload": req.payload}
            try:
                receipt = await self.worker.trigger(
                    "iii::durable::publish", {"topic": req.topic, "data": envelope}, timeout=timeout_s
                )
            except (InvocationError, TimeoutError) as exc:
                return result(collector, "publish_failed", str(exc) or type(exc).__name__)
            if isinstance(receipt, dict) and receipt.get("published") == 0:
                self._presence[req.topic] = (time.monotonic() + self.presence_ttl_s, False)
                return result(collector, "no_subscribers")
            return result(collector, await collector.wait(deadline, req.expected_replies, quiescence_s))
        finally:
            del self._collectors[event_id]
            await self._forget(event_id, collector.item_ids)

    @handles("hook-fanout::before")
    async def before(self, req: BeforeHook) -> dict[str, Any]:
        """Run a before-hook (first_block_wins); fails closed: {block: true} when the hook cannot answer."""
        collect = PublishCollect(
            topic=req.topic, payload=req.payload, merge_rule="first_block_wins", timeout_ms=req.timeout_ms
        )
        # Fail closed: a gate that cannot be asked must not read as a gate that allowed.
        try:
            collected = await self.publish_collect(collect)
        except Exception as exc:
            return {"block": True, "reason": f"hook_unavailable: {exc}"}
        if collected.publish_failed:
            return {"block": True, "reason": f"hook_unavailable: {collected.publish.error}"}
        if collected.resolved_by == "deadline_no_replies":
            return {"block": True, "reason": f"hook_unavailable: no subscriber of {req.topic} replied in time"}
        if collected.resolved_by == "no_subscribers":
            return {"block": False}
        merged: dict[str, Any] = collected.merged
        return merged

    @handles("hook-fanout::reply_handler", metadata={"internal": True})
    async def reply_handler(self, frame: ReplyFrame) -> None:
        """Route a reply written to agent::hook_reply to the call waiting for it."""
        collector = self._collectors.get(frame.group_id)
        if collector is None or (frame.event is not None and frame.event.type == "delete"):
            return  # a late reply for a finished call, or our own cleanup
        collector.replies.append(frame.event.data if frame.event is not None else frame.data)
        if frame.id is not None:
            collector.item_ids.append(frame.id)
        collector.last_at = asyncio.get_running_loop().time()
        collector.arrived.set()

    async def _has_subscribers(self, topic: str) -> bool:
        """Whether an active durable:subscriber binding listens on `topic`; cached, and true when unknown."""
        cached = self._presence.get(topic)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            listing = _Bindings.model_validate(await self.worker.trigger("engine::registered-triggers::list", {}))
        except (InvocationError, TimeoutError, ValidationError):
            return True  # unknown is not "nobody": publish and let the replies tell
        found = any(
            b.trigger_type == "durable:subscriber"
            and b.active
            and isinstance(b.config, dict)
            and b.config.get("topic") == topic
            for b in listing.registered_triggers
        )
        self._presence[topic] = (time.monotonic() + self.presence_ttl_s, found)
        return found

    async def _forget(self, event_id: str, item_ids: list[str]) -> None:
        """Delete the stored replies: they were only the transport."""
        for item_id in item_ids:
            await self.worker.trigger(
                "stream::delete",
                {"stream_name": REPLY_STREAM, "group_id": event_id, "item_id": item_id},
                action=Void(),
            )
