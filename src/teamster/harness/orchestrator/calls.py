"""One function call from the model: plan it, ask the gates, run it, shape its result (§2.6, §2.7)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from teamster.harness.contracts import (
    AssistantMessage,
    DenialEnvelope,
    FunctionCallBlock,
    FunctionResultMessage,
    PolicyDecision,
    TextBlock,
)
from teamster.harness.orchestrator.prompt import AGENT_TRIGGER
from teamster.harness.orchestrator.record import Call, PreparedCall
from teamster.harness.orchestrator.runtime import Runtime
from teamster.protocol import InvocationError
from teamster.protocol.access import access_of
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode

log = logging.getLogger("teamster.harness")

BEFORE_TOPIC = "agent::before_function_call"
AFTER_TOPIC = "agent::after_function_call"
# Our own link to the engine broke: whether the call ran is unknown, so it is no result to record.


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Literal["allow", "deny", "pending"]
    denial: FunctionResultMessage | None = None


ALLOW = Verdict("allow")
PENDING = Verdict("pending")


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


async def consult(rt: Runtime, session_id: str, call: Call) -> Verdict:
    """The target's access mark, approval settings, then policy, then before-hooks; any gate that fails
    to answer denies."""
    try:
        access = await _access(rt, call.function_id)
    except InvocationError as exc:
        return deny(call, "gate_unavailable", f"function catalogue unreachable: {exc.message}")
    if access is not None:  # in every profile: no model reads a key or acts for a person
        return deny(
            call, "permissions", f"{call.function_id} is marked {access}: a model may not call it", rule_id="access"
        )
    settings = rt.settings
    context = {"session_id": session_id, "function_call": call.model_dump()}
    if settings.approvals:
        try:
            decided = await rt.call(
                "approval::decide",
                {"session_id": session_id, "function_id": call.function_id},
                timeout=settings.policy_timeout_s,
            )
        except InvocationError as exc:
            return deny(call, "gate_unavailable", f"approval settings unreachable: {exc.message}")
        if decided["decision"] == "deny":
            return deny(
                call, "permissions", f"{call.function_id} can only be called by a person", rule_id=decided.get("reason")
            )
        if decided["decision"] == "allow":
            return ALLOW
    if settings.policy:
        try:
            raw = await rt.call(
                "policy::check_permissions",
                {"function_id": call.function_id, "args": call.arguments},
                timeout=settings.policy_timeout_s,
            )
            policy = PolicyDecision.model_validate(raw)
        except (InvocationError, ValidationError) as exc:
            reason = exc.message if isinstance(exc, InvocationError) else "malformed reply"
            return deny(call, "gate_unavailable", f"policy unreachable: {reason}")
        if policy.decision == "deny":
            return deny(call, "permissions", _policy_reason(call, policy), policy=policy)
        if policy.decision == "needs_approval":
            if settings.approvals:
                return PENDING
            return deny(call, "permissions", f"{call.function_id} needs approval, and no approval worker runs")
    if settings.hooks:
        try:
            hooked = await rt.call("hook-fanout::before", {"topic": BEFORE_TOPIC, "payload": context})
        except InvocationError as exc:
            return deny(call, "gate_unavailable", f"before-hook unavailable: {exc.message}")
        if hooked.get("block"):
            return deny(
                call, "permissions", str(hooked.get("reason") or "blocked by a before-hook"), rule_id="before_hook"
            )
    return ALLOW


async def _access(rt: Runtime, function_id: str) -> str | None:
    """The function's access mark (`teamster.protocol.access`); one this worker's own session may not
    even see counts as marked, one that does not exist as unmarked (calling it fails anyway)."""
    try:
        info = await rt.call("engine::functions::info", {"function_id": function_id})
    except InvocationError as exc:
        if exc.code == ErrorCode.FORBIDDEN:
            return "hidden"
        if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
            return None
        raise
    return access_of(info.get("metadata"))


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


def deny(
    call: Call,
    denied_by: Literal["permissions", "user", "gate_unavailable", "budget"],
    reason: str,
    *,
    rule_id: str | None = None,
    policy: PolicyDecision | None = None,
) -> Verdict:
    envelope = DenialEnvelope(
        denied_by=denied_by,
        function_id=call.function_id,
        rule_id=policy.rule_id if policy else rule_id,
        rule_action=policy.rule_action if policy else None,
        matched_constraint=policy.matched_constraint if policy else None,
        args_excerpt=json.dumps(call.arguments)[:200],
        reason=reason,
    )
    return Verdict("deny", result_of(call, reason, envelope.model_dump(exclude_none=True), True))


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
        reply = await rt.call(
            "hook-fanout::publish_collect",
            {
                "topic": AFTER_TOPIC,
                "payload": {"function_call": call.model_dump(), "result": result.model_dump(mode="json")},
                "merge_rule": "field_merge",
                "timeout_ms": rt.settings.hook_timeout_ms,
            },
        )
    except InvocationError as exc:
        log.warning("after-hook for %s failed, result kept: %s", call.function_id, exc)
        return result
    merged = reply.get("merged")
    if not reply.get("replies") or not isinstance(merged, dict):
        return result
    # field_merge starts from our payload, so a subscriber's rewrite arrives as top-level fields.
    update = {key: merged[key] for key in ("content", "details", "terminate") if key in merged}
    try:
        return FunctionResultMessage.model_validate({**result.model_dump(), **update})
    except ValidationError:
        log.warning("after-hook for %s returned an unusable result; kept the original", call.function_id)
        return result


def _policy_reason(call: Call, policy: PolicyDecision) -> str:
    text = f"Permission denied: {call.function_id} matched rule {policy.rule_id}"
    if policy.matched_constraint is not None:
        c = policy.matched_constraint
        text += f" on {c.field} {c.operator} {c.value!r}"
    return text


def _hint(function_id: str) -> str | None:
    """A skill path passed as a function id (`w/skills/w/fn`) most likely meant `w::fn`."""
    parts = [p for p in function_id.split("/") if p]
    if len(parts) >= 2 and "::" not in function_id:
        return f"did you mean {parts[0]}::{parts[-1]}?"
    return None
