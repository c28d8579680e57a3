"""The state scopes and streams `teamster up` reserves for its in-process workers (`iii-state`
`reserved_scopes`, `iii-stream` `reserved_streams`; docs/engine.md): a `worker` or `provider`
connection can neither read nor write them, nor bind a trigger on them, so it cannot approve a parked
call by writing its approval record, widen a session's approval mode, reset a budget, read a
transcript or forge a run event. Each name is the constant its worker uses, so the list cannot drift
from the code (tests/test_reserved_scopes.py checks that every scope and stream those workers name is
covered).

Not reserved: `agent::hook_reply`, the stream remote hook subscribers answer on (each event id is a
fresh uuid4, known only to the subscribers the event went to), and `__…` scopes, which the engine
closes itself.
"""

from __future__ import annotations

from teamster.app import store
from teamster.engine.config import EngineConfig
from teamster.harness import approval, budget, compaction, contracts, events, trigger
from teamster.harness.orchestrator import exclusive, runtime
from teamster.harness.sessions.inboxes import INBOX_SCOPE
from teamster.harness.sessions.store import META_SCOPE, entries_scope
from teamster.patterns import functions

SCOPES: tuple[str, ...] = (
    approval.APPROVALS_SCOPE,  # approval records: writing one approves a parked call
    approval.SETTINGS_SCOPE,  # a session's approval mode and grants
    budget.SCOPE,  # budgets and their spend
    META_SCOPE,
    INBOX_SCOPE,
    entries_scope("*"),  # `session_tree:<sid>`: the transcripts
    runtime.RECORDS,  # the orchestrator's turn records
    runtime.REQUESTS,  # its run requests (provider, model, functions)
    exclusive.LEASES,
    compaction.LEASE_SCOPE,
    trigger.REQUESTS,
    functions.INPUTS,  # questions to a person, and their answers
    store.RUNS,  # the app's run records
    store.KEYS,  # idempotency keys of POST /runs
)
STREAMS: tuple[str, ...] = (
    events.STREAM,  # agent::events: every session's events, transcripts included
    contracts.DECIDED_STREAM,  # a person decided a parked call (the orchestrator wakes on it)
    contracts.TURN_END_STREAM,
    store.EVENTS,  # app::run_events
)


def reserve_scopes(config: EngineConfig) -> None:
    """Add SCOPES to `iii-state`'s `reserved_scopes` and STREAMS to `iii-stream`'s `reserved_streams`
    in `config` (when those modules are configured), keeping whatever the config file reserves."""
    for module, key, names in (("iii-state", "reserved_scopes", SCOPES), ("iii-stream", "reserved_streams", STREAMS)):
        entry = config.worker(module)
        if entry is not None:
            reserved = entry.config.setdefault(key, [])
            reserved.extend(name for name in names if name not in reserved)
