"""One pattern run: the context a pattern works in (events, agent calls, totals, human input).

`Run.call` wraps every agent call in its events: `iteration_start`, a live `agent_step` per step,
optional `tool_call`s, then `iteration_end` with the call's usage and cost summed over all its steps.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from teamster.patterns import pricing
from teamster.patterns.agents import AgentCall, AgentResult, Agents, Step
from teamster.patterns.events import (
    AgentStep,
    Emitter,
    Event,
    InputRequest,
    InputResolved,
    IterationEnd,
    IterationStart,
    Sink,
    ToolCall,
    WorkflowComplete,
    WorkflowError,
    WorkflowStart,
    preview,
)
from teamster.patterns.history import render_history
from teamster.patterns.request import RunRequest
from teamster.protocol.clock import monotonic_ms

Pattern = Callable[["Run"], Awaitable[None]]
Preview = Callable[[AgentResult], str]


class Run:
    def __init__(self, request: RunRequest, agents: Agents, sink: Sink) -> None:
        self.request = request
        self.options = request.options
        self.agents = agents
        self.provider = request.provider or pricing.provider_of(request.model)
        self.events = Emitter(request.run_id or uuid.uuid4().hex, sink)
        self.finished = False
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self._price = pricing.pricing(self.provider, request.model)
        self._agents_used: dict[str, None] = {}
        self._started = monotonic_ms()

    @property
    def run_id(self) -> str:
        return self.events.run_id

    @property
    def query(self) -> str:
        return self.request.query

    def history(self) -> str:
        return render_history(self.request.history)

    def emit(self, event: Event) -> None:
        self.events.emit(event)

    def start(self, starting_agent: str | None = None) -> None:
        """Emit `workflow_start`: every pattern's first event."""
        self.emit(
            WorkflowStart(
                mode=self.request.pattern, model=self.request.model, query=self.query, starting_agent=starting_agent
            )
        )

    async def call(
        self,
        call: AgentCall,
        *,
        iteration: int,
        start: bool = True,
        steps: bool = True,
        tool_calls: Callable[[dict[str, Any]], str | None] | None = None,
        preview_of: Preview | None = None,
        completed: Callable[[AgentResult], bool] | None = None,
        on_result: Callable[[AgentResult], None] | None = None,
    ) -> AgentResult:
        """Run one agent call inside its events; `tool_calls`, when given, previews each call's arguments.

        `on_result` runs after the last step and before `iteration_end`, for events the reference emits there.
        """
        if self.options.max_turns is not None and call.max_steps > self.options.max_turns:
            call = dataclasses.replace(call, max_steps=self.options.max_turns)
        if start:
            self.emit(IterationStart(iteration=iteration, agent=call.agent))
        began = monotonic_ms()

        def on_step(step: Step) -> None:
            if steps and (step.text or step.tool_uses):
                names = [u.name for u in step.tool_uses]
                self.emit(
                    AgentStep(
                        agent=call.agent, iteration=iteration, step_index=step.index, text=step.text, tool_names=names
                    )
                )

        result = await self.agents.run(call, on_step)
        cost = pricing.cost_usd(self._price, result.input_tokens, result.output_tokens)
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        self.cost_usd += cost
        self._agents_used.setdefault(call.agent)
        if tool_calls is not None:
            for step in result.steps:
                for use in step.tool_uses:
                    self.emit(ToolCall(agent=call.agent, tool_name=use.name, preview=tool_calls(use.arguments)))
        if on_result is not None:
            on_result(result)
        self.emit(
            IterationEnd(
                iteration=iteration,
                agent=call.agent,
                duration_ms=monotonic_ms() - began,
                step_count=len(result.steps),
                output_preview=preview((preview_of or _text)(result)),
                completed=completed(result) if completed is not None else None,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                cost_usd=cost,
            )
        )
        return result

    async def ask(self, agent: str, question: str) -> str | None:
        """Ask the human; the answer, or None when the wait timed out."""
        request_id = uuid.uuid4().hex
        event = InputRequest(request_id=request_id, agent=agent, question=question)
        answer = await self.agents.ask(
            request_id, agent, question, self.options.input_timeout_s, lambda: self.emit(event)
        )
        self.emit(InputResolved(request_id=request_id, answer=answer or "", timed_out=answer is None))
        return answer

    def complete(self, **fields: Any) -> None:
        """Emit `workflow_complete` with the run's totals; `agents_used` defaults to every agent that ran."""
        fields.setdefault("agents_used", list(self._agents_used))
        self.finished = True
        self.emit(
            WorkflowComplete(
                mode=self.request.pattern,
                total_duration_ms=monotonic_ms() - self._started,
                total_input_tokens=self.input_tokens,
                total_output_tokens=self.output_tokens,
                total_cost_usd=self.cost_usd,
                **fields,
            )
        )

    def fail(self, error: str) -> None:
        if not self.finished:
            self.finished = True
            self.emit(WorkflowError(error=error))


def _text(result: AgentResult) -> str:
    return result.text
