"""The turn orchestrator: `run::start`, `run::abort`, `run::model`, `turn::get_state` and one function per state.

Steps travel as queue messages carrying only `{session_id}`; the transcript lives in the session tree.
"""

from __future__ import annotations

from typing import Any

from teamster.harness.contracts import DECIDED_STREAM
from teamster.harness.orchestrator.runtime import Runtime
from teamster.harness.orchestrator.settings import TurnSettings
from teamster.harness.orchestrator.steps import Steps
from teamster.harness.orchestrator.worker import Orchestrator, SessionRef
from teamster.sdk import Worker

__all__ = ["TurnSettings", "create_worker"]


def create_worker(settings: TurnSettings | None = None) -> Worker:
    """The orchestrator worker; `settings` choose which gates it consults (thin vs thick profile)."""
    worker = Worker("turn-orchestrator")
    rt = Runtime(worker, settings or TurnSettings())
    steps = Steps(rt)
    worker.serve(Orchestrator(rt, steps))
    worker.register_trigger("stream", "turn::on_approval", {"stream_name": DECIDED_STREAM})
    for state in steps.handlers:
        _register_step(worker, steps, state)
    return worker


def _register_step(worker: Worker, steps: Steps, state: str) -> None:
    """`turn::<state>`: its id comes from the state's name, so it is registered here rather than marked."""

    async def step(req: SessionRef) -> dict[str, Any]:
        return await steps.run(state, req.session_id)

    worker.register_function(f"turn::{state}", step, description=f"Run the {state} step of a turn")
