"""`iii-queue`: named queues with retries, backoff and a dead-letter queue, and durable pub/sub (§3.5, §4.5).

A queue listed in `queue_configs` uses that config. Any other queue uses the `QueueConfig` defaults
(3 retries, concurrency 10, standard, 1000 ms backoff, 100 ms poll), except a durable subscriber's
queue `__durable::<topic>::<function_id>`, which takes its binding's `queue_config` when it has one.

Delivery is at least once: a message is acked only after its handler succeeded, and messages in
flight when the engine stopped or died are delivered again on the next start.

A message whose function has no live owner when it is delivered (`function_not_found`: its worker
is restarting, or not up yet) is not a failed delivery. It is parked, uncounted, until a worker
registers the function again (or a durable subscriber binds it again), and is delivered at once
then; only a function still missing after `wait_for_function_ms` (default one hour, per queue or for
the module) sends it to the dead-letter queue. A worker restart therefore never costs a message,
whatever the retry and backoff settings. iii's queue only says to retry failures and then
dead-letter them; it does not tell a missing worker from a failing handler, and a step of a turn
lost to a restarting worker is the harm this avoids, so every queue waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from teamster.engine.builtin import BindingSet, Input, Module, parse
from teamster.engine.registry import FunctionEntry, Invocation
from teamster.engine.triggers import Binding
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.storage import QueueAdapter, QueueMessage

log = logging.getLogger("teamster.engine")

DURABLE_PREFIX = "__durable::"
# A durable subscriber's `queue_config` uses iii's names; these are the ones that map onto QueueConfig.
_SUBSCRIBER_FIELDS = {
    "maxRetries": "max_retries",
    "concurrency": "concurrency",
    "backoff_delay_ms": "backoff_ms",
    "type": "type",
}


class QueueConfig(BaseModel):
    """How one queue delivers: retries, parallelism, ordering and backoff."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(default=3, ge=0)
    concurrency: int = Field(default=10, ge=1)
    type: Literal["standard", "fifo"] = "standard"
    message_group_field: str | None = None
    backoff_ms: int = Field(default=1000, ge=0)
    poll_interval_ms: int = Field(default=100, ge=1)
    wait_for_function_ms: int | None = Field(default=None, ge=0)  # None: the module's wait_for_function_ms

    def backoff(self, attempts: int) -> int:
        """Milliseconds to wait after failed attempt number `attempts` (from 1): backoff_ms·2^(attempts−1)."""
        return self.backoff_ms << (attempts - 1)


DEFAULT_QUEUE = QueueConfig()
HOUR_MS = 3_600_000


class QueueModuleConfig(BaseModel):
    """The `iii-queue` entry of the config file."""

    model_config = ConfigDict(extra="forbid")

    queue_configs: dict[str, QueueConfig] = Field(default_factory=dict)
    # How long a message waits for its function to be registered before it is dead-lettered.
    wait_for_function_ms: int = Field(default=HOUR_MS, ge=0)

    @model_validator(mode="after")
    def _fifo_needs_group(self) -> QueueModuleConfig:
        for name, queue in self.queue_configs.items():
            if queue.type == "fifo" and not queue.message_group_field:
                raise ValueError(f"queue {name!r} is fifo and needs message_group_field")
        return self


class SubscriberConfig(BaseModel):
    """A `durable:subscriber` binding's config."""

    model_config = ConfigDict(extra="ignore")

    topic: str = Field(min_length=1)
    condition_function_id: str | None = None
    queue_config: QueueConfig | None = None

    @field_validator("queue_config", mode="before")
    @classmethod
    def _from_iii_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        # iii also accepts fields (visibility_timeout, max_priority, …) that this engine has no use for.
        return {mine: value[theirs] for theirs, mine in _SUBSCRIBER_FIELDS.items() if theirs in value}


class QueueRef(Input):
    queue: str = Field(min_length=1, validation_alias=AliasChoices("queue", "topic"))


class MessageRef(QueueRef):
    message_id: str


class TopicRef(Input):
    topic: str = Field(min_length=1)


class DlqPage(TopicRef):
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1)


class Publish(TopicRef):
    data: Any = None


class _Subscribers(BindingSet[SubscriberConfig]):
    """The `durable:subscriber` bindings; a new one may be what a parked message waits for."""

    def __init__(self, available: Callable[[str, str], None]) -> None:
        super().__init__(SubscriberConfig)
        self._available = available

    async def register(self, binding: Binding) -> None:
        await super().register(binding)
        self._available(binding.namespace, binding.function_id)


class QueueModule(Module):
    """Stores enqueued and published messages and runs one consumer per queue."""

    name = "iii-queue"
    Config = QueueModuleConfig
    config: QueueModuleConfig

    async def start(self) -> None:
        engine = self.engine
        self._consumers: dict[str, _Consumer] = {}
        self._subscribers = _Subscribers(self._available)
        # (namespace, function_id) -> the earliest horizon of the messages parked for it.
        self._parked: dict[tuple[str, str], int] = {}
        self._arrived: set[tuple[str, str]] = set()  # parked targets registered since the attendant last looked
        self._attend = asyncio.Event()
        for function_id, handler, description in (
            ("iii::queue::redrive", self._redrive, "Move a queue's dead-lettered messages back to ready"),
            ("iii::queue::redrive_message", self._redrive_message, "Move one dead-lettered message back to ready"),
            ("iii::queue::discard_message", self._discard_message, "Delete one message of a queue"),
            ("iii::durable::publish", self._publish, "Publish to a durable topic: one copy per subscribed function"),
            ("engine::queue::list_topics", self._list_topics, "Queues and their message counts"),
            ("engine::queue::topic_stats", self._topic_stats, "Message counts of one queue"),
            ("engine::queue::dlq_topics", self._dlq_topics, "Queues that hold dead-lettered messages"),
            ("engine::queue::dlq_messages", self._dlq_messages, "Dead-lettered messages of one queue"),
        ):
            engine.builtin(function_id, handler, description=description)
        await engine.builtin_type(
            "durable:subscriber", self._subscribers, "Durable topic: every subscribed function gets every message"
        )
        engine.router.enqueuer = self._enqueue
        recovered = await self.queues.recover()
        if recovered:
            log.info("iii-queue: %d messages in flight at the last stop will be delivered again", recovered)
        self._parked = await self.queues.parked()
        if self._parked:
            log.info("iii-queue: messages parked at the last stop wait for %d functions", len(self._parked))
        self._unwatch = engine.functions.watch(self._registered)
        for namespace, function_id in self._parked:
            if engine.functions.get(namespace, function_id) is not None:  # registered before the watch began
                self._available(namespace, function_id)
        self._attendant = asyncio.create_task(self._attend_parked())
        for queue in await self.queues.queues():
            self._wake(queue)

    async def stop(self) -> None:
        self.engine.router.enqueuer = None
        self._unwatch()
        self._attendant.cancel()
        consumers, self._consumers = list(self._consumers.values()), {}
        await asyncio.gather(self._attendant, *(consumer.stop() for consumer in consumers), return_exceptions=True)

    @property
    def queues(self) -> QueueAdapter:
        """The engine storage's queues."""
        return self.engine.storage.queues

    def settings(self, queue: str) -> QueueConfig:
        """The config `queue` is delivered with (see the module docstring)."""
        named = self.config.queue_configs.get(queue)
        if named is not None:
            return named
        subscription = self._subscription(queue)
        if subscription is not None and subscription.queue_config is not None:
            return subscription.queue_config
        return DEFAULT_QUEUE

    def horizon(self, queue: str) -> int:
        """How long a message of `queue` waits for its function: the queue's own setting, else the module's."""
        own = self.settings(queue).wait_for_function_ms
        return self.config.wait_for_function_ms if own is None else own

    async def run(self, message: QueueMessage) -> None:
        """Deliver one message; raises when the delivery failed (a durable condition of false succeeds)."""
        router = self.engine.router
        if message.queue.startswith(DURABLE_PREFIX):
            subscription = self._subscription(message.queue)
            if subscription is None:  # the subscriber's worker is away: keep the message for its return
                raise InvocationError(ErrorCode.FUNCTION_NOT_FOUND, f"no durable subscriber feeds {message.queue}")
            condition = subscription.condition_function_id or None
            if not await self.engine.condition_holds(condition, message.data, message.namespace):
                return
        await router.call(
            message.function_id,
            message.data,
            namespace=message.namespace,
            traceparent=message.traceparent,
            baggage=message.baggage,
        )

    def unowned(self, message: QueueMessage, exc: Exception) -> bool:
        """Whether a delivery failed only because nothing serves the message: the engine found no
        function (or no durable subscriber) for it. A worker's own `function_not_found` is a failure."""
        if not isinstance(exc, InvocationError) or exc.code != ErrorCode.FUNCTION_NOT_FOUND:
            return False
        return self._missing(message)

    async def park(self, message: QueueMessage, error: str) -> None:
        """Set an undeliverable message aside, uncounted, until its function is back or its horizon passes."""
        horizon = self.horizon(message.queue)
        until = now_ms() + horizon
        await self.queues.park(message.id, until, error)
        key = (message.namespace, message.function_id)
        self._parked[key] = min(until, self._parked.get(key, until))
        log.info("iii-queue: %s waits up to %d ms for %s: %s", message.id, horizon, message.function_id, error)
        if not self._missing(message):  # registered while this delivery was failing: no notice will come
            self._available(*key)
        self._attend.set()

    # ---- enqueue and publish ------------------------------------------------------------------

    async def _enqueue(
        self, queue: str, function_id: str, data: Any, namespace: str, traceparent: str | None, baggage: str | None
    ) -> str:
        """The router's enqueue hook: store the message and return its receipt id."""
        config = self.settings(queue)
        group = None
        field = config.message_group_field
        if config.type == "fifo" and field:
            value = data.get(field) if isinstance(data, dict) else None
            if value is None:
                raise InvocationError(
                    ErrorCode.ENQUEUE_ERROR,
                    f"queue {queue} is fifo: the message needs its group field {field!r}",
                    function_id=function_id,
                )
            group = str(value)
        return await self._put(queue, function_id, data, namespace, traceparent, baggage, group)

    async def _publish(self, inv: Invocation) -> dict[str, Any]:
        req = parse(Publish, inv.data, inv.function_id)
        bindings = self._subscribers.matching(lambda c: c.topic == req.topic)
        targets = dict.fromkeys((b.namespace, b.function_id) for b in bindings)
        for namespace, function_id in targets:
            queue = durable_queue(req.topic, function_id)
            await self._put(queue, function_id, req.data, namespace, inv.traceparent, inv.baggage)
        return {"published": len(targets)}

    async def _put(
        self,
        queue: str,
        function_id: str,
        data: Any,
        namespace: str,
        traceparent: str | None,
        baggage: str | None,
        group: str | None = None,
    ) -> str:
        """Store a new message, wake its queue's consumer and return the message id (the receipt)."""
        message = QueueMessage(
            id=str(uuid.uuid4()),
            queue=queue,
            function_id=function_id,
            data=data,
            namespace=namespace,
            group=group,
            traceparent=traceparent,
            baggage=baggage,
            enqueued_at_ms=now_ms(),
        )
        await self.queues.enqueue(message)
        self._wake(queue)
        return message.id

    # ---- dead letters and introspection -------------------------------------------------------

    async def _redrive(self, inv: Invocation) -> dict[str, Any]:
        req = parse(QueueRef, inv.data, inv.function_id)
        return await self._redrive_in(req.queue, None)

    async def _redrive_message(self, inv: Invocation) -> dict[str, Any]:
        req = parse(MessageRef, inv.data, inv.function_id)
        return await self._redrive_in(req.queue, req.message_id)

    async def _redrive_in(self, queue: str, message_id: str | None) -> dict[str, Any]:
        redriven = await self.queues.redrive(queue, message_id)
        if redriven:
            self._wake(queue)
        return {"queue": queue, "redriven": redriven}

    async def _discard_message(self, inv: Invocation) -> dict[str, Any]:
        req = parse(MessageRef, inv.data, inv.function_id)
        return {"discarded": await self.queues.discard(req.queue, req.message_id)}

    async def _list_topics(self, inv: Invocation) -> dict[str, Any]:
        return {"topics": [{"name": q, **await self.queues.stats(q)} for q in await self.queues.queues()]}

    async def _topic_stats(self, inv: Invocation) -> dict[str, Any]:
        req = parse(TopicRef, inv.data, inv.function_id)
        return {"topic": req.topic, **await self.queues.stats(req.topic)}

    async def _dlq_topics(self, inv: Invocation) -> dict[str, Any]:
        return {"topics": [q for q in await self.queues.queues() if (await self.queues.stats(q))["dead"] > 0]}

    async def _dlq_messages(self, inv: Invocation) -> dict[str, Any]:
        req = parse(DlqPage, inv.data, inv.function_id)
        dead = await self.queues.dead_letters(req.topic, req.offset, req.limit)
        return {
            "messages": [
                {
                    "id": m.id,
                    "function_id": m.function_id,
                    "data": m.data,
                    "attempts": m.attempts,
                    "last_error": m.last_error,
                    "enqueued_at_ms": m.enqueued_at_ms,
                }
                for m in dead
            ]
        }

    # ---- parked messages ----------------------------------------------------------------------

    def _registered(self, entry: FunctionEntry) -> None:
        self._available(entry.namespace, entry.id)

    def _available(self, namespace: str, function_id: str) -> None:
        """A function or durable subscriber was registered: have the attendant free what waits for it."""
        key = (namespace, function_id)
        if key in self._parked:
            self._arrived.add(key)
            self._attend.set()

    async def _attend_parked(self) -> None:
        """Unpark messages whose function came back; dead-letter those still waiting past their horizon.
        It sleeps until the next horizon or the next registration of a parked function: no polling."""
        while True:
            self._attend.clear()
            arrived, self._arrived = self._arrived, set()
            try:
                await self._unpark(arrived)
                await self._expire(now_ms())
            except Exception:  # a storage hiccup must not strand parked messages for good: look again soon
                log.exception("iii-queue: attending to parked messages failed")
                self._arrived |= arrived
                timeout: float | None = 1.0
            else:
                timeout = (min(self._parked.values()) - now_ms()) / 1000 if self._parked else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._attend.wait()

    async def _unpark(self, arrived: set[tuple[str, str]]) -> None:
        for key in arrived:
            if key in self._parked:
                for queue in await self.queues.unpark(*key):
                    self._wake(queue)
                del self._parked[key]

    async def _expire(self, now: int) -> None:
        due = [key for key, until in self._parked.items() if until <= now]
        for namespace, function_id in due:
            reason = (
                f"{ErrorCode.FUNCTION_NOT_FOUND}: no worker registered {function_id} in namespace {namespace}"
                " within wait_for_function_ms"
            )
            for queue in await self.queues.expire_parked(namespace, function_id, now, reason):
                log.warning("iii-queue: dead-lettered in %s: %s", queue, reason)
                self._wake(queue)  # in a fifo queue the messages behind it may go now
        if due:  # later horizons of the same functions are still parked
            self._parked = await self.queues.parked()

    def _missing(self, message: QueueMessage) -> bool:
        """No live owner serves the message: its function is not registered, or no durable subscriber feeds it."""
        if self.engine.functions.get(message.namespace, message.function_id) is None:
            return True
        return message.queue.startswith(DURABLE_PREFIX) and self._subscription(message.queue) is None

    # ---- internals ----------------------------------------------------------------------------

    def _wake(self, queue: str) -> None:
        """Have `queue`'s consumer look for messages now, starting it if it is not running."""
        consumer = self._consumers.get(queue)
        if consumer is None:
            consumer = self._consumers[queue] = _Consumer(queue, self)
        consumer.wake.set()

    def _subscription(self, queue: str) -> SubscriberConfig | None:
        """The config of a binding that feeds the durable queue `queue`, if one is registered."""
        if not queue.startswith(DURABLE_PREFIX):
            return None
        subscribers = self._subscribers
        return next(
            (
                config
                for binding_id, config in subscribers.configs.items()
                if durable_queue(config.topic, subscribers.bindings[binding_id].function_id) == queue
            ),
            None,
        )


class _Consumer:
    """Delivers one queue's messages, up to its concurrency at a time; the module starts and stops it."""

    def __init__(self, queue: str, module: QueueModule) -> None:
        self.queue = queue
        self.wake = asyncio.Event()
        self._module = module
        self._running: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Cancel the loop and running deliveries; their messages stay in flight for recover()."""
        tasks = [self._task, *self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self.wake.clear()
            config = self._module.settings(self.queue)
            free = config.concurrency - len(self._running)
            try:
                messages = await self._module.queues.reserve(self.queue, free, now_ms(), fifo=config.type == "fifo")
            except Exception:  # a storage hiccup must not end deliveries for good: try again next poll
                log.exception("iii-queue: reserving from %s failed", self.queue)
                messages = []
            for message in messages:
                task = asyncio.create_task(self._deliver(message, config))
                self._running.add(task)
                task.add_done_callback(self._finished)
            # Not asyncio.wait_for: on 3.11 it swallows a cancel that lands as the wake-up fires.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(config.poll_interval_ms / 1000):
                    await self.wake.wait()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.wake.set()  # a slot is free, and in a fifo queue the next message may go

    async def _deliver(self, message: QueueMessage, config: QueueConfig) -> None:
        queues = self._module.queues
        try:
            await self._module.run(message)
        except Exception as exc:
            error = str(exc)
            if self._module.unowned(message, exc):
                await self._module.park(message, error)
            elif message.attempts > config.max_retries:
                log.warning("iii-queue: %s dead-lettered after %d attempts: %s", message.id, message.attempts, error)
                await queues.dead_letter(message.id, error)
            else:
                log.debug("iii-queue: %s attempt %d failed: %s", message.id, message.attempts, error)
                await queues.retry(message.id, now_ms() + config.backoff(message.attempts), error)
        else:
            await queues.ack(message.id)


def durable_queue(topic: str, function_id: str) -> str:
    """The internal queue that carries `topic`'s messages to one subscribed function."""
    return f"{DURABLE_PREFIX}{topic}::{function_id}"
