"""`update_state` on a real engine, and the workers that write through it reporting a failed op."""

from __future__ import annotations

import pytest

from teamster.harness.approval import create_worker
from teamster.protocol.errors import StateUpdateFailed
from teamster.sdk import Worker
from teamster.sdk.state import update_state
from tests.conftest import Connect


async def test_update_state_returns_both_values_and_raises_when_an_op_fails(connect: Connect) -> None:
    worker = await connect(Worker("writer"))
    first = await update_state(worker, "s", "k", {"type": "set", "path": "n", "value": 1})
    assert (first.old_value, first.new_value) == (None, {"n": 1})

    with pytest.raises(StateUpdateFailed) as caught:
        await update_state(
            worker, "s", "k", {"type": "increment", "path": "n", "by": 1}, {"type": "append", "path": "n", "value": 2}
        )
    assert caught.value.code == "STATE_UPDATE_ERROR"
    assert caught.value.message.startswith("s/k: ")
    assert "'op_index': 1" in caught.value.message and "append" in caught.value.message


async def test_an_approval_grant_that_could_not_be_stored_is_reported_not_ignored(connect: Connect) -> None:
    """Settings a hand (or an old version) left malformed: the append of the grant fails in state, and
    the caller hears so instead of getting settings back as if the grant were stored."""
    await connect(create_worker())
    client = await connect(Worker("client"))
    await client.trigger("state::set", {"scope": "approval_settings", "key": "s1", "value": {"always_allow": "x"}})

    with pytest.raises(StateUpdateFailed) as caught:
        await client.trigger("approval::add_always_allow", {"session_id": "s1", "function_id": "tool::read"})
    assert caught.value.code == "STATE_UPDATE_ERROR"
    assert await client.trigger("state::get", {"scope": "approval_settings", "key": "s1"}) == {"always_allow": "x"}
