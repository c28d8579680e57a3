"""`state::update` for SDK-side workers: every op is applied, or the call raises.

iii-state answers an update some of whose ops failed with a reply that lists them in `errors` (the
other ops are applied) rather than with an error: a caller that does not look reports success for a
write that never happened. `update_state` looks, once, for every worker.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from teamster.protocol.errors import ErrorCode, StateUpdateFailed
from teamster.sdk.worker import Worker


class StateUpdate(NamedTuple):
    """The value under the key before the ops and after them."""

    old_value: Any
    new_value: Any


async def update_state(worker: Worker, scope: str, key: str, *ops: dict[str, Any]) -> StateUpdate:
    """Apply `ops` to `scope`/`key` in one step; `StateUpdateFailed` naming the failed ops when any fails."""
    reply = await worker.trigger("state::update", {"scope": scope, "key": key, "ops": list(ops)})
    if reply.get("errors"):
        raise StateUpdateFailed(ErrorCode.STATE_UPDATE_ERROR, f"{scope}/{key}: {reply['errors']}")
    return StateUpdate(reply.get("old_value"), reply.get("new_value"))
