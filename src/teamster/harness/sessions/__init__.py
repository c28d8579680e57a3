"""The `session` worker: session trees (`session-tree::*`) and session inboxes (`session-inbox::*`), §7.1.

A session is a tree of entries stored one per key in scope `session_tree:<sid>`, plus one SessionMeta in
scope `session_tree_meta`. Nothing points at the active branch: the active leaf is the newest entry that
no other entry names as its parent, and every read takes an optional `branch_leaf` to pick another.

The package, one concept a module: `entries` (stored shapes), `requests` (requests and replies), `tree`
(algorithms over entries), `store` (state reads and writes), `trees` and `inboxes` (the handlers),
`export` (the HTML page, styled by `export.css`).
"""

from __future__ import annotations

from teamster.harness.sessions.inboxes import SessionInboxes
from teamster.harness.sessions.store import SessionStore
from teamster.harness.sessions.trees import SessionTrees
from teamster.sdk import Worker


def create_worker() -> Worker:
    """The `session` worker, ready to connect or attach."""
    worker = Worker("session", description="Session trees and inboxes")
    store = SessionStore(worker)
    worker.serve(SessionTrees(store))
    worker.serve(SessionInboxes(worker, store))
    return worker
