"""One smoke run per pattern on the real `local` model (SmolLM2-135M), when the optional extra is installed.

The model is far too small to follow roles, so the bar is the reference's smoke bar: every run ends in
`workflow_complete` or a clear `workflow_error`, and none hangs.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from teamster.harness.providers import local
from teamster.patterns import PATTERN_NAMES, InprocAgents, Options, PatternRequest, run_pattern
from teamster.patterns.events import Event
from tests.patterns.conftest import assert_contract

MODEL = "smollm2-135m-instruct"
HANG_GUARD_S = 900  # a guard against a hang, not a speed target: a small CPU model on 2 cores is slow

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or local.smollm2_path() is None,
    reason=f"the local model is not installed: {local.INSTALL_HINT}",
)

STREAM = local.streamer(max_tokens=64)  # one model load for the whole module


@pytest.mark.timeout(HANG_GUARD_S + 60)
@pytest.mark.parametrize("pattern", PATTERN_NAMES)
async def test_pattern_ends_cleanly_on_the_local_model(pattern: str) -> None:
    request = PatternRequest(
        pattern=pattern,  # type: ignore[arg-type]
        query="Reply with a single short sentence about teamwork.",
        provider="local",
        model=MODEL,
        options=Options(max_rounds=1, debate_rounds=1, board_rounds=2, samples=2, swarm_size=2, swarm_rounds=1,
                        max_depth=1, max_children=2, max_iterations=4, input_timeout_s=1),
    )  # fmt: skip
    events: list[Event] = []
    agents = InprocAgents("local", MODEL, streams={"local": STREAM})
    await asyncio.wait_for(run_pattern(request, agents, events.append), HANG_GUARD_S)
    assert_contract(events)
    last = events[-1]
    assert last.type in ("workflow_complete", "workflow_error")  # type: ignore[attr-defined]
    if last.type == "workflow_error":  # type: ignore[attr-defined]
        assert last.error.strip()  # type: ignore[attr-defined]
