"""Pattern runs started through the API: driven in this process, persisted on the engine, followed live.

A run's events go three ways as they are emitted: into the live run's list (what SSE readers follow, in
order, with no storage round trip), onto its outbox (written to the engine's stream in order by one
writer task), and into the run's pending approvals, inputs and totals. Once the run ends, the writer
drains, the record is stored with its outcome, and the final answer is appended to the session.
A run that was live when teamster stopped is closed on the next start with a `workflow_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from teamster.app.errors import ApiError
from teamster.app.idempotency import IdempotencyKeys
from teamster.app.schemas import (
    ApprovalRow,
    Backend,
    PendingApproval,
    PendingInput,
    RunCreate,
    RunRecord,
    RunView,
)
from teamster.app.store import RunStore
from teamster.harness.contracts import AgentMessage, AssistantMessage, UserMessage
from teamster.harness.providers import scripted
from teamster.harness.providers.stream import Credentials, text_of
from teamster.patterns import pricing
from teamster.patterns.agents import Agents
from teamster.patterns.engine import EngineAgents, EngineClient
from teamster.patterns.events import TERMINAL, ApprovalResolved, Event, WorkflowError, preview
from teamster.patterns.inproc import InprocAgents, default_streams
from teamster.patterns.registry import drive
from teamster.patterns.request import RunRequest, Turn
from teamster.patterns.run import Run
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker

log = logging.getLogger("teamster.app")

STOPPED = "teamster stopped while the run was in progress"
HISTORY_TURNS = 50
MESSAGE: TypeAdapter[AgentMessage] = TypeAdapter(AgentMessage)


@dataclass(eq=False)
class LiveRun:
    """A run this process is driving: its record, its events so far, and who waits on them."""

    record: RunRecord
    agents: Agents
    run: Run | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, PendingInput] = field(default_factory=dict)
    approvals: dict[str, PendingApproval] = field(default_factory=dict)
    outbox: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    aborted: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1]["type"] in TERMINAL

    def changed(self) -> asyncio.Event:
        """An event set at the next emit (or the end of the run)."""
        return self._changed

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def on_event(self, event: Event) -> None:
        data = event.model_dump(mode="json")
        self.events.append(data)
        self.record.event_count = event.seq
        kind = data["type"]
        if kind == "input_request":
            self.inputs[data["request_id"]] = PendingInput.model_validate(data)
        elif kind == "input_resolved":
            self.inputs.pop(data["request_id"], None)
        elif kind == "approval_request":
            self.approvals[data["call_id"]] = PendingApproval.model_validate(data)
        elif kind == "approval_resolved":
            self.approvals.pop(data["call_id"], None)
        elif kind == "iteration_end":
            self.record.input_tokens += data["input_tokens"]
            self.record.output_tokens += data["output_tokens"]
            self.record.cost_usd += data["cost_usd"]
        self.outbox.put_nowait(data)
        self.wake()

    def view(self) -> RunView:
        return RunView(
            **self.record.model_dump(),
            events_url=events_url(self.record.run_id),
            pending_inputs=list(self.inputs.values()),
            pending_approvals=list(self.approvals.values()),
        )


def events_url(run_id: str) -> str:
    return f"/runs/{run_id}/events"


def stored_view(record: RunRecord) -> RunView:
    """The view of a run no process is driving: its record, with nothing pending."""
    return RunView(**record.model_dump(), events_url=events_url(record.run_id))


class RunManager:
    """Starts, tracks, and answers for the runs of one `app` worker."""

    def __init__(self, worker: Worker, client: EngineClient, credentials: Credentials) -> None:
        self.worker = worker
        self.client = client
        self.credentials = credentials
        self.store = RunStore(worker)
        self.keys = IdempotencyKeys(self.store)
        self.live: dict[str, LiveRun] = {}

    # ---- starting and ending -----------------------------------------------------------------

    async def start(self, req: RunCreate, trace_id: str | None = None) -> LiveRun:
        if req.backend == "inproc" and (req.budget is not None or req.policy != "full"):
            field_name = "budget" if req.budget is not None else "policy"
            raise ApiError.invalid(f"{field_name}: budgets and approvals are enforced on the engine backend only")
        provider = req.provider or pricing.provider_of(req.model)
        run_id = uuid.uuid4().hex
        session_id = req.session_id or str(uuid.uuid4())
        agents = await self._agents(req.backend, provider, req.model, run_id, session_id, req.policy)
        if req.budget is not None and isinstance(agents, EngineAgents):  # a refusal here has written nothing yet
            agents.budget_id = await self._budget(run_id, req.budget)
        await self._session(session_id, req.message)
        history = req.history if req.history is not None else await self.history(session_id)
        await self._sessions(
            "append", {"session_id": session_id, "message": _user(req.message), "entry_id": f"{run_id}-user"}
        )
        record = RunRecord(
            run_id=run_id,
            session_id=session_id,
            pattern=req.pattern,
            message=req.message,
            backend=req.backend,
            provider=provider,
            model=req.model,
            policy=req.policy,
            budget=req.budget,
            max_turns=req.max_turns,
            created_at=now_ms(),
            trace_id=trace_id,
            budget_id=agents.budget_id if isinstance(agents, EngineAgents) else None,
        )
        request = RunRequest(
            pattern=req.pattern,
            query=req.message,
            model=req.model,
            provider=provider,
            history=history,
            options=req.caps.model_copy(update={"max_turns": req.max_turns or req.caps.max_turns}),
            run_id=run_id,
        )
        live = LiveRun(record, agents)
        live.run = run = Run(request, agents, live.on_event)
        if isinstance(agents, EngineAgents):
            agents.on_approval = run.emit
        await self.store.save(record)
        self.live[run_id] = live
        live.task = asyncio.get_running_loop().create_task(self._drive(live, run), name=f"run {run_id}")
        return live

    async def _agents(
        self, backend: Backend, provider: str, model: str, run_id: str, session_id: str, policy: str
    ) -> Agents:
        if backend == "engine":
            return EngineAgents(
                self.client, provider, model, run_id=run_id, session_id=session_id, approval_mode=policy
            )
        streams = default_streams(await self._scripts(model) if provider == "scripted" else None)
        try:
            return InprocAgents(provider, model, streams=streams, credentials=self.credentials)
        except ValueError as exc:
            raise ApiError.invalid(f"provider: {exc}") from None

    async def _scripts(self, model: str) -> scripted.Scripts | None:
        """The book a `scripted:<name>` model names, as loaded into the scripted provider worker."""
        if not model.startswith(scripted.MODEL_PREFIX):
            return None
        name = model[len(scripted.MODEL_PREFIX) :]
        found = await self.worker.trigger(f"provider::{scripted.NAME}::get", {"name": name})
        if found is None:
            raise ApiError.invalid(f"model: no script named {name!r}; load one with provider::scripted::load")
        scripts = scripted.Scripts()
        scripts.load(scripted.LoadRequest.model_validate(found))
        return scripts

    async def _drive(self, live: LiveRun, run: Run) -> None:
        writer = asyncio.get_running_loop().create_task(self._write(live))
        try:
            await drive(run)
        except asyncio.CancelledError:
            pass  # an abort: `drive` emitted the workflow_error already
        finally:
            live.outbox.put_nowait(None)
            await writer
            await self._finish(live)

    async def _write(self, live: LiveRun) -> None:
        """Persist the run's events in order; a failed write is logged and the live run goes on."""
        while (event := await live.outbox.get()) is not None:
            try:
                await self.store.append(live.record.run_id, event)
            except InvocationError as exc:
                log.warning("run %s: event %s not stored: %s", live.record.run_id, event["seq"], exc.message)

    async def _finish(self, live: LiveRun) -> None:
        record = live.record
        last = live.events[-1] if live.events else {"type": "workflow_error", "error": "the run produced no events"}
        if last["type"] == "workflow_complete":
            record.status, record.result = "completed", _answer(last)
        else:
            record.status = "aborted" if live.aborted else "failed"
            record.error = last.get("error")
        record.finished_at = now_ms()
        live.inputs.clear()
        live.approvals.clear()
        try:
            if record.result:
                answer = {
                    "role": "assistant",
                    "content": [{"type": "text", "text": record.result}],
                    "timestamp": now_ms(),
                }
                await self._sessions(
                    "append",
                    {"session_id": record.session_id, "message": answer, "entry_id": f"{record.run_id}-answer"},
                )
            await self.store.save(record)
        except (InvocationError, ApiError) as exc:
            log.warning("run %s: outcome not stored: %s", record.run_id, exc)
        finally:
            self.live.pop(record.run_id, None)
            live.wake()

    async def recover(self) -> None:
        """Close the runs a previous process left running, so no reader waits on them forever."""
        for record in await self.store.records():
            if record.status == "running" and record.run_id not in self.live:
                await self._close_orphan(record)

    async def _close_orphan(self, record: RunRecord) -> None:
        stored = await self.store.events(record.run_id)
        if not stored or stored[-1]["type"] not in TERMINAL:
            seq = stored[-1]["seq"] + 1 if stored else 1
            error = WorkflowError(run_id=record.run_id, seq=seq, ts=time.time(), error=STOPPED)
            await self.store.append(record.run_id, error.model_dump(mode="json"))
            record.event_count = seq
        record.status, record.error, record.finished_at = "interrupted", STOPPED, now_ms()
        await self.store.save(record)

    async def close(self) -> None:
        """Stop every live run (each ends with `workflow_error`) and store it as interrupted."""
        for live in list(self.live.values()):
            if live.run is not None:
                live.run.fail(STOPPED)  # the terminal event says why; the cancel's own "run aborted" is then moot
            if live.task is not None:
                live.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await live.task
                live.record.status, live.record.error = "interrupted", STOPPED
                with contextlib.suppress(InvocationError):
                    await self.store.save(live.record)

    # ---- reading -------------------------------------------------------------------------------

    async def view(self, run_id: str) -> RunView:
        live = self.live.get(run_id)
        if live is not None:
            return live.view()
        record = await self.store.load(run_id)
        if record is None:
            raise ApiError.not_found(ErrorCode.RUN_NOT_FOUND, f"no run {run_id}")
        return stored_view(record)

    async def views(self, *, session_id: str | None, status: str | None, limit: int) -> tuple[list[RunView], int]:
        stored = {record.run_id: record for record in await self.store.records()}
        views = [self.live[run_id].view() if run_id in self.live else stored_view(r) for run_id, r in stored.items()]
        views = [
            v
            for v in views
            if (session_id is None or v.session_id == session_id) and (status is None or v.status == status)
        ]
        views.sort(key=lambda v: v.created_at, reverse=True)
        return views[:limit], len(views)

    async def events(self, run_id: str, after: int) -> tuple[list[dict[str, Any]], bool]:
        """The events with `seq > after`, and whether the run has ended."""
        live = self.live.get(run_id)
        if live is not None:
            return live.events[after:], live.done
        record = await self.store.load(run_id)
        if record is None:
            raise ApiError.not_found(ErrorCode.RUN_NOT_FOUND, f"no run {run_id}")
        stored = await self.store.events(run_id)
        done = bool(stored) and stored[-1]["type"] in TERMINAL
        return [e for e in stored if e["seq"] > after], done

    async def wait(self, run_id: str, after: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
        """Like `events`, but holding up to `timeout` seconds for a first new event."""
        live = self.live.get(run_id)
        if live is not None and len(live.events) <= after and not live.done and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.changed().wait(), timeout)
        return await self.events(run_id, after)

    async def follow(self, run_id: str, after: int, keepalive: float) -> AsyncIterator[dict[str, Any] | None]:
        """Every event after `after` until the terminal one; None when `keepalive` seconds pass quietly."""
        while True:
            live = self.live.get(run_id)
            changed = live.changed() if live is not None else None
            events, done = await self.events(run_id, after)
            for event in events:
                yield event
                after = event["seq"]
            if done:
                return
            if changed is None:  # stored, not live, and not ended: it was left running by a dead process
                return
            try:
                await asyncio.wait_for(changed.wait(), keepalive)
            except TimeoutError:
                yield None

    def approvals(self) -> list[ApprovalRow]:
        return [
            ApprovalRow(run_id=run_id, **pending.model_dump())
            for run_id, live in self.live.items()
            for pending in live.approvals.values()
        ]

    # ---- acting on a live run -------------------------------------------------------------------

    async def _live(self, run_id: str) -> LiveRun:
        live = self.live.get(run_id)
        if live is not None:
            return live
        record = await self.store.load(run_id)
        if record is None:
            raise ApiError.not_found(ErrorCode.RUN_NOT_FOUND, f"no run {run_id}")
        raise ApiError(409, ErrorCode.RUN_FINISHED, f"run {run_id} is {record.status}")

    async def decide(self, run_id: str, call_id: str, decision: str, reason: str | None) -> None:
        live = await self._live(run_id)
        pending = live.approvals.get(call_id)
        if pending is None or live.run is None:
            raise ApiError.not_found(
                ErrorCode.APPROVAL_NOT_FOUND, f"run {run_id} has no call {call_id} waiting for approval"
            )
        payload = {"session_id": pending.session_id, "function_call_id": call_id, "decision": decision}
        if reason:
            payload["reason"] = reason
        reply = await self.worker.trigger("approval::resolve", payload)
        if reply.get("error") == ErrorCode.ALREADY_DECIDED:  # the gate keeps the first decision of a call
            raise ApiError(
                409, ErrorCode.ALREADY_DECIDED, f"call {call_id} was already decided: {reply.get('decision')}"
            )
        if call_id in live.approvals:  # two decisions racing: the first one announced counts
            live.run.emit(ApprovalResolved(call_id=call_id, decision=decision, reason=reason))  # type: ignore[arg-type]

    async def answer(self, run_id: str, request_id: str, answer: str) -> None:
        live = await self._live(run_id)
        if request_id not in live.inputs:
            raise ApiError.not_found(ErrorCode.INPUT_NOT_FOUND, f"run {run_id} has no open input request {request_id}")
        if isinstance(live.agents, InprocAgents):
            if not live.agents.inputs.resolve(request_id, answer):
                raise ApiError.not_found(ErrorCode.INPUT_NOT_FOUND, f"input request {request_id} is no longer open")
            return
        try:
            await self.worker.trigger("patterns::input::resolve", {"request_id": request_id, "answer": answer})
        except InvocationError as exc:
            status = 404 if exc.code == ErrorCode.INPUT_NOT_FOUND else 409
            raise ApiError(
                status, ErrorCode.INPUT_NOT_FOUND if status == 404 else ErrorCode.INPUT_CLOSED, exc.message
            ) from None

    async def abort(self, run_id: str) -> RunRecord:
        live = await self._live(run_id)
        live.aborted = True
        if live.task is not None:
            live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(live.task)
        return live.record

    # ---- sessions ------------------------------------------------------------------------------

    async def history(self, session_id: str) -> list[Turn]:
        """The conversation so far: the user and assistant texts of the session's current branch."""
        found = await self._sessions("messages", {"session_id": session_id})
        turns: list[Turn] = []
        for row in found["messages"]:
            message = MESSAGE.validate_python(row["message"])
            if isinstance(message, UserMessage | AssistantMessage) and (text := text_of(message.content)).strip():
                turns.append(Turn(role=message.role, content=text[:20_000]))
        return turns[-HISTORY_TURNS:]

    async def _session(self, session_id: str, message: str) -> None:
        await self._sessions("ensure", {"session_id": session_id, "display_name": preview(message, 60)})

    async def _sessions(self, name: str, payload: dict[str, Any]) -> Any:
        try:
            return await self.worker.trigger(f"session-tree::{name}", payload)
        except InvocationError as exc:
            if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
                raise ApiError(503, ErrorCode.UNAVAILABLE, "the session tree worker is not running") from None
            raise

    async def _budget(self, run_id: str, ceiling: float) -> str:
        try:
            created = await self.worker.trigger(
                "budget::create", {"ceiling_usd": ceiling, "period": "month", "name": f"run {run_id}"}
            )
        except InvocationError as exc:
            if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
                raise ApiError.invalid("budget: the budget worker is not running (use the thick profile)") from None
            raise
        return str(created["budget_id"])


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "timestamp": now_ms()}


def _answer(complete: dict[str, Any]) -> str:
    return str(complete.get("result") or "")
