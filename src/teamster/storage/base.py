"""The adapter interfaces: the only way any other layer reaches stored data.

They are shaped for a distributed backend too (NATS JetStream): state entries carry a
revision for compare-and-set, changes are observable through `watch`, and queue messages
are reserved, then acked, retried or dead-lettered, so an unacked message is redelivered.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class RevisionConflict(Exception):
    """A compare-and-set lost: the entry changed since the revision the caller read."""


@dataclass(frozen=True, slots=True)
class Entry:
    value: Any
    revision: int


@dataclass(frozen=True, slots=True)
class StateChange:
    scope: str
    key: str
    old_value: Any
    new_value: Any  # None when deleted
    deleted: bool = False  # tells a delete from a stored null


StateWatcher = Callable[[StateChange], None]


class StateAdapter(Protocol):
    """Scoped key/value store with revisions."""

    async def get(self, scope: str, key: str) -> Entry | None: ...

    async def put(self, scope: str, key: str, value: Any, *, revision: int | None = None) -> Entry:
        """Store `value`; with `revision`, only if the stored revision still equals it (0 = absent).

        Returns the new entry; raises RevisionConflict when the revision no longer matches.
        Watchers are told of the change after it is stored.
        """
        ...

    async def delete(self, scope: str, key: str) -> Entry | None:
        """Remove and return the entry, or None when there was none."""
        ...

    async def list(self, scope: str) -> list[tuple[str, Any]]:
        """(key, value) pairs of one scope, ordered by key."""
        ...

    async def scopes(self) -> builtins.list[str]:
        """Sorted scopes that hold at least one key."""
        ...

    def watch(self, watcher: StateWatcher) -> Callable[[], None]:
        """Call `watcher` after every stored change; returns a function that stops watching."""
        ...


async def compare_and_set(
    state: StateAdapter, scope: str, key: str, compute: Callable[[Entry | None], Any]
) -> tuple[Entry | None, Any]:
    """Store `compute(current entry)`, computing again until no other write got in between.

    Returns the entry it replaced (None: there was none) and the value stored."""
    while True:
        current = await state.get(scope, key)
        new = compute(current)
        try:
            await state.put(scope, key, new, revision=0 if current is None else current.revision)
        except RevisionConflict:
            continue
        return current, new


@dataclass(slots=True)
class QueueMessage:
    id: str
    queue: str
    function_id: str
    data: Any
    namespace: str = "default"
    attempts: int = 0  # deliveries so far, including the one under way
    group: str | None = None  # FIFO message group
    traceparent: str | None = None
    baggage: str | None = None
    enqueued_at_ms: int = 0
    last_error: str | None = None


class QueueAdapter(Protocol):
    """Durable named queues: ready → reserved (in flight) → acked, retried later, parked or dead-lettered.

    A parked message waits for its function to be registered again: no delivery is tried until
    `unpark` makes it ready, or until `expire_parked` dead-letters it once its horizon has passed.
    In a FIFO queue a parked message holds back the ones behind it, as one being retried does.
    """

    async def enqueue(self, message: QueueMessage, *, visible_at_ms: int = 0) -> None: ...

    async def reserve(self, queue: str, limit: int, now_ms: int, *, fifo: bool = False) -> list[QueueMessage]:
        """Take up to `limit` visible messages, mark them in flight and count the delivery.

        With `fifo`, only the oldest message may be taken, and only once it is visible, so a
        message being retried blocks the ones behind it.
        """
        ...

    async def ack(self, message_id: str) -> None: ...

    async def retry(self, message_id: str, visible_at_ms: int, error: str) -> None:
        """Return an in-flight message to the queue, invisible until `visible_at_ms`."""
        ...

    async def dead_letter(self, message_id: str, error: str) -> None: ...

    async def park(self, message_id: str, until_ms: int, error: str) -> None:
        """Set an in-flight message aside until `unpark` or `until_ms`; the delivery is not counted."""
        ...

    async def unpark(self, namespace: str, function_id: str) -> list[str]:
        """Make the messages parked for this function ready now; returns the queues they are in."""
        ...

    async def parked(self) -> dict[tuple[str, str], int]:
        """Each (namespace, function_id) that has parked messages, with the earliest `until_ms` among them."""
        ...

    async def expire_parked(self, namespace: str, function_id: str, now_ms: int, error: str) -> list[str]:
        """Dead-letter this function's parked messages whose `until_ms` is past, with `error`; returns their queues."""
        ...

    async def recover(self) -> int:
        """Make every in-flight message ready again (after a crash or restart); returns how many."""
        ...

    async def queues(self) -> list[str]:
        """Names of queues that hold ready, in-flight or dead-lettered messages."""
        ...

    async def stats(self, queue: str) -> dict[str, int]:
        """`{ready, in_flight, dead}` counts; parked messages are waiting to be delivered, so count as ready."""
        ...

    async def dead_letters(self, queue: str, offset: int = 0, limit: int = 50) -> list[QueueMessage]: ...

    async def redrive(self, queue: str, message_id: str | None = None) -> int:
        """Move dead-lettered messages (all, or one) back to ready with attempts reset; returns how many."""
        ...

    async def discard(self, queue: str, message_id: str) -> bool: ...


class StreamAdapter(Protocol):
    """Items addressed by (stream, group, item)."""

    async def get(self, stream: str, group: str, item: str) -> Any | None: ...

    async def set(self, stream: str, group: str, item: str, data: Any) -> Any | None:
        """Store and return the previous value."""
        ...

    async def delete(self, stream: str, group: str, item: str) -> Any | None: ...

    async def list(self, stream: str, group: str) -> list[Any]: ...

    async def groups(self, stream: str) -> builtins.list[str]: ...

    async def streams(self) -> builtins.list[dict[str, Any]]:
        """`[{id, groups:[...]}]` for every stream that holds items."""
        ...


PubSubHandler = Callable[[Any], Awaitable[None]]


class PubSubAdapter(Protocol):
    """Fire-and-forget fan-out of a topic's messages to every subscriber."""

    async def publish(self, topic: str, data: Any) -> None: ...

    def subscribe(self, topic: str, handler: PubSubHandler) -> Callable[[], None]: ...


class LockAdapter(Protocol):
    """Leases that expire, so a crashed holder never blocks forever."""

    async def acquire(self, name: str, owner: str, ttl_ms: int) -> bool: ...

    async def release(self, name: str, owner: str) -> None: ...


@dataclass(slots=True)
class Storage:
    """The adapters one engine uses, opened and closed together."""

    state: StateAdapter
    queues: QueueAdapter
    streams: StreamAdapter
    pubsub: PubSubAdapter
    locks: LockAdapter
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self.closers:
            await close()
