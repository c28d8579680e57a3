"""`context-compaction`: fold a session's older messages into a summary so the session fits its model (§7.2).

Two ways in, one procedure:
- `context-compaction::compact_now {session_id, model?, tail_tokens?, wait_ms?}`: on demand, and from the
  orchestrator's preflight once the transcript reaches the model's usable window.
- `context-compaction::compact_session`: bound by a `stream` trigger to `agent::turn_end` (the stream
  `events::emit` also writes every `turn_end` to); it compacts when the turn's token usage reached
  `trigger_ratio` of the usable window, so the next turn need not wait for a preflight compaction.

Without a `model`, the session's model is the one its run streams from (`run::model`, the orchestrator's),
looked up in the catalog (`models::get`). The usable window and the token estimate are the preflight's own
rule (`contracts.usable_tokens`, `contracts.estimate_tokens`).

A compaction keeps the recent tail (cut only where no function call is parted from its result),
summarises everything before it with the session's own provider, and appends a compaction entry through
`session-tree::compact`; `session-tree::messages` then reads as the summary followed by the tail. A lease
in state keeps two compactions of one session apart.

Modules: `worker` (the handlers and one compaction's steps), `cut` (where the tail starts), `summary`
(what the summariser is asked), `settings`.
"""

from __future__ import annotations

from teamster.harness.compaction.cut import cut_point
from teamster.harness.compaction.settings import CompactionSettings
from teamster.harness.compaction.summary import SUMMARY_SYSTEM
from teamster.harness.compaction.worker import (
    LEASE_SCOPE,
    Compactor,
)
from teamster.harness.contracts import TURN_END_STREAM
from teamster.sdk import Worker

__all__ = [
    "LEASE_SCOPE",
    "SUMMARY_SYSTEM",
    "CompactionSettings",
    "Compactor",
    "create_worker",
    "cut_point",
]


def create_worker(settings: CompactionSettings | None = None) -> Worker:
    """The `context-compaction` worker, its turn_end trigger bound, ready to connect or attach."""
    worker = Worker("context-compaction", description="Summarises old session history to fit the model")
    worker.serve(Compactor(worker, settings or CompactionSettings()))
    worker.register_trigger("stream", "context-compaction::compact_session", {"stream_name": TURN_END_STREAM})
    return worker
