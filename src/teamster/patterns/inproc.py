"""The `inproc` backend: agents call provider stream functions directly, in this process.

No engine, no policy, no budgets: a small tool loop per agent call. Tool results are written the way the
orchestrator writes them (the record as JSON text), so the same script gives the same usage on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from teamster.harness import credentials as credential_store
from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    FunctionCallBlock,
    FunctionResultMessage,
    FunctionSpec,
    StreamRequest,
    TextBlock,
    UserMessage,
)
from teamster.harness.providers import anthropic, local, openai, scripted
from teamster.harness.providers.credentials import Credentials
from teamster.harness.providers.errors import classify_error
from teamster.harness.providers.events import EventWriter
from teamster.harness.providers.worker import StreamFn
from teamster.patterns.agents import (
    AgentCall,
    AgentError,
    AgentResult,
    InputNotFound,
    OnApproval,
    OnStep,
    Step,
    ToolUse,
)
from teamster.patterns.inputs import Inputs
from teamster.patterns.tools import ToolError


async def env_credentials(provider: str) -> Any:
    """A provider's key from its environment variable, or None."""
    found = credential_store.resolve(provider, {})
    return found[0] if found is not None else None


def default_streams(scripts: scripted.Scripts | None = None) -> dict[str, StreamFn]:
    return {
        "scripted": scripted.streamer(scripts),
        "openai": openai.streamer(),
        "anthropic": anthropic.streamer(),
        "local": local.streamer(),
    }


class InprocAgents:
    """`Agents` for one run's provider and model; human answers arrive through `inputs`."""

    def __init__(
        self,
        provider: str,
        model: str,
        *,
        streams: Mapping[str, StreamFn] | None = None,
        inputs: Inputs | None = None,
        credentials: Credentials = env_credentials,
    ) -> None:
        streams = streams if streams is not None else default_streams()
        if provider not in streams:
            raise ValueError(f"unknown provider {provider!r}: one of {', '.join(sorted(streams))}")
        self.provider = provider
        self.model = model
        self.inputs = inputs or Inputs()
        self.credentials = credentials
        self._stream = streams[provider]

    async def answer(self, request_id: str, answer: str) -> None:
        if not self.inputs.resolve(request_id, answer):
            raise InputNotFound(f"input request {request_id} is no longer open")

    def show_approvals(self, on_approval: OnApproval) -> None:
        """Nothing to show: this backend has no approval gate, every call runs at once."""

    async def run(self, call: AgentCall, on_step: OnStep) -> AgentResult:
        tools = {tool.function_id: tool for tool in call.tools}
        specs = [FunctionSpec(name=t.function_id, description=t.description, parameters=t.schema()) for t in call.tools]
        messages: list[AgentMessage] = [UserMessage(content=call.prompt)]
        result = AgentResult()
        for index in range(call.max_steps):
            request = StreamRequest(
                writer_ref={},
                system_prompt=call.system,
                model=self.model,
                messages=messages,
                tools=specs,
                agent_id=call.agent,
            )
            reply = await self._assistant(call.agent, request)
            if reply.usage is not None:
                result.input_tokens += reply.usage.input
                result.output_tokens += reply.usage.output
            messages.append(reply)
            step = Step(index=index, text="".join(b.text for b in reply.content if isinstance(b, TextBlock)).strip())
            for block in reply.content:
                if isinstance(block, FunctionCallBlock):
                    use, message = _execute(tools, block)
                    step.tool_uses.append(use)
                    messages.append(message)
            result.steps.append(step)
            on_step(step)
            if not step.tool_uses:
                break
        return result

    async def ask(
        self, request_id: str, agent: str, question: str, timeout_s: float, announce: Callable[[], None]
    ) -> str | None:
        self.inputs.open(request_id)
        announce()
        return await self.inputs.wait(request_id, timeout_s)

    async def _assistant(self, agent: str, request: StreamRequest) -> AssistantMessage:
        out = EventWriter(_discard, provider=self.provider, model=self.model)
        try:
            await out.start()
            await self._stream(request, out, self.credentials)
        except Exception as exc:
            _, message = classify_error(exc)
            raise AgentError(f"{agent}: {self.provider}: {message}") from exc
        if out.status != "done":
            raise AgentError(f"{agent}: {self.provider}: the provider ended without a final message")
        return out.message


async def _discard(frame: str) -> None:
    """Nobody reads the partial events in-process: the step is reported when complete."""


def _execute(tools: Mapping[str, Any], block: FunctionCallBlock) -> tuple[ToolUse, FunctionResultMessage]:
    tool = tools.get(block.function_id)
    # Error texts are worded as the orchestrator words them, so the model reads the same on both backends.
    if tool is None:
        text = f"No function named {block.function_id!r} is offered."
        return ToolUse(block.function_id, block.arguments, text, is_error=True), _result(block, text, None, True)
    try:
        record = tool.execute(block.arguments)
    except ToolError as exc:
        text = f"{block.function_id} failed: {exc}"
        return ToolUse(tool.name, block.arguments, text, is_error=True), _result(block, text, None, True)
    return ToolUse(tool.name, block.arguments, record), _result(block, json.dumps(record), record, False)


def _result(block: FunctionCallBlock, text: str, details: Any, is_error: bool) -> FunctionResultMessage:
    return FunctionResultMessage(
        function_call_id=block.id,
        function_id=block.function_id,
        content=[TextBlock(text=text)],
        details=details,
        is_error=is_error,
    )
