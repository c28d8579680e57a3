"""The turn orchestrator: `run::start`, `run::abort`, `turn::get_state` and one function per state.

Steps travel as queue messages carrying only `{session_id}`; the transcript lives in the session tree.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from teamster.harness.contracts import AgentMessage
from teamster.harness.orchestrator.record import TERMINAL, RunRequest, TurnRecord
from teamster.harness.orchestrator.runtime import Runtime, Settings, own_message, stage
from teamster.harness.orchestrator.steps import Steps
from teamster.protocol.clock import now_ms
from teamster.sdk import Enqueue, Worker

__all__ = ["Settings", "create_worker"]


class RunStart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    message_id: str | None = None
    provider: str = "scripted"
    model: str = "scripted"
    mode: Literal["plan", "ask", "agent"] | None = None
    messages: list[AgentMessage] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, ge=1)
    system_prompt: str = ""
    functions: list[str] = Field(default_factory=list)
    agent_trigger: bool = True  # off: the model is offered only `functions` (a pattern agent gets its tools alone)
    budget_id: str | None = None
    workspace_id: str | None = None
    agent_id: str | None = None


class SessionRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)


class ApprovalEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str
    new_value: Any = None


def create_worker(settings: Settings | None = None) -> Worker:
    """The orchestrator worker; `settings` choose which gates it consults (thin vs thick profile)."""
    worker = Worker("turn-orchestrator")
    rt = Runtime(worker, settings or Settings())
    steps = Steps(rt)

    @worker.function("run::start", description="Start a run on a session; refused while one is in flight")
    async def run_start(req: RunStart) -> dict[str, Any]:
        previous = await rt.load(req.session_id)
        if previous is not None and previous.state not in TERMINAL:
            return {"session_id": req.session_id, "started": False, "reason": "session_busy"}
        started = now_ms()
        await rt.call("session-tree::ensure", {"session_id": req.session_id})
        request = RunRequest(
            provider=req.provider,
            model=req.model,
            mode=req.mode,
            system_prompt=req.system_prompt,
            functions=req.functions,
            agent_trigger=req.agent_trigger,
            budget_id=req.budget_id,
            workspace_id=req.workspace_id,
            agent_id=req.agent_id,
            message_id=req.message_id,
        )
        await rt.save_request(req.session_id, request)
        run_key = req.message_id or str(started)
        for i, message in enumerate(req.messages):
            await rt.append(req.session_id, message, f"{run_key}-user-{i}")
        record = TurnRecord(
            session_id=req.session_id, state="provisioning", max_turns=req.max_turns, started_at_ms=started
        )
        await rt.save(record, previous)
        return {"session_id": req.session_id, "started": True}

    @worker.function("run::abort", description="Stop a run: pending approvals are dropped, the turn ends")
    async def run_abort(req: SessionRef) -> dict[str, Any]:
        rec = await rt.load(req.session_id)
        if rec is None or rec.state in TERMINAL:
            return {"session_id": req.session_id, "aborted": False, "state": rec.state if rec else None}
        previous = rec.clone()
        message = own_message("run aborted by user", "aborted")
        rec.last_assistant = message
        rec.awaiting_approval = []
        rec.work = None
        rec.state = "stopped"
        await rt.checkpoint(rec)  # first: a step starting or finishing from now on sees the run stopped
        streaming = steps.streams.get(req.session_id)
        if streaming is not None:
            streaming.cancel()  # stop the provider now; its step publishes nothing more
        await rt.append(req.session_id, message, f"{rec.started_at_ms}-t{rec.turn_count}-aborted")
        stage(rec, {"type": "message_complete", "message": message.model_dump(mode="json"), "body_streamed": False})
        await steps.end_turn(rec)
        await steps.finish(rec)
        await rt.save(rec, previous)
        return {"session_id": req.session_id, "aborted": True, "state": rec.state}

    @worker.function("turn::get_state", description="The turn's view, or null for an unknown session")
    async def get_state(req: SessionRef) -> dict[str, Any] | None:
        rec = await rt.load(req.session_id)
        return rec.view() if rec is not None else None

    @worker.function("turn::on_approval", description="A decision was written: wake the parked turn")
    async def on_approval(event: ApprovalEvent) -> None:
        session_id, _, call_id = event.key.partition("/")
        if session_id and call_id and isinstance(event.new_value, dict):
            await worker.trigger(
                "turn::function_awaiting_approval", {"session_id": session_id}, action=Enqueue(rt.settings.queue)
            )

    worker.register_trigger("state", "turn::on_approval", {"scope": "approvals"})
    for state in steps.handlers:
        _register_step(worker, steps, state)
    return worker


def _register_step(worker: Worker, steps: Steps, state: str) -> None:
    async def step(req: SessionRef) -> dict[str, Any]:
        return await steps.run(state, req.session_id)

    worker.register_function(f"turn::{state}", step, description=f"Run the {state} step of a turn")
