"""The harness event contract: the published schema is current, and every event a real turn writes is
one of the union's models, whose wire form is exactly what was stored (field order included)."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import TypeAdapter

from teamster.harness.harness_events import ENVELOPE, HARNESS_EVENTS, HarnessEvent, TurnEnd
from teamster.schemas import DEFAULT_DIR, render
from tests.harness.test_turns import ADD, Harness, thick  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]
NAME = "harness-events.json"


def test_published_schema_is_current() -> None:
    published = (ROOT / DEFAULT_DIR / NAME).read_text(encoding="utf-8")
    assert published == render(NAME), "regenerate with: python -m teamster.schemas"


def test_schema_names_every_event_type() -> None:
    mapping = json.loads(render(NAME))["discriminator"]["mapping"]
    members = typing.get_args(typing.get_args(HarnessEvent)[0])
    assert set(mapping) == {member.model_fields["type"].default for member in members}
    assert "compaction_done" in mapping and "turn_end" in mapping


def assert_wire_forms(events: list[dict[str, Any]]) -> None:
    """Each stored event validates against the published schema, decodes into the union, and its model
    writes the event's own fields back byte for byte, before the envelope events::emit appended."""
    schema = json.loads(render(NAME))
    for stored in events:
        jsonschema.validate(stored, schema)
        decoded = HARNESS_EVENTS.validate_python(stored)
        rewritten = {**decoded.model_dump(mode="json"), **{k: stored[k] for k in stored if k in ENVELOPE}}
        assert json.dumps(rewritten) == json.dumps(stored)


async def test_every_event_of_real_runs_is_a_union_member_written_as_stored(thick: Harness) -> None:  # noqa: F811
    danger = {"id": "d1", "function_id": "agent_trigger", "arguments": {"function": "demo::danger", "payload": {}}}
    ask = {"id": "a1", "function_id": "agent_trigger", "arguments": {"function": "demo::mystery", "payload": {}}}
    gated = await thick.script(
        "gated", [{"function_calls": [danger, ask, ADD]}, {"text": "All done.", "chunk_size": 3}]
    )
    await thick.start("s-gated", "go", model=gated)
    await thick.until("s-gated", "function_awaiting_approval")
    resolve = {"session_id": "s-gated", "function_call_id": "a1", "decision": "allow", "reason": None}
    assert await thick.client.trigger("approval::resolve", resolve) == {"ok": True}
    await thick.until("s-gated", "stopped")

    budget = await thick.client.trigger("budget::create", {"ceiling_usd": 0.5, "period": "day"})
    expensive = {"function_calls": [ADD], "usage": {"input": 1000, "output": 100}}
    pricey = await thick.script("pricey", [expensive, {"text": "never reached"}])
    refused = await thick.run("s-budget", "spend", model=pricey, budget_id=budget["budget_id"])

    events = [*await thick.events("s-gated"), *refused]
    assert {e["type"] for e in events} >= {
        "turn_state_changed", "message_update", "message_complete", "function_execution_start", "policy_denied",
        "approval_requested", "function_execution_end", "turn_end", "agent_end", "budget_exceeded",
    }  # fmt: skip
    assert_wire_forms(events)
    ends = TypeAdapter(list[HarnessEvent]).validate_python([e for e in refused if e["type"] == "turn_end"])
    assert all(isinstance(end, TurnEnd) and end.model_limit == 128000 for end in ends)  # the catalog's window
