"""The turn orchestrator's functions: `run::start`, `run::abort`, `run::model`, `turn::get_state`, and the
wake-up on a person's approval decision. The step functions (`turn::<state>`) are `Steps`'."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from teamster.harness.contracts import AgentMessage, DecisionMade, RunModel, Shape
from teamster.harness.harness_events import MessageComplete, TurnView
from teamster.harness.orchestrator.record import TERMINAL, RunSpec, TurnRecord
from teamster.harness.orchestrator.runtime import Runtime, own_message, stage
from teamster.harness.orchestrator.steps import Steps
from teamster.protocol.clock import now_ms
from teamster.protocol.handles import handles
from teamster.sdk import Enqueue


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


class Announced(Shape):
    type: str = "event"
    data: DecisionMade | None = None


class DecisionEvent(Shape):
    event: Announced | None = None


class DecisionFrame(Shape):
    """What the `stream` trigger delivers for a `stream::send` to approval::decided."""

    group_id: str = Field(validation_alias=AliasChoices("groupId", "group_id"))
    event: DecisionEvent


class Orchestrator:
    """The handlers, with what they share: the runtime (worker, settings, stores) and the steps."""

    def __init__(self, rt: Runtime, steps: Steps) -> None:
        self.rt = rt
        self.steps = steps

    @handles("run::start", description="Start a run on a session; refused while one is in flight")
    async def run_start(self, req: RunStart) -> dict[str, Any]:
        rt = self.rt
        previous = await rt.load(req.session_id)
        if previous is not None and previous.state not in TERMINAL:
            return {"session_id": req.session_id, "started": False, "reason": "session_busy"}
        started = now_ms()
        await rt.call("session-tree::ensure", {"session_id": req.session_id})
        spec = RunSpec(
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
        await rt.save_request(req.session_id, spec)
        run_key = req.message_id or str(started)
        for i, message in enumerate(req.messages):
            await rt.append(req.session_id, message, f"{run_key}-user-{i}")
        record = TurnRecord(
            session_id=req.session_id, state="provisioning", max_turns=req.max_turns, started_at_ms=started
        )
        await rt.save(record, previous)
        return {"session_id": req.session_id, "started": True}

    @handles("run::abort", description="Stop a run: pending approvals are dropped, the turn ends")
    async def run_abort(self, req: SessionRef) -> dict[str, Any]:
        rt, steps = self.rt, self.steps
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
        stage(rec, MessageComplete(message=message, body_streamed=False))
        await steps.end_turn(rec)
        await steps.finish(rec)
        await rt.save(rec, previous)
        return {"session_id": req.session_id, "aborted": True, "state": rec.state}

    @handles("run::model", description="The provider and model a session's run streams from, or null")
    async def run_model(self, req: SessionRef) -> RunModel | None:
        spec = await self.rt.find_request(req.session_id)
        return RunModel(provider=spec.provider, model=spec.model) if spec is not None else None

    @handles("turn::get_state", description="The turn's view, or null for an unknown session")
    async def get_state(self, req: SessionRef) -> TurnView | None:
        rec = await self.rt.load(req.session_id)
        return rec.view() if rec is not None else None

    @handles("turn::on_approval", description="A person decided a parked call: wake the turn")
    async def on_approval(self, frame: DecisionFrame) -> None:
        announced = frame.event.event
        if announced is None or announced.data is None:
            return
        await self.rt.worker.trigger(
            "turn::function_awaiting_approval",
            {"session_id": announced.data.session_id},
            action=Enqueue(self.rt.settings.queue),
        )
