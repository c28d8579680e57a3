"""`session-inbox::*`: named lists of items per session (follow-ups, steering), pushed and drained atomically.

An inbox is one value in state scope `session_inbox` under `<session_id>/<name>`, each item wrapped as `{item}`.
"""

from __future__ import annotations

from typing import Any

from teamster.harness.contracts import Drained
from teamster.harness.owned import OwnedCache
from teamster.harness.sessions.requests import InboxPush, InboxRef, Ok
from teamster.harness.sessions.store import SessionStore
from teamster.protocol.handles import handles
from teamster.sdk import Worker

INBOX_SCOPE = "session_inbox"


def inbox_key(session_id: str, name: str) -> str:
    return f"{session_id}/{name}"


def unwrap(stored: Any) -> list[Any]:
    """Inbox items from their stored `{item}` wrappers."""
    return [wrapped["item"] for wrapped in stored or []]


class EmptyInboxes:
    """Inboxes known to be empty: this worker is their only writer, so draining one of them needs no read."""

    def __init__(self, worker: Worker) -> None:
        self._known: OwnedCache[bool] = OwnedCache(worker)
        self.pushes = 0  # counts every push: one during a drain leaves that drain's inbox unknown

    def __contains__(self, key: str) -> bool:
        return self._known.get(key) is not None

    def pushing(self, key: str) -> None:
        self.pushes += 1
        self._known.discard(key)

    def emptied(self, key: str, pushes_before: int) -> None:
        """`key` was found or left empty by a drain that began when `pushes` was `pushes_before`."""
        if self.pushes == pushes_before:
            self._known.put(key, True)


class SessionInboxes:
    """The `session-inbox::*` handlers."""

    def __init__(self, worker: Worker, store: SessionStore) -> None:
        self.worker = worker
        self.store = store
        self.empty = EmptyInboxes(worker)

    @handles("session-inbox::push")
    async def push(self, req: InboxPush) -> Ok:
        """Add an item to the end of a session inbox."""
        key = inbox_key(req.session_id, req.name)
        self.empty.pushing(key)
        # Each item is wrapped: an `append` onto a missing value would concatenate bare strings.
        await self.store.update(INBOX_SCOPE, key, {"type": "append", "value": {"item": req.item}})
        return Ok()

    @handles("session-inbox::peek")
    async def peek(self, req: InboxRef) -> Drained:
        """The items of a session inbox, leaving them there."""
        key = inbox_key(req.session_id, req.name)
        if key in self.empty:
            return Drained(items=[])
        stored = await self.worker.trigger("state::get", {"scope": INBOX_SCOPE, "key": key})
        return Drained(items=unwrap(stored))

    @handles("session-inbox::drain")
    async def drain(self, req: InboxRef) -> Drained:
        """Take every item of a session inbox, atomically."""
        key = inbox_key(req.session_id, req.name)
        if key in self.empty:
            return Drained(items=[])  # the usual case: no read, no write
        pushes = self.empty.pushes
        if not await self.worker.trigger("state::get", {"scope": INBOX_SCOPE, "key": key}):
            self.empty.emptied(key, pushes)
            return Drained(items=[])  # read without a write; an item pushed now waits for the next drain
        old = await self.store.update(INBOX_SCOPE, key, {"type": "set", "value": []})
        self.empty.emptied(key, pushes)
        return Drained(items=unwrap(old))
