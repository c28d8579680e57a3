"""Stream one turn's assistant message from the run's provider (§2.5), through `assistant_stream`."""

from __future__ import annotations

from typing import Any

from teamster.harness.assistant_stream import OnPartial, stream_assistant
from teamster.harness.contracts import AgentMessage, AssistantMessage, StreamRequest
from teamster.harness.orchestrator.record import RunSpec
from teamster.harness.orchestrator.runtime import Runtime, own_message


async def stream_turn(
    rt: Runtime, run: RunSpec, messages: list[AgentMessage], on_partial: OnPartial
) -> tuple[AssistantMessage, bool]:
    """The final assistant message (an error message when the provider failed) and whether a body streamed."""

    def request(writer_ref: dict[str, Any]) -> StreamRequest:
        return StreamRequest(
            writer_ref=writer_ref,
            system_prompt=run.system_prompt,
            model=run.model,
            messages=messages,
            tools=run.function_schemas,
            agent_id=run.agent_id,
        )

    outcome = await stream_assistant(rt.worker, run.provider, request, rt.settings.provider_timeout_s, on_partial)
    final = outcome.final
    if final is None:
        failure = f"provider {run.provider} failed: {outcome.failure}" if outcome.failure is not None else None
        text = failure or "provider channel closed without a final message"
        final = own_message(text, "error", error_kind="transient", model=run.model, provider=run.provider)
    return final, outcome.streamed
