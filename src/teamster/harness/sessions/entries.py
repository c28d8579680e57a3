"""What a session is stored as: its entries (one per key in `session_tree:<sid>`) and its SessionMeta record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter

from teamster.harness.contracts import AgentMessage, Shape


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
ENTRY: TypeAdapter[SessionEntry] = TypeAdapter(SessionEntry)
ENTRIES: TypeAdapter[list[SessionEntry]] = TypeAdapter(list[SessionEntry])


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
