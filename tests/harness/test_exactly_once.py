"""Exactly once under concurrency: two parked calls of one turn approved at once, back to back, or many times.

Each trial parks two calls of one turn, decides them, waits for the run to stop and the step queue to drain,
then counts: one execution, one start and one end per call, one turn_end per turn, two model calls, and
agent_end as the run's last word.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from teamster.app.profiles import HarnessOptions
from teamster.sdk import Worker
from tests.conftest import Connect, eventually
from tests.harness.test_turns import Harness, start_harness

TRIALS = 20
CALLS = ("a", "b")
# What every trial's events read as, message_update and turn_state_changed aside (the calls' order may vary).
EXPECTED = [
    "message_complete",
    "function_execution_start",
    "approval_requested",
    "function_execution_start",
    "approval_requested",
    "function_execution_end",
    "function_execution_end",
    "turn_end",
    "message_complete",
    "turn_end",
    "agent_end",
]


class Fixture:
    def __init__(self, harness: Harness, executions: Counter[str]) -> None:
        self.harness = harness
        self.executions = executions


@pytest.fixture
async def fx(connect: Connect, tmp_path: Path) -> Fixture:
    harness = await start_harness(connect, "thick", HarnessOptions(data_dir=tmp_path))
    executions: Counter[str] = Counter()
    side_effects = Worker("side-effects")

    @side_effects.function("fx::count", description="Count one execution of the caller's key")
    async def count(data: dict[str, Any]) -> str:
        executions[data["key"]] += 1
        await asyncio.sleep(0.01)  # long enough for a racing step to start the same call
        return "counted " + data["key"]

    await connect(side_effects)
    return Fixture(harness, executions)


async def park_two(fx: Fixture, session_id: str) -> None:
    """Start a run whose first turn makes two calls that both need approval; wait until both are parked."""
    turn = {
        "function_calls": [
            {"id": f"{session_id}-{c}", "function_id": "fx::count", "arguments": {"key": f"{session_id}-{c}"}}
            for c in CALLS
        ]
    }
    model = await fx.harness.script(session_id, [turn, {"text": "done"}])
    await fx.harness.start(session_id, "count twice", model=model, functions=["fx::count"])
    view = await fx.harness.until(session_id, "function_awaiting_approval")
    assert [p["function_call_id"] for p in view["awaiting_approval"]] == [f"{session_id}-{c}" for c in CALLS]


async def resolve(fx: Fixture, session_id: str, call: str, decision: str = "allow") -> Any:
    payload = {"session_id": session_id, "function_call_id": f"{session_id}-{call}", "decision": decision}
    return await fx.harness.client.trigger("approval::resolve", payload)


async def settled(fx: Fixture, session_id: str) -> list[dict[str, Any]]:
    """The run's events once it has stopped and no step of it is queued or running any more."""
    await fx.harness.until(session_id, "stopped", "failed")

    async def drained() -> bool:
        stats = await fx.harness.client.trigger("engine::queue::topic_stats", {"topic": "turn-step"})
        return bool(stats["ready"] == 0 and stats["in_flight"] == 0)

    await eventually(drained, timeout=10)
    page = await fx.harness.client.trigger("events::list", {"session_id": session_id})
    return list(page["events"])


def check_once(fx: Fixture, session_id: str, events: list[dict[str, Any]]) -> None:
    calls = sorted(f"{session_id}-{c}" for c in CALLS)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["id"] for e in events if "id" in e}) == len([e for e in events if "id" in e])
    kinds = [e["type"] for e in events if e["type"] not in ("message_update", "turn_state_changed")]
    assert kinds == EXPECTED
    for kind in ("function_execution_start", "function_execution_end"):
        assert sorted(e["function_call_id"] for e in events if e["type"] == kind) == calls
    assert all(not e["is_error"] for e in events if e["type"] == "function_execution_end")
    assert {key: fx.executions[key] for key in calls} == dict.fromkeys(calls, 1)
    assert events[-1]["type"] == "turn_state_changed"
    assert events[-1]["new_value"]["state"] == "stopped"


REFUSED = {"ok": False, "error": "already_decided", "decision": "allow"}
Approve = Callable[[Fixture, str], Awaitable[None]]


async def concurrently(fx: Fixture, session_id: str) -> None:
    replies = await asyncio.gather(*(resolve(fx, session_id, c) for c in CALLS))
    assert replies == [{"ok": True}, {"ok": True}]


async def back_to_back(fx: Fixture, session_id: str) -> None:
    for call in CALLS:
        assert await resolve(fx, session_id, call) == {"ok": True}


@pytest.mark.parametrize("approve", [concurrently, back_to_back])
async def test_two_parked_calls_run_once_each(fx: Fixture, approve: Approve) -> None:
    for trial in range(TRIALS):
        session_id = f"s{trial}"
        await park_two(fx, session_id)
        await approve(fx, session_id)
        check_once(fx, session_id, await settled(fx, session_id))


async def test_duplicate_decisions_run_each_call_once(fx: Fixture) -> None:
    for trial in range(TRIALS):
        session_id = f"s{trial}"
        await park_two(fx, session_id)
        replies = await asyncio.gather(
            *(resolve(fx, session_id, c) for c in CALLS for _ in range(3)),
            resolve(fx, session_id, "a", "deny"),
        )
        assert replies[:6] == [{"ok": True}] * 6
        assert replies[6] == REFUSED
        events = await settled(fx, session_id)
        check_once(fx, session_id, events)
        # Decided after the run: still the first decision, still no second execution.
        assert await resolve(fx, session_id, "b") == {"ok": True}
        assert await resolve(fx, session_id, "b", "deny") == REFUSED
        assert await settled(fx, session_id) == events
