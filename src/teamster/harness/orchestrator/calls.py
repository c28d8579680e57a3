"""One function call from the model: plan it, run it, shape its result (§2.6, §2.7); the gates are `gates`."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from teamster.harness.contracts import (
    AFTER_FUNCTION_CALL,
    AssistantMessage,
    Collected,
    FunctionCallBlock,
    FunctionResultMessage,
    TextBlock,
)
from teamster.harness.orchestrator.prompt import AGENT_TRIGGER
from teamster.harness.orchestrator.record import Call, PreparedCall
from teamster.harness.orchestrator.runtime import Runtime
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode

log = logging.getLogger("teamster.harness")


def plan(message: AssistantMessage, native: list[str], meta: bool = True) -> list[PreparedCall]:
    """Every function_call block of the message, in order: unwrapped from the meta-tool (when offered), or refused."""
    prepared = []
    for block in message.content:
        if not isinstance(block, FunctionCallBlock):
            continue
        via_meta = meta and block.function_id == AGENT_TRIGGER
        if via_meta:
            target = block.arguments.get("function")
            payload = block.arguments.get("payload")
            call = Call(
                id=block.id, function_id=str(target or ""), arguments=payload if isinstance(payload, dict) else {}
            )
        else:
            call = Call(id=block.id, function_id=block.function_id, arguments=block.arguments)
        if not call.function_id or (not via_meta and call.function_id not in native):
            missing = {"error": "missing_function", "function": call.function_id or None}
            hint = f"; call one through `{AGENT_TRIGGER}`" if meta else ""
            text = f"No function named {call.function_id!r} is offered{hint}."
            prepared.append(PreparedCall(route="synthetic", call=call, result=result_of(call, text, missing, True)))
        else:
            prepared.append(PreparedCall(route="dispatch", call=call))
    return prepared


async def execute(rt: Runtime, call: Call) -> FunctionResultMessage:
    """Run the function and shape whatever comes back, error or not, as a function result.

    A lost engine link is re-raised: the step is delivered again and finds the call `interrupted`.
    """
    try:
        value = await rt.call(call.function_id, call.arguments)
    except InvocationError as exc:
        if exc.code == ErrorCode.CONNECTION_LOST:
            raise
        details: dict[str, Any]
        if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
            details = {
                "error": ErrorCode.FUNCTION_NOT_FOUND,
                "function": call.function_id,
                "hint": _hint(call.function_id),
            }
        elif exc.code == ErrorCode.TIMEOUT:
            details = {"error": "timeout", "function": call.function_id}
        else:
            details = {"error": "handler_error", "code": exc.code, "message": exc.message}
        result = result_of(call, f"{call.function_id} failed: {exc.message}", details, True)
    else:
        result = _normalise(call, value)
    if rt.settings.hooks:
        result = await _after_hook(rt, call, result)
    return result


def interrupted(call: Call) -> FunctionResultMessage:
    """The result of a call that was sent but never answered (the engine or this worker died meanwhile)."""
    text = (
        f"{call.function_id} was interrupted: it may or may not have completed, and it was not run again "
        "(a call runs at most once)."
    )
    return result_of(call, text, {"error": "interrupted", "function": call.function_id}, True)


def result_of(call: Call, text: str, details: Any, is_error: bool, *, terminate: bool = False) -> FunctionResultMessage:
    return FunctionResultMessage(
        function_call_id=call.id,
        function_id=call.function_id,
        content=[TextBlock(text=text)],
        details=details,
        is_error=is_error,
        terminate=terminate,
        timestamp=now_ms(),
    )


def _normalise(call: Call, value: Any) -> FunctionResultMessage:
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        try:
            return FunctionResultMessage.model_validate(
                {**value, "function_call_id": call.id, "function_id": call.function_id, "timestamp": now_ms()}
            )
        except ValidationError:
            pass  # not a function result after all: fall through to plain JSON
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return result_of(call, text, value, False)


async def _after_hook(rt: Runtime, call: Call, result: FunctionResultMessage) -> FunctionResultMessage:
    """Subscribers may rewrite a result; a hook that fails keeps the original."""
    try:
        raw = await rt.call(
            "hook-fanout::publish_collect",
            {
                "topic": AFTER_FUNCTION_CALL,
                "payload": {"function_call": call.model_dump(), "result": result.model_dump(mode="json")},
                "merge_rule": "field_merge",
                "timeout_ms": rt.settings.hook_timeout_ms,
            },
        )
        reply = Collected.model_validate(raw)
    except (InvocationError, ValidationError) as exc:
        log.warning("after-hook for %s failed, result kept: %s", call.function_id, exc)
        return result
    merged = reply.merged
    if not reply.replies or not isinstance(merged, dict):
        return result
    # field_merge starts from our payload, so a subscriber's rewrite arrives as top-level fields.
    update = {key: merged[key] for key in ("content", "details", "terminate") if key in merged}
    try:
        return FunctionResultMessage.model_validate({**result.model_dump(), **update})
    except ValidationError:
        log.warning("after-hook for %s returned an unusable result; kept the original", call.function_id)
        return result


def _hint(function_id: str) -> str | None:
    """A skill path passed as a function id (`w/skills/w/fn`) most likely meant `w::fn`."""
    parts = [p for p in function_id.split("/") if p]
    if len(parts) >= 2 and "::" not in function_id:
        return f"did you mean {parts[0]}::{parts[-1]}?"
    return None
