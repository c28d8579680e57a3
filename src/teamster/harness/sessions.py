"""The `session` worker: session trees (`session-tree::*`) and session inboxes (`session-inbox::*`), §7.1.

A session is a tree of entries stored one per key in scope `session_tree:<sid>`, plus one SessionMeta in
scope `session_tree_meta`. Nothing points at the active branch: the active leaf is the newest entry that
no other entry names as its parent, and every read takes an optional `branch_leaf` to pick another.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, model_validator

from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    ContentBlock,
    FunctionCallBlock,
    Shape,
    TextBlock,
    ThinkingBlock,
    UserMessage,
)
from teamster.harness.owned import OwnedCache
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode, InvocationError
from teamster.sdk import Worker
from teamster.sdk.keyed_lock import KeyedLock
from teamster.sdk.state import update_state

META_SCOPE = "session_tree_meta"
INBOX_SCOPE = "session_inbox"
FORK_SUMMARY_THRESHOLD = 50  # a fork of a longer path starts from one branch_summary entry
SUMMARY_CHARS = 80
ENTRIES_REMEMBERED = 256  # sessions whose entries the worker keeps in memory (it is their only writer)
COMPACTED_PREFIX = "The conversation before this point was compacted into this summary:"


def entries_scope(session_id: str) -> str:
    return f"session_tree:{session_id}"


def inbox_key(session_id: str, name: str) -> str:
    return f"{session_id}/{name}"


# ---- stored shapes ---------------------------------------------------------------------------


class EntryBase(Shape):
    id: str
    parent_id: str | None
    timestamp: int


class MessageEntry(EntryBase):
    type: Literal["message"] = "message"
    message: AgentMessage


class CustomMessageEntry(EntryBase):
    type: Literal["custom_message"] = "custom_message"
    custom_type: str
    content: Any = None
    display: bool | None = None
    details: Any = None


class BranchSummaryEntry(EntryBase):
    type: Literal["branch_summary"] = "branch_summary"
    summary: str
    from_id: str


class CompactionDetails(Shape):
    model_config = ConfigDict(extra="allow")

    read_files: list[str] | None = None
    modified_files: list[str] | None = None


class CompactionEntry(EntryBase):
    type: Literal["compaction"] = "compaction"
    summary: str
    tokens_before: int = 0
    tail_start_id: str | None = None
    details: CompactionDetails = Field(default_factory=CompactionDetails)


SessionEntry = Annotated[
    MessageEntry | CustomMessageEntry | BranchSummaryEntry | CompactionEntry, Field(discriminator="type")
]
_ENTRY: TypeAdapter[SessionEntry] = TypeAdapter(SessionEntry)
_ENTRIES: TypeAdapter[list[SessionEntry]] = TypeAdapter(list[SessionEntry])


class SessionMeta(Shape):
    """One session's record; also the row `session-tree::list` returns."""

    session_id: str
    display_name: str | None = None
    cwd: str | None = None
    parent_session_id: str | None = None  # set at creation: a child session (e.g. one agent of a team)
    created_at: int
    updated_at: int
    branch_count: int = 0
    entry_count: int = 0
    last_message_summary: str | None = None


# ---- requests and replies --------------------------------------------------------------------


class SessionId(Shape):
    session_id: str = Field(min_length=1)


class NewSession(Shape):
    display_name: str | None = None
    cwd: str | None = None
    parent_session_id: str | None = Field(default=None, min_length=1)


class EnsureSession(SessionId, NewSession):
    pass


class BranchRead(SessionId):
    branch_leaf: str | None = None


class Append(SessionId):
    parent_id: str | None = None
    message: AgentMessage
    entry_id: str | None = Field(default=None, min_length=1)


class AppendBatch(SessionId):
    parent_id: str | None = None
    messages: list[AgentMessage]
    entry_ids: list[str] | None = None

    @model_validator(mode="after")
    def _one_id_per_message(self) -> AppendBatch:
        if self.entry_ids is not None and len(self.entry_ids) != len(self.messages):
            raise ValueError("entry_ids must have one id per message")
        if self.entry_ids is not None and len(set(self.entry_ids)) != len(self.entry_ids):
            raise ValueError("entry_ids must be distinct")
        return self


class Compact(SessionId):
    summary: str
    tokens_before: int = 0
    details: CompactionDetails = Field(default_factory=CompactionDetails)
    parent_id: str | None = None
    tail_start_id: str | None = None
    entry_id: str | None = Field(default=None, min_length=1)


class ListSessions(Shape):
    limit: int | None = Field(default=None, ge=0)
    offset: int = Field(default=0, ge=0)
    order: Literal["asc", "desc"] = "desc"


class Fork(Shape):
    source_session_id: str = Field(min_length=1)
    from_entry_id: str = Field(min_length=1)


class Clone(Shape):
    source_session_id: str = Field(min_length=1)


class InboxRef(SessionId):
    name: str = Field(min_length=1, pattern=r"^[^/]+$")


class InboxPush(InboxRef):
    item: Any = None


class SessionRef(Shape):
    session_id: str


class EntryRef(Shape):
    entry_id: str


class EntryRefs(Shape):
    entry_ids: list[str]


class PathMessage(Shape):
    entry_id: str
    message: AgentMessage


class Messages(Shape):
    messages: list[PathMessage]


class SessionList(Shape):
    sessions: list[SessionMeta]
    total: int


class Compactions(Shape):
    entries: list[CompactionEntry]


class Html(Shape):
    html: str


class Ok(Shape):
    ok: bool = True


class Items(Shape):
    items: list[Any]


# ---- the worker ------------------------------------------------------------------------------


def create_worker() -> Worker:
    """The `session` worker, ready to connect or attach."""
    worker = Worker("session", description="Session trees and inboxes")
    store = _Store(worker)
    empty = _EmptyInboxes(worker)

    @worker.function("session-tree::create")
    async def create(req: NewSession) -> SessionRef:
        """Create an empty session with a fresh id (a child of parent_session_id when given)."""
        session_id = str(uuid.uuid4())
        await store.ensure(session_id, req.display_name, req.cwd, await store.parent(req.parent_session_id))
        return SessionRef(session_id=session_id)

    @worker.function("session-tree::ensure")
    async def ensure(req: EnsureSession) -> SessionRef:
        """Create the session with this id unless it exists; an existing session keeps its parent."""
        await store.ensure(req.session_id, req.display_name, req.cwd, await store.parent(req.parent_session_id))
        return SessionRef(session_id=req.session_id)

    @worker.function("session-tree::append")
    async def append(req: Append) -> EntryRef:
        """Append a message entry (under the active leaf unless parent_id is given)."""
        body = {"type": "message", "message": req.message}
        [entry_id] = await store.append(req.session_id, req.parent_id, [body], [req.entry_id])
        return EntryRef(entry_id=entry_id)

    @worker.function("session-tree::append_batch")
    async def append_batch(req: AppendBatch) -> EntryRefs:
        """Append messages as one chain sharing one timestamp."""
        bodies = [{"type": "message", "message": message} for message in req.messages]
        ids: Sequence[str | None] = req.entry_ids or [None] * len(bodies)
        return EntryRefs(entry_ids=await store.append(req.session_id, req.parent_id, bodies, ids))

    @worker.function("session-tree::messages")
    async def messages(req: BranchRead) -> Messages:
        """The messages on a branch as a model sees them, oldest first: compacted history is its summary."""
        return Messages(messages=visible(active_path(await store.entries(req.session_id), req.branch_leaf)))

    @worker.function("session-tree::list")
    async def list_sessions(req: ListSessions) -> SessionList:
        """Sessions by last update (newest first unless order is asc), paged."""
        metas = await store.metas()
        metas.sort(key=lambda m: (m.updated_at, m.created_at, m.session_id), reverse=req.order == "desc")
        end = None if req.limit is None else req.offset + req.limit
        return SessionList(sessions=metas[req.offset : end], total=len(metas))

    @worker.function("session-tree::get")
    async def get(req: SessionId) -> SessionMeta | None:
        """One session's record, or null when there is no such session."""
        return await store.meta(req.session_id)

    @worker.function("session-tree::children")
    async def children(req: SessionId) -> SessionList:
        """The sessions created as children of this one, oldest first."""
        found = [m for m in await store.metas() if m.parent_session_id == req.session_id]
        found.sort(key=lambda m: (m.created_at, m.session_id))
        return SessionList(sessions=found, total=len(found))

    @worker.function("session-tree::tree")
    async def tree(req: SessionId) -> dict[str, Any] | None:
        """The session as nested {entry, children} from its root; null when it has no entries."""
        return build_tree(await store.entries(req.session_id))

    @worker.function("session-tree::fork")
    async def fork(req: Fork) -> SessionRef:
        """A new session holding the path up to from_entry_id (or one branch_summary when it is long)."""
        meta, entries = await store.source(req.source_session_id)
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
        return SessionRef(session_id=await store.copy_into(meta, "fork", copies))

    @worker.function("session-tree::clone")
    async def clone(req: Clone) -> SessionRef:
        """A new session holding a copy of every entry, with new ids."""
        meta, entries = await store.source(req.source_session_id)
        return SessionRef(session_id=await store.copy_into(meta, "clone", remap(entries)))

    @worker.function("session-tree::compact")
    async def compact(req: Compact) -> EntryRef:
        """Append a compaction entry (under the active leaf unless parent_id is given)."""
        body = req.model_dump(include={"summary", "tokens_before", "details", "tail_start_id"})
        [entry_id] = await store.append(req.session_id, req.parent_id, [{**body, "type": "compaction"}], [req.entry_id])
        return EntryRef(entry_id=entry_id)

    @worker.function("session-tree::compactions")
    async def compactions(req: SessionId) -> Compactions:
        """Every compaction entry of the session, oldest first."""
        entries = await store.entries(req.session_id)
        return Compactions(entries=[e for e in entries if isinstance(e, CompactionEntry)])

    @worker.function("session-tree::export_html")
    async def export_html(req: BranchRead) -> Html:
        """A standalone HTML page showing one branch."""
        meta = await store.meta(req.session_id)
        path = active_path(await store.entries(req.session_id), req.branch_leaf)
        title = meta.display_name if meta is not None and meta.display_name else req.session_id
        return Html(html=render_html(title, path))

    @worker.function("session-inbox::push")
    async def push(req: InboxPush) -> Ok:
        """Add an item to the end of a session inbox."""
        key = inbox_key(req.session_id, req.name)
        empty.pushing(key)
        # Each item is wrapped: an `append` onto a missing value would concatenate bare strings.
        await store.update(INBOX_SCOPE, key, {"type": "append", "value": {"item": req.item}})
        return Ok()

    @worker.function("session-inbox::peek")
    async def peek(req: InboxRef) -> Items:
        """The items of a session inbox, leaving them there."""
        key = inbox_key(req.session_id, req.name)
        if key in empty:
            return Items(items=[])
        stored = await worker.trigger("state::get", {"scope": INBOX_SCOPE, "key": key})
        return Items(items=unwrap(stored))

    @worker.function("session-inbox::drain")
    async def drain(req: InboxRef) -> Items:
        """Take every item of a session inbox, atomically."""
        key = inbox_key(req.session_id, req.name)
        if key in empty:
            return Items(items=[])  # the usual case: no read, no write
        pushes = empty.pushes
        if not await worker.trigger("state::get", {"scope": INBOX_SCOPE, "key": key}):
            empty.emptied(key, pushes)
            return Items(items=[])  # read without a write; an item pushed now waits for the next drain
        old = await store.update(INBOX_SCOPE, key, {"type": "set", "value": []})
        empty.emptied(key, pushes)
        return Items(items=unwrap(old))

    return worker


class _EmptyInboxes:
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


class _Store:
    """The session worker's reads and writes, all through `state::*`."""

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
        entries = sorted(_ENTRIES.validate_python(rows), key=_entry_order)
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
                new.append(
                    _ENTRY.validate_python({**body, "id": entry_id, "parent_id": parent, "timestamp": timestamp})
                )
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
        self._entries.put(session_id, sorted([*(e for e in known if e.id not in written), *new], key=_entry_order))
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


# ---- tree logic ------------------------------------------------------------------------------


def _entry_order(entry: SessionEntry) -> tuple[int, str]:
    return entry.timestamp, entry.id


class _EntryIds:
    """Entry ids that sort in creation order: wall-clock nanoseconds, forced upward, then a per-process tag."""

    def __init__(self) -> None:
        self._last = 0
        self._tag = uuid.uuid4().hex[:8]

    def __call__(self) -> str:
        self._last = max(time.time_ns(), self._last + 1)
        return f"{self._last:020d}-{self._tag}"


new_entry_id = _EntryIds()


def active_leaf(entries: list[SessionEntry]) -> str | None:
    """The newest entry that is nobody's parent (entries sorted oldest first)."""
    parents = {e.parent_id for e in entries}
    return next((e.id for e in reversed(entries) if e.id not in parents), None)


def leaf_count(entries: list[SessionEntry]) -> int:
    parents = {e.parent_id for e in entries}
    return sum(1 for e in entries if e.id not in parents)


def active_path(entries: list[SessionEntry], leaf: str | None) -> list[SessionEntry]:
    """Root to `leaf` (default: the active leaf) by parent_id links."""
    by_id = {e.id: e for e in entries}
    cursor = leaf if leaf is not None else active_leaf(entries)
    if cursor is not None and cursor not in by_id:
        raise InvocationError(ErrorCode.ENTRY_NOT_FOUND, f"no entry {cursor}")
    path: list[SessionEntry] = []
    while cursor is not None and cursor in by_id and len(path) <= len(by_id):  # the bound stops a corrupt cycle
        entry = by_id[cursor]
        path.append(entry)
        cursor = entry.parent_id
    path.reverse()
    return path


def build_tree(entries: list[SessionEntry]) -> dict[str, Any] | None:
    """Nested {entry, children} from the oldest root; children oldest first. Built without recursion."""
    nodes: dict[str, dict[str, Any]] = {e.id: {"entry": e.model_dump(mode="json"), "children": []} for e in entries}
    roots: list[dict[str, Any]] = []
    for e in entries:
        parent = nodes.get(e.parent_id) if e.parent_id is not None else None
        (roots if parent is None else parent["children"]).append(nodes[e.id])
    return roots[0] if roots else None


def visible(path: list[SessionEntry]) -> list[PathMessage]:
    """The path's messages, cut at its newest compaction: that summary, then the kept tail and all that followed.

    A compaction cuts only when its tail_start_id names an entry earlier on the path; without one it is a
    record, and dropping the messages before it would lose history the summary may not cover.
    """
    positions = {e.id: i for i, e in enumerate(path)}
    for at in range(len(path) - 1, -1, -1):
        entry = path[at]
        if not isinstance(entry, CompactionEntry) or entry.tail_start_id is None:
            continue
        start = positions.get(entry.tail_start_id, at)
        if start < at:
            summary = UserMessage(content=f"{COMPACTED_PREFIX}\n\n{entry.summary}", timestamp=entry.timestamp)
            return [
                PathMessage(entry_id=entry.id, message=summary),
                *(PathMessage(entry_id=e.id, message=e.message) for e in path[start:] if isinstance(e, MessageEntry)),
            ]
    return [PathMessage(entry_id=e.id, message=e.message) for e in path if isinstance(e, MessageEntry)]


def remap(entries: list[SessionEntry]) -> list[SessionEntry]:
    """Copies with fresh ids, links (and compaction tails) pointing at the copies; entries oldest first."""
    ids = {e.id: new_entry_id() for e in entries}
    copies: list[SessionEntry] = []
    for e in entries:
        update: dict[str, Any] = {"id": ids[e.id], "parent_id": ids.get(e.parent_id) if e.parent_id else None}
        if isinstance(e, CompactionEntry) and e.tail_start_id in ids:
            update["tail_start_id"] = ids[e.tail_start_id]
        copies.append(e.model_copy(update=update, deep=True))
    return copies


def message_summary(message: AgentMessage) -> str | None:
    """The first text of a user or assistant message, cut short; None for other roles."""
    if not isinstance(message, UserMessage | AssistantMessage):
        return None
    if isinstance(message.content, str):
        return message.content[:SUMMARY_CHARS]
    return next((b.text[:SUMMARY_CHARS] for b in message.content if isinstance(b, TextBlock)), None)


def unwrap(stored: Any) -> list[Any]:
    """Inbox items from their stored `{item}` wrappers."""
    return [wrapped["item"] for wrapped in stored or []]


# ---- HTML export -----------------------------------------------------------------------------

_STYLE = """
body { background: #0d1117; color: #e6edf3; font-family: system-ui, sans-serif; margin: 0; padding: 24px; }
main { max-width: 920px; margin: 0 auto; }
section { padding: 12px 16px; margin: 12px 0; border-radius: 6px; border-left: 3px solid #30363d;
          background: #161b22; white-space: pre-wrap; overflow-wrap: anywhere; }
.label { font-size: 0.78em; font-weight: 600; letter-spacing: 0.08em; text-transform: uppercase;
         opacity: 0.7; margin-bottom: 6px; }
.user { border-left-color: #06b6d4; } .assistant { border-left-color: #c9d1d9; }
.function_result, .custom, .custom_message { opacity: 0.85; } .error { border-left-color: #f85149; }
.branch_summary, .compaction { border-left-color: #d29922; font-style: italic; }
.thinking { opacity: 0.6; font-style: italic; } .call { font-family: ui-monospace, monospace; }
"""


def render_html(title: str, path: list[SessionEntry]) -> str:
    """A page with no outside references; every stored string is escaped."""
    sections = "\n".join(_render_entry(e) for e in path)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{html.escape(title)}</h1>\n{sections}\n</main>\n</body>\n</html>\n"
    )


def _render_entry(entry: SessionEntry) -> str:
    if isinstance(entry, CustomMessageEntry):
        return _section(entry.type, f"custom · {entry.custom_type}", _text(entry.content))
    if isinstance(entry, BranchSummaryEntry):
        return _section(entry.type, "branch summary", _text(entry.summary))
    if isinstance(entry, CompactionEntry):
        return _section(entry.type, f"compaction · {entry.tokens_before} tokens before", _text(entry.summary))
    message = entry.message
    if message.role == "function_result":
        kind = "function_result error" if message.is_error else message.role
        return _section(kind, f"function_result · {message.function_id}", _render_content(message.content))
    if message.role == "custom":
        return _section(message.role, f"custom · {message.custom_type}", _text(message.content))
    return _section(message.role, message.role, _render_content(message.content))


def _section(kind: str, label: str, body: str) -> str:
    return f'<section class="{html.escape(kind)}"><div class="label">{html.escape(label)}</div>{body}</section>'


def _render_content(content: str | list[ContentBlock]) -> str:
    if isinstance(content, str):
        return _text(content)
    return "".join(_render_block(block) for block in content)


def _render_block(block: ContentBlock) -> str:
    if isinstance(block, TextBlock):
        return f"<div>{html.escape(block.text)}</div>"
    if isinstance(block, ThinkingBlock):
        return f'<div class="thinking">{html.escape(block.text)}</div>'
    if isinstance(block, FunctionCallBlock):
        call = f"→ {block.function_id} {json.dumps(block.arguments, ensure_ascii=False)}"
        return f'<div class="call">{html.escape(call)}</div>'
    return f"<div>{html.escape(f'[image {block.mime}]')}</div>"


def _text(value: Any) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return f"<div>{html.escape(shown)}</div>"
