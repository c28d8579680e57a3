"""Tree algorithms over a session's entries: the active leaf and path, the nested tree, what a model sees, copies.

Nothing points at the active branch: the active leaf is the newest entry that no other entry names as its
parent, and every read may pick another leaf. Entries are passed sorted oldest first, by (timestamp, id).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from teamster.harness.contracts import AgentMessage, AssistantMessage, TextBlock, TranscriptRow, UserMessage
from teamster.harness.sessions.entries import CompactionEntry, MessageEntry, SessionEntry
from teamster.protocol.errors import ErrorCode, InvocationError

SUMMARY_CHARS = 80
COMPACTED_PREFIX = "The conversation before this point was compacted into this summary:"


def entry_order(entry: SessionEntry) -> tuple[int, str]:
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


def visible(path: list[SessionEntry]) -> list[TranscriptRow]:
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
                TranscriptRow(entry_id=entry.id, message=summary),
                *(TranscriptRow(entry_id=e.id, message=e.message) for e in path[start:] if isinstance(e, MessageEntry)),
            ]
    return [TranscriptRow(entry_id=e.id, message=e.message) for e in path if isinstance(e, MessageEntry)]


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
