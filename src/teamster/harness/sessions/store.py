"""The session worker's reads and writes, all through `state::*`.

Entries are stored one per key in scope `session_tree:<sid>`, and each session's SessionMeta in scope
`session_tree_meta`. This worker is their only writer, so recent sessions' entries are read back from
memory, and appends to one session run one at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from teamster.harness.owned import OwnedCache
from teamster.harness.sessions.entries import ENTRIES, ENTRY, MessageEntry, SessionEntry, SessionMeta
from teamster.harness.sessions.tree import (
    active_leaf,
    entry_order,
    leaf_count,
    message_summary,
    new_entry_id,
)
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode, InvocationError
from teamster.sdk import Worker
from teamster.sdk.keyed_lock import KeyedLock
from teamster.sdk.state import update_state

META_SCOPE = "session_tree_meta"
ENTRIES_REMEMBERED = 256  # sessions whose entries the worker keeps in memory (it is their only writer)


def entries_scope(session_id: str) -> str:
    return f"session_tree:{session_id}"


class SessionStore:
    """Sessions' entries and records in state, with the per-session append lock and the entry cache."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        # Appends to one session run one at a time: two writers (a turn and a compaction) picking the
        # same leaf as parent would fork the session, hiding one of the two entries from the active path.
        self._appending = KeyedLock()
        # This worker is the only writer of entries: recent sessions are read back from memory.
        self._entries: OwnedCache[list[SessionEntry]] = OwnedCache(worker, size=ENTRIES_REMEMBERED)

    async def entries(self, session_id: str) -> list[SessionEntry]:
        """Every entry, sorted by (timestamp, id): state::list returns values in no useful order."""
        cached = self._entries.get(session_id)
        if cached is not None:
            return list(cached)
        rows = await self.worker.trigger("state::list", {"scope": entries_scope(session_id)})
        entries = sorted(ENTRIES.validate_python(rows), key=entry_order)
        self._entries.put(session_id, entries)
        return list(entries)

    async def meta(self, session_id: str) -> SessionMeta | None:
        stored = await self.worker.trigger("state::get", {"scope": META_SCOPE, "key": session_id})
        return None if stored is None else SessionMeta.model_validate(stored)

    async def metas(self) -> list[SessionMeta]:
        rows = await self.worker.trigger("state::list", {"scope": META_SCOPE})
        return [SessionMeta.model_validate(row) for row in rows]

    async def source(self, session_id: str) -> tuple[SessionMeta, list[SessionEntry]]:
        """A session to copy from: its meta and entries; session_not_found when it does not exist."""
        meta = await self.meta(session_id)
        if meta is None:
            raise InvocationError(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id}")
        return meta, await self.entries(session_id)

    async def update(self, scope: str, key: str, *ops: dict[str, Any]) -> Any:
        """Apply `ops` atomically; returns the old value."""
        return (await update_state(self.worker, scope, key, *ops)).old_value

    async def parent(self, session_id: str | None) -> str | None:
        """`session_id` when it names an existing session (or is None); session_not_found otherwise."""
        if session_id is not None and await self.meta(session_id) is None:
            raise InvocationError(ErrorCode.SESSION_NOT_FOUND, f"no parent session {session_id}")
        return session_id

    async def ensure(
        self, session_id: str, display_name: str | None, cwd: str | None, parent: str | None = None
    ) -> None:
        if await self.meta(session_id) is not None:
            return
        now = now_ms()
        fields = {
            "session_id": session_id,
            "display_name": display_name,
            "cwd": cwd,
            "parent_session_id": parent,
            "created_at": now,
        }
        # Merge and zero increments rather than a plain set: an append racing with this must keep its counts.
        await self.update(
            META_SCOPE,
            session_id,
            {"type": "merge", "value": {k: v for k, v in fields.items() if v is not None}},
            {"type": "set", "path": "updated_at", "value": now},
            {"type": "increment", "path": "entry_count", "by": 0},
            {"type": "increment", "path": "branch_count", "by": 0},
        )

    async def append(
        self, session_id: str, parent_id: str | None, bodies: list[dict[str, Any]], entry_ids: Sequence[str | None]
    ) -> list[str]:
        """Chain `bodies` under `parent_id` (default: the active leaf); ids that already exist are not rewritten."""
        async with self._appending.hold(session_id):
            return await self._append(session_id, parent_id, bodies, entry_ids)

    async def _append(
        self, session_id: str, parent_id: str | None, bodies: list[dict[str, Any]], entry_ids: Sequence[str | None]
    ) -> list[str]:
        known = await self.entries(session_id)
        if not known:
            await self.ensure(session_id, None, None)
        by_id = {e.id for e in known}
        parent = parent_id if parent_id is not None else active_leaf(known)
        if parent is not None and parent not in by_id:
            raise InvocationError(ErrorCode.ENTRY_NOT_FOUND, f"no entry {parent} in {session_id}")
        timestamp = now_ms()
        ids: list[str] = []
        new: list[SessionEntry] = []
        for body, given in zip(bodies, entry_ids, strict=True):
            entry_id = given or new_entry_id()
            if entry_id not in by_id:
                new.append(ENTRY.validate_python({**body, "id": entry_id, "parent_id": parent, "timestamp": timestamp}))
            ids.append(entry_id)
            parent = entry_id
        await self.write(session_id, known, new)
        return ids

    async def copy_into(self, source: SessionMeta, suffix: str, copies: list[SessionEntry]) -> str:
        """A new session named "<source name> (<suffix>)" holding `copies`; returns its id."""
        session_id = str(uuid.uuid4())
        await self.ensure(session_id, f"{source.display_name or source.session_id} ({suffix})", source.cwd)
        await self.write(session_id, [], copies)
        return session_id

    async def write(self, session_id: str, known: list[SessionEntry], new: list[SessionEntry]) -> None:
        """Store `new` entries, then bring the meta's counts, summary and updated_at along."""
        if not new:
            return
        scope = entries_scope(session_id)
        self._entries.discard(session_id)  # until every write is known to have landed
        replies = await asyncio.gather(
            *(
                self.worker.trigger("state::set", {"scope": scope, "key": e.id, "value": e.model_dump(mode="json")})
                for e in new
            )
        )
        written = {e.id for e in new}
        self._entries.put(session_id, sorted([*(e for e in known if e.id not in written), *new], key=entry_order))
        # A concurrent redelivery may have written the same id first: only keys created here count.
        created = sum(1 for reply in replies if reply.get("old_value") is None)
        ops: list[dict[str, Any]] = [
            {"type": "set", "path": "updated_at", "value": now_ms()},
            {"type": "increment", "path": "entry_count", "by": created},
            {"type": "increment", "path": "branch_count", "by": leaf_count([*known, *new]) - leaf_count(known)},
        ]
        last_message = next((e.message for e in reversed(new) if isinstance(e, MessageEntry)), None)
        if last_message is not None:
            summary = message_summary(last_message)
            ops.append(
                {"type": "remove", "path": "last_message_summary"}
                if summary is None
                else {"type": "set", "path": "last_message_summary", "value": summary}
            )
        await self.update(META_SCOPE, session_id, *ops)
