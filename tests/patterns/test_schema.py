"""The published JSON Schema of the event contract matches the models, and validates real events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from teamster.patterns.events import EVENTS
from teamster.schemas import DEFAULT_DIR
from teamster.schemas import render as render_schema
from tests.patterns.conftest import run_inproc

ROOT = Path(__file__).resolve().parents[2]
NAME = "agent-events.json"


def render() -> str:
    return render_schema(NAME)


def test_published_schema_is_current() -> None:
    published = (ROOT / DEFAULT_DIR / NAME).read_text(encoding="utf-8")
    assert published == render(), "regenerate with: python -m teamster.schemas"


def test_schema_names_every_event_type() -> None:
    schema = json.loads(render())
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) >= {
        "workflow_start", "iteration_start", "iteration_end", "tool_call", "agent_step", "web_search",
        "agent_plan", "input_request", "agent_spawn", "critique", "blackboard_update", "task_posted", "bid",
        "task_awarded", "sample", "trace", "bus_message", "handoff", "workflow_complete", "workflow_error",
    }  # fmt: skip


async def test_events_of_a_real_run_validate_against_the_schema() -> None:
    schema = json.loads(render())
    events = await run_inproc("evaluator_optimizer", max_rounds=1)
    for event in events:
        wire = json.loads(event.model_dump_json())
        jsonschema.validate(wire, schema)
        assert EVENTS.validate_python(wire) == event
