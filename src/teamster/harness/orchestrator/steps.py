"""One function per state; each step loads the record, does its work and names the next state (§2.3, §2.4)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from teamster.harness.contracts import AgentMessage, AssistantMessage, PartialEvent, UserMessage
from teamster.harness.lease import Lease
from teamster.harness.orchestrator import calls, prompt
from teamster.harness.orchestrator.calls import Verdict
from teamster.harness.orchestrator.exclusive import LEASES, acquire_or_defer
from teamster.harness.orchestrator.record import (
    ExecutedCall,
    Pending,
    PreparedCall,
    RunRequest,
    TurnError,
    TurnRecord,
    Work,
)
from teamster.harness.orchestrator.runtime import Runtime, own_message, stage
from teamster.harness.orchestrator.streaming import stream_assistant
from teamster.protocol import InvocationError
from teamster.protocol.clock import monotonic_ms, now_ms
from teamster.protocol.errors import ErrorCode

log = logging.getLogger("teamster.harness")

# Errors worth a redelivery: the step is retried from its last checkpoint.
TRANSIENT = frozenset(
    {
        ErrorCode.INVOCATION_STOPPED,
        ErrorCode.CONNECTION_LOST,
        ErrorCode.TIMEOUT,
        ErrorCode.COMPACTION_BUSY,
        ErrorCode.EVENTS_UNSENT,
    }
)
INBOXES = ("steering", "followup")


class Superseded(Exception):
    """The run was aborted while this step worked: it ends without writing anything."""


class Steps:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.streams: dict[str, asyncio.Task[tuple[AssistantMessage, bool]]] = {}  # session -> live stream
        self.handlers: dict[str, Callable[[TurnRecord], Awaitable[None]]] = {
            "provisioning": self.provisioning,
            "assistant_streaming": self.assistant_streaming,
            "function_execute": self.function_execute,
            "function_awaiting_approval": self.function_awaiting_approval,
            "steering_check": self.steering_check,
        }

    async def run(self, state: str, session_id: str) -> dict[str, Any]:
        """Run the step under the session's lease; a step that finds it taken leaves the session to its holder."""
        lease = Lease(self.rt.worker, LEASES, session_id, self.rt.settings.lease_ttl_s)
        if not await acquire_or_defer(lease):
            return {"ok": True, "skipped": True, "reason": "deferred"}
        renewing = asyncio.ensure_future(lease.keep())
        try:
            return await self._run(state, session_id)
        finally:
            renewing.cancel()
            if await lease.release():
                await self.rt.resume(session_id)

    async def _run(self, state: str, session_id: str) -> dict[str, Any]:
        """Run the step if the record is still in `state` (a redelivered message is skipped as stale)."""
        rt = self.rt
        rec = await rt.load(session_id)
        if rec is None:
            raise InvocationError(ErrorCode.TURN_NOT_FOUND, f"no turn for session {session_id}")
        await rt.publish(rec)  # what an earlier step stored but could not send goes first
        _all_sent(rec)
        if rec.state != state:
            return {"ok": True, "skipped": True, "reason": "stale"}
        previous = rec.clone()
        try:
            await self.handlers[state](rec)
        except Superseded:
            return {"ok": True, "skipped": True, "reason": "superseded"}
        except InvocationError as exc:
            if exc.code in TRANSIENT:
                raise  # the queue delivers this step again
            await self._fail(previous, state, exc.message)
            return {"ok": False, "from_state": state, "to_state": "failed"}
        except Exception as exc:
            log.exception("turn step %s of %s failed", state, session_id)
            await self._fail(previous, state, str(exc) or type(exc).__name__)
            return {"ok": False, "from_state": state, "to_state": "failed"}
        current = await rt.load(session_id)
        if current is not None and current.state != state:
            return {"ok": True, "skipped": True, "reason": "superseded"}  # aborted while this step ran
        await rt.save(rec, previous)
        _all_sent(rec)
        return {"ok": True, "from_state": state, "to_state": rec.state}

    # ---- states -------------------------------------------------------------------------------

    async def provisioning(self, rec: TurnRecord) -> None:
        rt = self.rt
        request = await rt.request(rec.session_id)
        request.system_prompt = await prompt.system_prompt(rt, request)
        request.function_schemas = await prompt.function_specs(rt, request.functions, request.agent_trigger)
        if rt.settings.catalog:
            rec.model_meta = await rt.call("models::get", {"provider": request.provider, "model_id": request.model})
        await rt.save_request(rec.session_id, request)
        rec.state = "assistant_streaming"

    async def assistant_streaming(self, rec: TurnRecord) -> None:
        rt = self.rt
        sid = rec.session_id
        rec.turn_count += 1
        rec.turn_end_emitted = False
        request = await rt.request(sid)
        messages = await rt.messages(sid)
        if rt.settings.budgets and request.budget_id:
            refusal = await self._budget_refusal(rec, request, messages)
            if refusal is not None:
                await self._close_turn(rec, refusal)
                return
        if rt.settings.compaction and rec.model_meta and _tokens(messages) >= _usable(rec.model_meta):
            reply = await rt.call("context-compaction::compact_now", {"session_id": sid, "model": rec.model_meta})
            if reply.get("status") == "busy":
                raise InvocationError(ErrorCode.COMPACTION_BUSY, "a compaction of this session is running")
            if reply.get("status") == "overflow":
                raise RuntimeError("the context does not fit the model even after compaction")
            messages = await rt.messages(sid)

        updates = rt.outbox(sid)  # a fast provider's deltas go out in batches, a slow one's one by one

        def on_partial(event: PartialEvent) -> None:
            updates.push(
                {
                    "type": "message_update",
                    "message": event.partial.model_dump(mode="json"),
                    "llm_event": event.model_dump(mode="json"),
                }
            )

        stream = asyncio.ensure_future(stream_assistant(rt, request, messages, on_partial))
        self.streams[sid] = stream
        try:
            assistant, streamed = await stream
            await updates.flush()
        except BaseException as exc:
            updates.discard()
            current = asyncio.current_task()
            cancelled_by_abort = stream.cancelled() and (current is None or not current.cancelling())
            if isinstance(exc, asyncio.CancelledError) and cancelled_by_abort:
                raise Superseded from None  # run::abort cancelled the stream, not our caller
            raise
        finally:
            self.streams.pop(sid, None)
        latest = await rt.load(sid)
        if latest is None or latest.state != "assistant_streaming":
            raise Superseded  # aborted before the stream could be cancelled: publish nothing of it
        await self._price(rec, request.budget_id, assistant)
        rec.last_assistant = assistant
        complete = {"type": "message_complete", "message": assistant.model_dump(mode="json"), "body_streamed": streamed}
        stage(rec, complete)
        await rt.append(sid, assistant, f"{rec.started_at_ms}-t{rec.turn_count}-assistant")
        if assistant.stop_reason in ("error", "aborted"):
            await self.end_turn(rec)
            await self.finish(rec)
            return
        prepared = calls.plan(assistant, request.functions, request.agent_trigger)
        if prepared:
            rec.function_results = []
            rec.work = Work(prepared=prepared)
            rec.state = "function_execute"
        else:
            rec.state = "steering_check"

    async def function_execute(self, rec: TurnRecord) -> None:
        rt = self.rt
        work = rec.work or Work()
        waiting = {p.function_call_id for p in rec.awaiting_approval}
        for prepared in work.prepared:
            call = prepared.call
            if call.id in work.executed or call.id in waiting:
                continue
            if call.id in work.started:  # sent before a crash, never answered: it may have run, so not again
                await self._executed(rec, prepared, calls.interrupted(call), 0)
                continue
            await self._start(rec, prepared)
            if prepared.route == "synthetic" and prepared.result is not None:
                await self._executed(rec, prepared, prepared.result, 0)
                continue
            verdict = calls.ALLOW if prepared.route == "pre_approved" else await calls.consult(rt, rec.session_id, call)
            await self._apply(rec, prepared, verdict)
        if rec.awaiting_approval:
            rec.state = "function_awaiting_approval"
        else:
            await self._finalize(rec)

    async def function_awaiting_approval(self, rec: TurnRecord) -> None:
        rt = self.rt
        work = rec.work or Work()
        by_id = {p.call.id: p for p in work.prepared}
        for pending in list(rec.awaiting_approval):
            decision = await rt.call(
                "state::get", {"scope": "approvals", "key": f"{rec.session_id}/{pending.function_call_id}"}
            )
            if not isinstance(decision, dict) or decision.get("decision") not in ("allow", "deny", "aborted"):
                continue
            rec.awaiting_approval.remove(pending)
            prepared = by_id[pending.function_call_id]
            if decision["decision"] == "allow":
                await self._run_call(rec, prepared)
            else:
                aborted = decision["decision"] == "aborted"
                reason = decision.get("reason") or ("aborted" if aborted else "no reason given")
                text = f"Function call aborted: {reason}" if aborted else f"Permission denied by user: {reason}"
                details = {"approval_denied": True, "decision": decision["decision"], "reason": reason}
                result = calls.result_of(prepared.call, text, details, True, terminate=aborted)
                await self._executed(rec, prepared, result, 0)
        if rec.awaiting_approval:
            return  # still parked: only another decision wakes it
        if all(p.call.id in work.executed for p in work.prepared):
            await self._finalize(rec)
        else:
            rec.state = "function_execute"

    async def steering_check(self, rec: TurnRecord) -> None:
        rt = self.rt
        sid = rec.session_id
        arrived: list[Any] = []
        for name in INBOXES:
            arrived.extend((await rt.call("session-inbox::drain", {"session_id": sid, "name": name}))["items"])
        continues = bool(arrived or rec.function_results)
        if continues and rec.max_turns is not None and rec.turn_count >= rec.max_turns:
            text = f"loop stopped: max_turns ({rec.max_turns}) reached"
            stop = own_message(text, "end")
            await rt.append(sid, stop, f"{rec.started_at_ms}-t{rec.turn_count}-max-turns")
            await self._close_turn(rec, stop)
            return
        if arrived:
            await self.end_turn(rec)
            for i, item in enumerate(arrived):
                message = UserMessage(
                    content=item if isinstance(item, str) else str(item.get("content", item)), timestamp=now_ms()
                )
                await rt.append(sid, message, f"{rec.started_at_ms}-t{rec.turn_count}-inbox-{i}")
            rec.function_results = []
            rec.state = "assistant_streaming"
        elif rec.function_results:
            rec.function_results = []
            rec.state = "assistant_streaming"
        else:
            await self.end_turn(rec)
            await self.finish(rec)

    # ---- shared pieces ------------------------------------------------------------------------

    async def _start(self, rec: TurnRecord, prepared: PreparedCall) -> None:
        call = prepared.call
        stage(
            rec,
            {
                "type": "function_execution_start",
                "function_call_id": call.id,
                "function_id": call.function_id,
                "args": call.arguments,
            },
        )

    async def _apply(self, rec: TurnRecord, prepared: PreparedCall, verdict: Verdict) -> None:
        rt = self.rt
        call = prepared.call
        if verdict.kind == "pending":
            rec.awaiting_approval.append(
                Pending(function_call_id=call.id, function_id=call.function_id, args=call.arguments)
            )
            stage(
                rec,
                {
                    "type": "approval_requested",
                    "function_call_id": call.id,
                    "function_id": call.function_id,
                    "args": call.arguments,
                },
            )
            await rt.checkpoint(rec)
            return
        if verdict.kind == "deny" and verdict.denial is not None:
            stage(
                rec,
                {
                    "type": "policy_denied",
                    "function_call_id": call.id,
                    "function_id": call.function_id,
                    "details": verdict.denial.details,
                },
            )
            await self._executed(rec, prepared, verdict.denial, 0)
            return
        await self._run_call(rec, prepared)

    async def _run_call(self, rec: TurnRecord, prepared: PreparedCall) -> None:
        """At most once: the call is checkpointed as started before it is sent, so a redelivered step skips it."""
        work = rec.work = rec.work or Work()
        work.started.append(prepared.call.id)
        await self.rt.checkpoint(rec)
        started = monotonic_ms()
        result = await calls.execute(self.rt, prepared.call)
        await self._executed(rec, prepared, result, monotonic_ms() - started)

    async def _executed(self, rec: TurnRecord, prepared: PreparedCall, result: Any, duration_ms: int) -> None:
        """Checkpoint after every call, so a redelivered step never runs it twice."""
        work = rec.work or Work()
        rec.work = work
        work.executed[prepared.call.id] = ExecutedCall(
            call=prepared.call, result=result, is_error=result.is_error, duration_ms=duration_ms
        )
        stage(
            rec,
            {
                "type": "function_execution_end",
                "function_call_id": prepared.call.id,
                "function_id": prepared.call.function_id,
                "result": result.model_dump(mode="json"),
                "is_error": result.is_error,
                "duration_ms": duration_ms,
            },
        )
        await self.rt.checkpoint(rec)

    async def _finalize(self, rec: TurnRecord) -> None:
        """Results in the model's call order go to the transcript; then turn_end, then steer or stop."""
        work = rec.work or Work()
        results = [work.executed[p.call.id].result for p in work.prepared]
        for result in results:
            await self.rt.append(rec.session_id, result, f"{rec.started_at_ms}-fr-{result.function_call_id}")
        rec.function_results = results
        rec.work = None
        await self.end_turn(rec)
        if results and all(r.terminate for r in results):
            await self.finish(rec)
        else:
            rec.state = "steering_check"

    async def end_turn(self, rec: TurnRecord) -> None:
        """Exactly once per turn."""
        if rec.turn_end_emitted:
            return
        rec.turn_end_emitted = True
        event: dict[str, Any] = {
            "type": "turn_end",
            "message": rec.last_assistant.model_dump(mode="json") if rec.last_assistant else None,
            "function_results": [r.model_dump(mode="json") for r in rec.function_results],
        }
        if rec.model_meta:
            event["model_limit"] = rec.model_meta.get("context_window")
        stage(rec, event)

    async def _close_turn(self, rec: TurnRecord, message: AssistantMessage) -> None:
        """End the run with a message of the harness's own (a refusal, a stop)."""
        rec.last_assistant = message
        stage(rec, {"type": "message_complete", "message": message.model_dump(mode="json"), "body_streamed": False})
        await self.end_turn(rec)
        await self.finish(rec)

    async def finish(self, rec: TurnRecord) -> None:
        stage(rec, {"type": "agent_end", "messages": []})
        rec.state = "stopped"

    async def _fail(self, previous: TurnRecord, state: str, message: str) -> None:
        rec = previous.clone()
        rec.state = "failed"
        rec.error = TurnError(kind="transition_error", message=f"from {state}: {message}")
        error = own_message(rec.error.message, "error")
        stage(rec, {"type": "message_complete", "message": error.model_dump(mode="json"), "body_streamed": False})
        await self.rt.save(rec, previous)
        stage(rec, {"type": "agent_end", "messages": []})
        await self.rt.checkpoint(rec)
        _all_sent(rec)

    async def _budget_refusal(
        self, rec: TurnRecord, request: RunRequest, messages: list[AgentMessage]
    ) -> AssistantMessage | None:
        """Check the cap before the call with the prompt's input cost; a refusal (or no answer) stops the run."""
        budget_id, model, provider = request.budget_id or "", request.model, request.provider
        prompt_chars = len(request.system_prompt) + sum(
            len(spec.model_dump_json()) for spec in request.function_schemas
        )
        estimate = _cost(rec.model_meta, _tokens(messages) + prompt_chars // 4, 0)
        try:
            verdict = await self.rt.call("budget::check", {"budget_id": budget_id, "estimated_cost_usd": estimate})
        except InvocationError as exc:
            verdict = {"allowed": False, "reason": f"budget unreachable: {exc.message}", "remaining_usd": None}
        if verdict.get("allowed"):
            return None
        reason = verdict.get("reason") or "ceiling_exceeded"
        stage(
            rec,
            {
                "type": "budget_exceeded",
                "budget_id": budget_id,
                "reason": reason,
                "remaining_usd": verdict.get("remaining_usd"),
                "estimated_cost_usd": estimate,
            },
        )
        text = f"Budget exceeded: the run stopped before calling the model ({reason}; estimated ${estimate:.4f})."
        return own_message(text, "error", error_kind="permanent", model=model, provider=provider)

    async def _price(self, rec: TurnRecord, budget_id: str | None, message: AssistantMessage) -> None:
        """Cost from the catalog's prices, then recorded against the run's budget."""
        usage = message.usage
        if usage is None:
            return
        if usage.cost_usd is None:
            usage.cost_usd = _cost(rec.model_meta, usage.input + usage.cache_read + usage.cache_write, usage.output)
        if self.rt.settings.budgets and budget_id and usage.cost_usd:
            await self.rt.call("budget::record", {"budget_id": budget_id, "cost_usd": usage.cost_usd})


def _all_sent(rec: TurnRecord) -> None:
    """Events stored but not sent: the queue delivers this step again, and the step sends them first."""
    if rec.unsent:
        raise InvocationError(ErrorCode.EVENTS_UNSENT, f"events of {rec.session_id} could not be sent")


def _tokens(messages: list[AgentMessage]) -> int:
    """A cheap estimate: four characters a token."""
    return sum(len(m.model_dump_json()) for m in messages) // 4


def _usable(model: dict[str, Any]) -> int:
    window = int(model.get("context_window") or 0)
    reserved = int(model.get("max_output_tokens") or 0) or 20_000
    return max(0, window - reserved)


def _cost(model: dict[str, Any] | None, input_tokens: int, output_tokens: int) -> float:
    pricing = (model or {}).get("pricing") or {}
    return (
        input_tokens * float(pricing.get("input_per_1m", 0)) + output_tokens * float(pricing.get("output_per_1m", 0))
    ) / 1e6
