"""`session-tree::*`: create, append to, read, fork, clone, compact and export session trees (§7.1)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from teamster.harness.contracts import Transcript, Written
from teamster.harness.sessions.entries import BranchSummaryEntry, CompactionEntry, SessionEntry, SessionMeta
from teamster.harness.sessions.export import render_html
from teamster.harness.sessions.requests import (
    Append,
    AppendBatch,
    BranchRead,
    Clone,
    Compact,
    Compactions,
    EnsureSession,
    EntryRefs,
    Fork,
    Html,
    ListSessions,
    NewSession,
    SessionId,
    SessionList,
    SessionRef,
)
from teamster.harness.sessions.store import SessionStore
from teamster.harness.sessions.tree import (
    active_path,
    build_tree,
    new_entry_id,
    remap,
    visible,
)
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode, InvocationError
from teamster.protocol.handles import handles

FORK_SUMMARY_THRESHOLD = 50  # a fork of a longer path starts from one branch_summary entry


class SessionTrees:
    """The `session-tree::*` handlers over one `SessionStore`."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    @handles("session-tree::create")
    async def create(self, req: NewSession) -> SessionRef:
        """Create an empty session with a fresh id (a child of parent_session_id when given)."""
        session_id = str(uuid.uuid4())
        await self.store.ensure(session_id, req.display_name, req.cwd, await self.store.parent(req.parent_session_id))
        return SessionRef(session_id=session_id)

    @handles("session-tree::ensure")
    async def ensure(self, req: EnsureSession) -> SessionRef:
        """Create the session with this id unless it exists; an existing session keeps its parent."""
        parent = await self.store.parent(req.parent_session_id)
        await self.store.ensure(req.session_id, req.display_name, req.cwd, parent)
        return SessionRef(session_id=req.session_id)

    @handles("session-tree::append")
    async def append(self, req: Append) -> Written:
        """Append a message entry (under the active leaf unless parent_id is given)."""
        body = {"type": "message", "message": req.message}
        [entry_id] = await self.store.append(req.session_id, req.parent_id, [body], [req.entry_id])
        return Written(entry_id=entry_id)

    @handles("session-tree::append_batch")
    async def append_batch(self, req: AppendBatch) -> EntryRefs:
        """Append messages as one chain sharing one timestamp."""
        bodies = [{"type": "message", "message": message} for message in req.messages]
        ids: Sequence[str | None] = req.entry_ids or [None] * len(bodies)
        return EntryRefs(entry_ids=await self.store.append(req.session_id, req.parent_id, bodies, ids))

    @handles("session-tree::messages")
    async def messages(self, req: BranchRead) -> Transcript:
        """The messages on a branch as a model sees them, oldest first: compacted history is its summary."""
        return Transcript(messages=visible(active_path(await self.store.entries(req.session_id), req.branch_leaf)))

    @handles("session-tree::list")
    async def list_sessions(self, req: ListSessions) -> SessionList:
        """Sessions by last update (newest first unless order is asc), paged."""
        metas = await self.store.metas()
        metas.sort(key=lambda m: (m.updated_at, m.created_at, m.session_id), reverse=req.order == "desc")
        end = None if req.limit is None else req.offset + req.limit
        return SessionList(sessions=metas[req.offset : end], total=len(metas))

    @handles("session-tree::get")
    async def get(self, req: SessionId) -> SessionMeta | None:
        """One session's record, or null when there is no such session."""
        return await self.store.meta(req.session_id)

    @handles("session-tree::children")
    async def children(self, req: SessionId) -> SessionList:
        """The sessions created as children of this one, oldest first."""
        found = [m for m in await self.store.metas() if m.parent_session_id == req.session_id]
        found.sort(key=lambda m: (m.created_at, m.session_id))
        return SessionList(sessions=found, total=len(found))

    @handles("session-tree::tree")
    async def tree(self, req: SessionId) -> dict[str, Any] | None:
        """The session as nested {entry, children} from its root; null when it has no entries."""
        return build_tree(await self.store.entries(req.session_id))

    @handles("session-tree::fork")
    async def fork(self, req: Fork) -> SessionRef:
        """A new session holding the path up to from_entry_id (or one branch_summary when it is long)."""
        meta, entries = await self.store.source(req.source_session_id)
        if req.from_entry_id not in {e.id for e in entries}:
            raise InvocationError(ErrorCode.ENTRY_NOT_FOUND, f"no entry {req.from_entry_id} in {req.source_session_id}")
        path = active_path(entries, req.from_entry_id)
        copies: list[SessionEntry]
        if len(path) > FORK_SUMMARY_THRESHOLD:
            summary = (
                f"Forked from session {req.source_session_id} at entry {req.from_entry_id}: "
                f"{len(path)} entries collapsed."
            )
            copies = [
                BranchSummaryEntry(
                    id=new_entry_id(), parent_id=None, timestamp=now_ms(), summary=summary, from_id=req.from_entry_id
                )
            ]
        else:
            copies = remap(path)
        return SessionRef(session_id=await self.store.copy_into(meta, "fork", copies))

    @handles("session-tree::clone")
    async def clone(self, req: Clone) -> SessionRef:
        """A new session holding a copy of every entry, with new ids."""
        meta, entries = await self.store.source(req.source_session_id)
        return SessionRef(session_id=await self.store.copy_into(meta, "clone", remap(entries)))

    @handles("session-tree::compact")
    async def compact(self, req: Compact) -> Written:
        """Append a compaction entry (under the active leaf unless parent_id is given)."""
        body = req.model_dump(include={"summary", "tokens_before", "details", "tail_start_id"})
        body["type"] = "compaction"
        [entry_id] = await self.store.append(req.session_id, req.parent_id, [body], [req.entry_id])
        return Written(entry_id=entry_id)

    @handles("session-tree::compactions")
    async def compactions(self, req: SessionId) -> Compactions:
        """Every compaction entry of the session, oldest first."""
        entries = await self.store.entries(req.session_id)
        return Compactions(entries=[e for e in entries if isinstance(e, CompactionEntry)])

    @handles("session-tree::export_html")
    async def export_html(self, req: BranchRead) -> Html:
        """A standalone HTML page showing one branch."""
        meta = await self.store.meta(req.session_id)
        path = active_path(await self.store.entries(req.session_id), req.branch_leaf)
        title = meta.display_name if meta is not None and meta.display_name else req.session_id
        return Html(html=render_html(title, path))
