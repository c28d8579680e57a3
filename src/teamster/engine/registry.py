"""Functions keyed by (namespace, id), each with exactly one live owner (§3.3)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from teamster.engine.connection import Connection
    from teamster.engine.rbac import Session

log = logging.getLogger("teamster.engine")


@dataclass(slots=True, frozen=True)
class Lineage:
    """observe.v1's view of where a call stands: `caller` (the calling worker, stamped by the engine,
    and the handler it calls from), `observe_depth` (observer activations between it and the first
    call: the loop guard) and `activation` (the observer activation it delivers, if any)."""

    caller: dict[str, Any] | None = None
    observe_depth: int = 0
    activation: dict[str, Any] | None = None


@dataclass(slots=True)
class Invocation:
    """One call as an executor sees it."""

    function_id: str
    invocation_id: str
    data: Any
    metadata: Any = None
    namespace: str = "default"
    traceparent: str | None = None
    baggage: str | None = None
    caller: Connection | None = None  # None for trigger-fired and engine-internal calls
    lineage: Lineage | None = None  # observe.v1 fields, when the call carries any

    @property
    def session(self) -> Session | None:
        """The caller's session; None for in-process workers, trigger-fired and engine-internal calls."""
        return self.caller.session if self.caller is not None else None


Executor = Callable[[Invocation], Awaitable[Any]]


@dataclass(slots=True)
class FunctionEntry:
    id: str
    namespace: str
    execute: Executor
    owner: Connection | None = None  # None: an engine built-in
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: dict[str, Any] | None = None
    registered_at_ms: int = 0

    @property
    def worker_name(self) -> str:
        return self.owner.name if self.owner is not None else "engine"


class Conflict(Exception):
    """Another live owner holds the id."""

    def __init__(self, owner_worker_id: str) -> None:
        super().__init__(owner_worker_id)
        self.owner_worker_id = owner_worker_id


RegistrationWatcher = Callable[[FunctionEntry], None]


class FunctionRegistry:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], FunctionEntry] = {}
        self._watchers: list[RegistrationWatcher] = []
        self.version = 0  # bumped on every change, so pollers can tell the catalogue moved

    def watch(self, watcher: RegistrationWatcher) -> Callable[[], None]:
        """Call `watcher` with every entry claimed from now on, the moment it is stored, so whatever
        waits for a function (a parked queue message) goes on at once; returns a function that stops it."""
        self._watchers.append(watcher)

        def stop() -> None:
            with suppress(ValueError):
                self._watchers.remove(watcher)

        return stop

    def get(self, namespace: str, function_id: str) -> FunctionEntry | None:
        return self._entries.get((namespace, function_id))

    def namespaces_of(self, function_id: str) -> list[str]:
        return sorted(ns for ns, fid in self._entries if fid == function_id)

    def claim(self, entry: FunctionEntry) -> None:
        """Store `entry` unless a different live owner (or the engine) holds the id; raise Conflict then."""
        key = (entry.namespace, entry.id)
        current = self._entries.get(key)
        if current is not None and current.owner is not entry.owner:
            if current.owner is None:
                raise Conflict("")
            if not current.owner.closing:
                raise Conflict(current.owner.worker_id)
        self._entries[key] = entry
        self.version += 1
        for watcher in tuple(self._watchers):
            try:
                watcher(entry)
            except Exception:  # a watcher's bug must not refuse the worker its registration
                log.exception("registration watcher failed on %s", entry.id)

    def release(self, namespace: str, function_id: str, owner: Connection | None) -> bool:
        """Remove the id only while `owner` still holds it (a taken-over id stays with its new owner)."""
        key = (namespace, function_id)
        current = self._entries.get(key)
        if current is None or current.owner is not owner:
            return False
        del self._entries[key]
        self.version += 1
        return True

    def all(self) -> list[FunctionEntry]:
        return list(self._entries.values())
