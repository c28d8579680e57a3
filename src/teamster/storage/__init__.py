"""Storage: the adapters through which the engine reaches everything it keeps."""

from __future__ import annotations

from pathlib import Path

from .base import (
    Entry,
    LockAdapter,
    PubSubAdapter,
    PubSubHandler,
    QueueAdapter,
    QueueMessage,
    RevisionConflict,
    StateAdapter,
    StateChange,
    StateWatcher,
    Storage,
    StreamAdapter,
    compare_and_set,
)
from .memory import open_memory
from .sqlite import StorageInUse, open_sqlite

__all__ = [
    "Entry",
    "LockAdapter",
    "PubSubAdapter",
    "PubSubHandler",
    "QueueAdapter",
    "QueueMessage",
    "RevisionConflict",
    "StateAdapter",
    "StateChange",
    "StateWatcher",
    "Storage",
    "StorageInUse",
    "StreamAdapter",
    "compare_and_set",
    "open_memory",
    "open_sqlite",
    "open_storage",
]


def open_storage(kind: str, data_dir: Path | None) -> Storage:
    """Open the `kind` storage ("memory" or "sqlite"; sqlite keeps its file in `data_dir`)."""
    if kind == "memory":
        return open_memory()
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("sqlite storage needs a data directory")
        return open_sqlite(data_dir)
    raise ValueError(f"unknown storage kind {kind!r}: expected 'memory' or 'sqlite'")
