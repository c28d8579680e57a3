"""The `engine` backend: every agent call is a harness turn in a child session of the run's root session.

`EngineAgents.run` creates a child session (its parent is the run's root session, so the session tree shows
the whole team), starts it with `run::start` — the call's system prompt, its prompt as the one user
message, its tools as `functions` (and no `agent_trigger` meta-tool: an agent sees its tools alone), its
step cap as `max_turns` — and follows the session's `agent::events` until `agent_end`. Policy, approvals,
budgets, hooks, compaction and tracing apply as to any turn. Each `turn_end` is one step (the assistant
message and the results of its calls, as the inproc backend counts them); the harness's own closing
messages (the max_turns note, a budget refusal) are not steps.

The steps and usage come from the `turn_end` events rather than from `session-tree::messages`: the events
are the same durable record, and the transcript a model sees is cut by compaction, which would drop the
tool records a pattern reads.

`EngineClient` is the process's side of the engine: one worker and two bindings made before it connects
(`agent::events` and state scope `pattern_inputs`), whose events wake the calls waiting on them. Waiting is
event-driven: a wake-up reads the session's events from a cursor, so a late or repeated wake-up costs a
read, and a lost one (a client reconnecting) at most RESYNC_S seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import TypeAdapter

from teamster.harness.contracts import AssistantMessage, FunctionCallBlock, FunctionResultMessage, TextBlock
from teamster.harness.providers.stream import result_text
from teamster.patterns.agents import AgentCall, AgentError, AgentResult, OnStep, Step, ToolUse
from teamster.patterns.events import ApprovalRequest
from teamster.patterns.functions import INPUTS, InputClose, InputRecord, close_input
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker

EVENTS = "agent::events"
RESYNC_S = 30.0  # a wake-up lost on the way (a reconnecting client) delays a call by at most this much
WAKING = frozenset({"turn_end", "agent_end", "approval_requested"})  # the events a waiting call acts on
_RESULTS: TypeAdapter[list[FunctionResultMessage]] = TypeAdapter(list[FunctionResultMessage])


class EngineClient:
    """One worker's wake-ups for the calls waiting on it; make it before the worker connects or attaches."""

    def __init__(self, worker: Worker | None = None) -> None:
        self.worker = worker or Worker("patterns-client")
        if self.worker.state == "connected":
            # Bindings sent by a connected worker land some time later; a run could end before they do.
            raise ValueError("create the EngineClient before its worker connects: its bindings must precede any run")
        self._sessions: dict[str, asyncio.Event] = {}
        self._inputs: dict[str, asyncio.Future[str | None]] = {}
        # Function ids are global on an engine: each client process gets its own.
        tag = uuid.uuid4().hex[:12]
        on_event, on_input = f"patterns::client::{tag}::event", f"patterns::client::{tag}::input"
        self.worker.register_function(on_event, self._on_event, description="Wake the call following a session")
        self.worker.register_function(on_input, self._on_input, description="Deliver an answer to a waiting run")
        self.worker.register_trigger("stream", on_event, {"stream_name": EVENTS})
        self.worker.register_trigger("state", on_input, {"scope": INPUTS})

    @contextlib.contextmanager
    def watch(self, session_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `session_id` ends a turn or its run."""
        woken = self._sessions[session_id] = asyncio.Event()
        try:
            yield woken
        finally:
            self._sessions.pop(session_id, None)

    @contextlib.contextmanager
    def expect(self, request_id: str) -> Iterator[asyncio.Future[str | None]]:
        """A future resolved with the answer (None: closed unanswered) once `request_id` closes."""
        answered = self._inputs[request_id] = asyncio.get_running_loop().create_future()
        try:
            yield answered
        finally:
            self._inputs.pop(request_id, None)

    # Untyped on purpose: every event of the engine passes here, and most are dropped unread.
    async def _on_event(self, event: Any) -> None:
        woken = self._sessions.get(str(event.get("groupId")))
        data = (event.get("event") or {}).get("data")
        if woken is not None and isinstance(data, dict) and data.get("type") in WAKING:
            woken.set()

    async def _on_input(self, event: Any) -> None:
        answered = self._inputs.get(str(event.get("key")))
        if answered is None or answered.done() or not isinstance(event.get("new_value"), dict):
            return
        closed = InputRecord.model_validate(event["new_value"]).closed
        if closed is not None:
            answered.set_result(closed.answer)


class EngineAgents:
    """`Agents` on an engine for one pattern run: its provider and model, and optionally its budget."""

    def __init__(
        self,
        client: EngineClient,
        provider: str,
        model: str,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        budget_id: str | None = None,
        workspace_id: str | None = None,
        approval_mode: str | None = None,
    ) -> None:
        self.client = client
        self.worker = client.worker
        self.provider = provider
        self.model = model
        self.run_id = run_id
        self.session_id = session_id or str(uuid.uuid4())  # the root session; agent calls are its children
        self.budget_id = budget_id
        self.workspace_id = workspace_id
        self.approval_mode = approval_mode  # set on every agent session; None: the engine's default
        self.on_approval: Callable[[ApprovalRequest], None] | None = None  # a call is waiting for a person
        self._rooted = asyncio.Lock()
        self._root_ready = False

    async def run(self, call: AgentCall, on_step: OnStep) -> AgentResult:
        tools = {tool.function_id: tool.name for tool in call.tools}
        await self._ensure_root(call.agent)
        child = await self._call(
            call.agent, "session-tree::create", {"display_name": call.agent, "parent_session_id": self.session_id}
        )
        session_id = str(child["session_id"])
        if self.approval_mode is not None:
            await self._set_mode(call.agent, session_id, self.approval_mode)
        with self.client.watch(session_id) as woken:
            try:
                await self._start(call, session_id)
                return await self._follow(call.agent, session_id, woken, tools, on_step)
            except asyncio.CancelledError:
                # The pattern stopped waiting (a sibling failed, the run was aborted): so does the turn.
                with contextlib.suppress(InvocationError):
                    await self.worker.trigger("run::abort", {"session_id": session_id})
                raise

    async def ask(
        self, request_id: str, agent: str, question: str, timeout_s: float, announce: Callable[[], None]
    ) -> str | None:
        record = InputRecord(
            request_id=request_id,
            run_id=self.run_id,
            session_id=self.session_id,
            agent=agent,
            question=question,
            asked_at=now_ms(),
        )
        with self.client.expect(request_id) as answered:  # listening before the record exists: no answer missed
            await self._call(agent, "state::set", {"scope": INPUTS, "key": request_id, "value": record.model_dump()})
            announce()  # stored first, so an answer sent the moment the event is seen finds the request
            try:
                return await asyncio.wait_for(asyncio.shield(answered), timeout_s)
            except TimeoutError:
                # An answer may land first by a hair: the first close counts, whoever made it.
                try:
                    return (await close_input(self.worker, request_id, InputClose(reason="timed_out"))).answer
                except InvocationError as exc:
                    raise AgentError(f"{agent}: closing input request {request_id} failed: {exc.message}") from exc
            except asyncio.CancelledError:
                with contextlib.suppress(InvocationError):
                    await close_input(self.worker, request_id, InputClose(reason="cancelled"))
                raise

    async def _ensure_root(self, agent: str) -> None:
        async with self._rooted:
            if not self._root_ready:
                name = f"pattern run {self.run_id}" if self.run_id else "pattern run"
                await self._call(agent, "session-tree::ensure", {"session_id": self.session_id, "display_name": name})
                self._root_ready = True

    async def _set_mode(self, agent: str, session_id: str, mode: str) -> None:
        try:
            await self.worker.trigger("approval::set_mode", {"session_id": session_id, "mode": mode})
        except InvocationError as exc:
            # With no approval worker (the thin profile) nothing is gated: "full" holds already.
            if exc.code != ErrorCode.FUNCTION_NOT_FOUND or mode != "full":
                raise AgentError(f"{agent}: approval mode {mode!r} needs the approval worker: {exc.message}") from exc

    async def _start(self, call: AgentCall, session_id: str) -> None:
        payload: dict[str, Any] = {
            "session_id": session_id,
            "provider": self.provider,
            "model": self.model,
            "system_prompt": call.system,
            "messages": [{"role": "user", "content": call.prompt, "timestamp": now_ms()}],
            "functions": [tool.function_id for tool in call.tools],
            "agent_trigger": False,
            "max_turns": call.max_steps,
            "agent_id": call.agent,
            "budget_id": self.budget_id,
            "workspace_id": self.workspace_id,
        }
        started = await self._call(call.agent, "run::start", payload)
        if not started.get("started"):
            raise AgentError(f"{call.agent}: the engine did not start the turn ({started.get('reason', 'refused')})")

    async def _follow(
        self, agent: str, session_id: str, woken: asyncio.Event, tools: Mapping[str, str], on_step: OnStep
    ) -> AgentResult:
        """Read the session's events from a cursor, woken by the client, until the run ends."""
        result = AgentResult()
        cursor = 0
        failure: str | None = None
        while True:
            woken.clear()  # before the read: a wake-up during it makes the next wait return at once
            page = await self._call(agent, "events::list", {"session_id": session_id, "after": cursor})
            for event in page["events"]:
                cursor = event["seq"]
                kind = event["type"]
                if kind == "turn_end" and event.get("message") is not None:
                    message = AssistantMessage.model_validate(event["message"])
                    if message.stop_reason in ("error", "aborted"):
                        continue  # the failure itself arrives as message_complete
                    step = _step(len(result.steps), message, _RESULTS.validate_python(event["function_results"]), tools)
                    result.steps.append(step)
                    if message.usage is not None:
                        result.input_tokens += message.usage.input
                        result.output_tokens += message.usage.output
                    on_step(step)
                elif kind == "approval_requested" and self.on_approval is not None:
                    self.on_approval(
                        ApprovalRequest(
                            call_id=event["function_call_id"],
                            session_id=session_id,
                            agent=agent,
                            function_id=event["function_id"],
                            arguments=event.get("args") or {},
                        )
                    )
                elif kind == "message_complete":
                    failure = _failure(event["message"]) or failure
                elif kind == "turn_state_changed" and event["new_value"].get("state") == "failed":
                    failure = f"the turn failed: {failure or event['new_value'].get('error', {}).get('message')}"
                elif kind == "agent_end":
                    if failure is not None:
                        raise AgentError(f"{agent}: {failure}")
                    return result
            if not page["more"]:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), RESYNC_S)

    async def _call(self, agent: str, function_id: str, payload: Any) -> Any:
        """A call to the engine; its failure ends the agent call (and so the pattern run) with the reason."""
        try:
            return await self.worker.trigger(function_id, payload)
        except InvocationError as exc:
            raise AgentError(f"{agent}: {function_id} failed: {exc.message}") from exc


def _step(
    index: int, message: AssistantMessage, results: list[FunctionResultMessage], tools: Mapping[str, str]
) -> Step:
    """One turn as inproc reports a step: its text, and each call with what its tool recorded (or the error)."""
    arguments = {b.id: b.arguments for b in message.content if isinstance(b, FunctionCallBlock)}
    text = "".join(b.text for b in message.content if isinstance(b, TextBlock)).strip()
    uses = [
        ToolUse(
            tools.get(r.function_id, r.function_id),
            arguments.get(r.function_call_id, {}),
            result_text(r) if r.is_error else r.details,
            is_error=r.is_error,
        )
        for r in results
    ]
    return Step(index=index, text=text, tool_uses=uses)


def _failure(raw: dict[str, Any]) -> str | None:
    """The reason of an assistant message that ends the run badly (a provider error, a refusal, an abort)."""
    message = AssistantMessage.model_validate(raw)
    if message.stop_reason not in ("error", "aborted"):
        return None
    text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
    return message.error_message or text or message.stop_reason
