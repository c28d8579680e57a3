"""In-memory adapters: nothing survives the process, for tests and throwaway engines.

Values are kept as encoded JSON, exactly as the SQLite backend stores them, so both backends
reject the same values and callers never share mutable objects with the store.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import orjson

from teamster.protocol import clock
from teamster.protocol.jsontext import dumps

from .base import (
    Entry,
    PubSubHandler,
    QueueMessage,
    RevisionConflict,
    StateChange,
    StateWatcher,
    Storage,
)

logger = logging.getLogger("teamster.storage")

READY = "ready"
IN_FLIGHT = "in_flight"
DEAD = "dead"
PARKED = "parked"  # waiting for its function to be registered; `visible_at_ms` is its horizon


class StateWatchers:
    """The watchers of one state store; a failing watcher is logged, never raised to the writer."""

    def __init__(self) -> None:
        self._watchers: list[StateWatcher] = []

    def add(self, watcher: StateWatcher) -> Callable[[], None]:
        """Register `watcher`; returns a function that removes it."""
        self._watchers.append(watcher)

        def stop() -> None:
            with suppress(ValueError):
                self._watchers.remove(watcher)

        return stop

    def notify(self, change: StateChange) -> None:
        """Tell every watcher about `change`."""
        # A copy, so a watcher may stop watching from inside its callback.
        for watcher in tuple(self._watchers):
            try:
                watcher(change)
            except Exception:
                logger.exception("state watcher failed on %s/%s", change.scope, change.key)


@dataclass(slots=True)
class _StoredEntry:
    value: bytes
    revision: int


class MemoryState:
    """Scoped key/value store with per-key revisions, held in dicts."""

    def __init__(self) -> None:
        self._scopes: dict[str, dict[str, _StoredEntry]] = {}
        self._watchers = StateWatchers()

    async def get(self, scope: str, key: str) -> Entry | None:
        """The entry under `key`, or None."""
        stored = self._scopes.get(scope, {}).get(key)
        return None if stored is None else Entry(orjson.loads(stored.value), stored.revision)

    async def put(self, scope: str, key: str, value: Any, *, revision: int | None = None) -> Entry:
        """Store `value`; with `revision`, only if the stored revision still equals it (0 = absent)."""
        encoded = dumps(value)
        keys = self._scopes.get(scope, {})
        current = keys.get(key)
        current_revision = 0 if current is None else current.revision
        if revision is not None and revision != current_revision:
            raise RevisionConflict(f"{scope}/{key}: expected revision {revision}, found {current_revision}")
        self._scopes.setdefault(scope, keys)[key] = _StoredEntry(encoded, current_revision + 1)
        old_value = None if current is None else orjson.loads(current.value)
        self._watchers.notify(StateChange(scope, key, old_value, value))
        return Entry(value, current_revision + 1)

    async def delete(self, scope: str, key: str) -> Entry | None:
        """Remove and return the entry, or None when there was none."""
        keys = self._scopes.get(scope)
        if keys is None or key not in keys:
            return None
        stored = keys.pop(key)
        if not keys:
            del self._scopes[scope]
        old = Entry(orjson.loads(stored.value), stored.revision)
        self._watchers.notify(StateChange(scope, key, old.value, None, deleted=True))
        return old

    async def list(self, scope: str) -> builtins.list[tuple[str, Any]]:
        """(key, value) pairs of one scope, ordered by key."""
        keys = self._scopes.get(scope, {})
        return [(key, orjson.loads(keys[key].value)) for key in sorted(keys)]

    async def scopes(self) -> builtins.list[str]:
        """Sorted scopes that hold at least one key."""
        return sorted(self._scopes)

    def watch(self, watcher: StateWatcher) -> Callable[[], None]:
        """Call `watcher` after every stored change; returns a function that stops watching."""
        return self._watchers.add(watcher)


@dataclass(slots=True)
class _StoredMessage:
    message: QueueMessage  # its `data` is None: the payload lives encoded in `data`
    data: bytes
    status: str
    visible_at_ms: int

    def copy_out(self) -> QueueMessage:
        return replace(self.message, data=orjson.loads(self.data))


class MemoryQueues:
    """Named queues whose messages are held in enqueue order."""

    def __init__(self) -> None:
        # queue → message id → message; dicts keep insertion order, which is FIFO order.
        self._queues: dict[str, dict[str, _StoredMessage]] = {}
        self._queue_of: dict[str, str] = {}

    def _find(self, message_id: str) -> _StoredMessage | None:
        queue = self._queue_of.get(message_id)
        return None if queue is None else self._queues[queue][message_id]

    def _remove(self, queue: str, message_id: str) -> None:
        messages = self._queues[queue]
        del messages[message_id]
        del self._queue_of[message_id]
        if not messages:
            del self._queues[queue]

    async def enqueue(self, message: QueueMessage, *, visible_at_ms: int = 0) -> None:
        """Add `message` at the back of its queue; raises ValueError if its id is already queued."""
        if message.id in self._queue_of:
            raise ValueError(f"message {message.id} is already queued")
        stored = _StoredMessage(replace(message, data=None), dumps(message.data), READY, visible_at_ms)
        self._queues.setdefault(message.queue, {})[message.id] = stored
        self._queue_of[message.id] = message.queue

    async def reserve(self, queue: str, limit: int, now_ms: int, *, fifo: bool = False) -> list[QueueMessage]:
        """Take up to `limit` visible messages, mark them in flight and count the delivery."""
        if limit <= 0:
            return []
        taken: list[_StoredMessage] = []
        for stored in self._queues.get(queue, {}).values():
            if fifo and stored.status != DEAD:
                if stored.status == READY and stored.visible_at_ms <= now_ms:
                    taken.append(stored)
                break
            if stored.status == READY and stored.visible_at_ms <= now_ms:
                taken.append(stored)
                if len(taken) == limit:
                    break
        for stored in taken:
            stored.status = IN_FLIGHT
            stored.message.attempts += 1
        return [stored.copy_out() for stored in taken]

    async def ack(self, message_id: str) -> None:
        """Remove the message for good."""
        stored = self._find(message_id)
        if stored is not None:
            self._remove(stored.message.queue, message_id)

    async def retry(self, message_id: str, visible_at_ms: int, error: str) -> None:
        """Return an in-flight message to the queue, invisible until `visible_at_ms`."""
        stored = self._find(message_id)
        if stored is not None:
            stored.status = READY
            stored.visible_at_ms = visible_at_ms
            stored.message.last_error = error

    async def dead_letter(self, message_id: str, error: str) -> None:
        """Keep the message aside as dead, with the error that killed it."""
        stored = self._find(message_id)
        if stored is not None:
            stored.status = DEAD
            stored.message.last_error = error

    async def park(self, message_id: str, until_ms: int, error: str) -> None:
        """Set an in-flight message aside until `unpark` or `until_ms`; the delivery is not counted."""
        stored = self._find(message_id)
        if stored is not None:
            stored.status = PARKED
            stored.visible_at_ms = until_ms
            stored.message.attempts -= 1
            stored.message.last_error = error

    def _parked_for(self, namespace: str, function_id: str) -> list[_StoredMessage]:
        return [
            stored
            for messages in self._queues.values()
            for stored in messages.values()
            if stored.status == PARKED
            and (stored.message.namespace, stored.message.function_id) == (namespace, function_id)
        ]

    async def unpark(self, namespace: str, function_id: str) -> list[str]:
        """Make the messages parked for this function ready now; returns the queues they are in."""
        queues: dict[str, None] = {}
        for stored in self._parked_for(namespace, function_id):
            stored.status = READY
            stored.visible_at_ms = 0
            queues[stored.message.queue] = None
        return list(queues)

    async def parked(self) -> dict[tuple[str, str], int]:
        """Each (namespace, function_id) that has parked messages, with the earliest `until_ms` among them."""
        earliest: dict[tuple[str, str], int] = {}
        for messages in self._queues.values():
            for stored in messages.values():
                if stored.status == PARKED:
                    key = (stored.message.namespace, stored.message.function_id)
                    earliest[key] = min(earliest.get(key, stored.visible_at_ms), stored.visible_at_ms)
        return earliest

    async def expire_parked(self, namespace: str, function_id: str, now_ms: int, error: str) -> list[str]:
        """Dead-letter this function's parked messages whose `until_ms` is past, with `error`; returns their queues."""
        expired = [stored for stored in self._parked_for(namespace, function_id) if stored.visible_at_ms <= now_ms]
        for stored in expired:
            stored.status = DEAD
            stored.message.last_error = error
        return list(dict.fromkeys(stored.message.queue for stored in expired))

    async def recover(self) -> int:
        """Make every in-flight message ready again (after a crash or restart); returns how many."""
        count = 0
        for messages in self._queues.values():
            for stored in messages.values():
                if stored.status == IN_FLIGHT:
                    stored.status = READY
                    count += 1
        return count

    async def queues(self) -> list[str]:
        """Names of queues that hold ready, in-flight or dead-lettered messages."""
        return sorted(self._queues)

    async def stats(self, queue: str) -> dict[str, int]:
        """`{ready, in_flight, dead}` counts; parked messages are waiting to be delivered, so count as ready."""
        counts = {READY: 0, IN_FLIGHT: 0, DEAD: 0}
        for stored in self._queues.get(queue, {}).values():
            counts[READY if stored.status == PARKED else stored.status] += 1
        return counts

    async def dead_letters(self, queue: str, offset: int = 0, limit: int = 50) -> list[QueueMessage]:
        """Dead-lettered messages of `queue`, oldest first."""
        dead = [stored for stored in self._queues.get(queue, {}).values() if stored.status == DEAD]
        return [stored.copy_out() for stored in dead[offset : offset + limit]]

    async def redrive(self, queue: str, message_id: str | None = None) -> int:
        """Move dead-lettered messages (all, or one) back to ready with attempts reset; returns how many."""
        count = 0
        for stored in self._queues.get(queue, {}).values():
            if stored.status == DEAD and message_id in (None, stored.message.id):
                stored.status = READY
                stored.visible_at_ms = 0
                stored.message.attempts = 0
                count += 1
        return count

    async def discard(self, queue: str, message_id: str) -> bool:
        """Remove one message of `queue`; returns whether it was there."""
        if message_id not in self._queues.get(queue, {}):
            return False
        self._remove(queue, message_id)
        return True


class MemoryStreams:
    """Items addressed by (stream, group, item), held in nested dicts."""

    def __init__(self) -> None:
        self._streams: dict[str, dict[str, dict[str, bytes]]] = {}

    async def get(self, stream: str, group: str, item: str) -> Any | None:
        """The item's data, or None."""
        data = self._streams.get(stream, {}).get(group, {}).get(item)
        return None if data is None else orjson.loads(data)

    async def set(self, stream: str, group: str, item: str, data: Any) -> Any | None:
        """Store and return the previous value."""
        encoded = dumps(data)
        items = self._streams.setdefault(stream, {}).setdefault(group, {})
        previous = items.get(item)
        items[item] = encoded
        return None if previous is None else orjson.loads(previous)

    async def delete(self, stream: str, group: str, item: str) -> Any | None:
        """Remove the item; returns its data, or None when there was none."""
        groups = self._streams.get(stream, {})
        items = groups.get(group, {})
        if item not in items:
            return None
        previous = items.pop(item)
        # Empty groups and streams are dropped so `groups` and `streams` only show what holds items.
        if not items:
            del groups[group]
            if not groups:
                del self._streams[stream]
        return orjson.loads(previous)

    async def list(self, stream: str, group: str) -> builtins.list[Any]:
        """Data of a group's items, ordered by item id."""
        items = self._streams.get(stream, {}).get(group, {})
        return [orjson.loads(items[item]) for item in sorted(items)]

    async def groups(self, stream: str) -> builtins.list[str]:
        """Sorted groups of `stream` that hold items."""
        return sorted(self._streams.get(stream, {}))

    async def streams(self) -> builtins.list[dict[str, Any]]:
        """`[{id, groups:[...]}]` for every stream that holds items, sorted by id."""
        return [{"id": stream, "groups": sorted(self._streams[stream])} for stream in sorted(self._streams)]


class LocalPubSub:
    """Fan-out to the subscribers of this process, each handler run as its own task."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[PubSubHandler]] = {}
        # The event loop keeps only weak references to tasks; these keep deliveries alive.
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, topic: str, data: Any) -> None:
        """Start delivering `data` to every subscriber of `topic`, without waiting for them."""
        for handler in tuple(self._handlers.get(topic, ())):
            task = asyncio.create_task(self._deliver(topic, handler, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def subscribe(self, topic: str, handler: PubSubHandler) -> Callable[[], None]:
        """Call `handler` for each message published on `topic`; returns an unsubscribe function."""
        handlers = self._handlers.setdefault(topic, [])
        handlers.append(handler)

        def unsubscribe() -> None:
            with suppress(ValueError):
                handlers.remove(handler)
            if not handlers and self._handlers.get(topic) is handlers:
                del self._handlers[topic]

        return unsubscribe

    @staticmethod
    async def _deliver(topic: str, handler: PubSubHandler, data: Any) -> None:
        try:
            await handler(data)
        except Exception:
            logger.exception("pub/sub handler failed on topic %s", topic)


class MemoryLocks:
    """Expiring leases held in a dict."""

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, int]] = {}

    async def acquire(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take the lease if it is free, expired or already ours (then extend it)."""
        now_ms = clock.now_ms()
        lease = self._leases.get(name)
        if lease is not None and lease[0] != owner and lease[1] > now_ms:
            return False
        self._leases[name] = (owner, now_ms + ttl_ms)
        return True

    async def release(self, name: str, owner: str) -> None:
        """Give the lease up, if `owner` holds it."""
        lease = self._leases.get(name)
        if lease is not None and lease[0] == owner:
            del self._leases[name]


def open_memory() -> Storage:
    """A fresh, empty in-memory storage."""
    return Storage(
        state=MemoryState(),
        queues=MemoryQueues(),
        streams=MemoryStreams(),
        pubsub=LocalPubSub(),
        locks=MemoryLocks(),
    )
