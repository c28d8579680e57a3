"""The requests and replies of `session-tree::*` and `session-inbox::*`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from teamster.harness.contracts import AgentMessage, Shape
from teamster.harness.sessions.entries import CompactionDetails, CompactionEntry, SessionMeta


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


class EntryRefs(Shape):
    entry_ids: list[str]


class SessionList(Shape):
    sessions: list[SessionMeta]
    total: int


class Compactions(Shape):
    entries: list[CompactionEntry]


class Html(Shape):
    html: str


class Ok(Shape):
    ok: bool = True
