"""The gates before a call (§2.7, §3, §4, §6): the target's access mark, approval settings, policy and
before-hooks, in that order; any gate that fails to answer denies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from teamster.harness.contracts import (
    BEFORE_FUNCTION_CALL,
    ApprovalCheck,
    BeforeVerdict,
    DenialEnvelope,
    FunctionDescription,
    FunctionResultMessage,
    PolicyDecision,
)
from teamster.harness.orchestrator.calls import result_of
from teamster.harness.orchestrator.record import Call
from teamster.harness.orchestrator.runtime import Runtime
from teamster.protocol import InvocationError
from teamster.protocol.access import access_of
from teamster.protocol.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class Clearance:
    """What the gates together say of one call: run it, refuse it (with the refusal as its result), or park it."""

    kind: Literal["allow", "deny", "pending"]
    denial: FunctionResultMessage | None = None


ALLOW = Clearance("allow")
PENDING = Clearance("pending")


async def consult(rt: Runtime, session_id: str, call: Call) -> Clearance:
    """What the gates say of `call`, asked in order until one settles it."""
    try:
        access = await _access(rt, call.function_id)
    except (InvocationError, ValidationError) as exc:
        reason = exc.message if isinstance(exc, InvocationError) else "malformed reply"
        return deny(call, "gate_unavailable", f"function catalogue unreachable: {reason}")
    if access is not None:  # in every profile: no model reads a key or acts for a person
        return deny(
            call, "permissions", f"{call.function_id} is marked {access}: a model may not call it", rule_id="access"
        )
    settings = rt.settings
    context = {"session_id": session_id, "function_call": call.model_dump()}
    if settings.approvals:
        try:
            raw = await rt.call(
                "approval::decide",
                {"session_id": session_id, "function_id": call.function_id},
                timeout=settings.policy_timeout_s,
            )
            decided = ApprovalCheck.model_validate(raw)
        except (InvocationError, ValidationError) as exc:
            reason = exc.message if isinstance(exc, InvocationError) else "malformed reply"
            return deny(call, "gate_unavailable", f"approval settings unreachable: {reason}")
        if decided.decision == "deny":
            return deny(
                call, "permissions", f"{call.function_id} can only be called by a person", rule_id=decided.reason
            )
        if decided.decision == "allow":
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
            hooked = BeforeVerdict.model_validate(
                await rt.call("hook-fanout::before", {"topic": BEFORE_FUNCTION_CALL, "payload": context})
            )
        except (InvocationError, ValidationError) as exc:
            reason = exc.message if isinstance(exc, InvocationError) else "malformed reply"
            return deny(call, "gate_unavailable", f"before-hook unavailable: {reason}")
        if hooked.block:
            return deny(call, "permissions", hooked.reason or "blocked by a before-hook", rule_id="before_hook")
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
    return access_of(FunctionDescription.model_validate(info).metadata)


def deny(
    call: Call,
    denied_by: Literal["permissions", "user", "gate_unavailable", "budget"],
    reason: str,
    *,
    rule_id: str | None = None,
    policy: PolicyDecision | None = None,
) -> Clearance:
    envelope = DenialEnvelope(
        denied_by=denied_by,
        function_id=call.function_id,
        rule_id=policy.rule_id if policy else rule_id,
        rule_action=policy.rule_action if policy else None,
        matched_constraint=policy.matched_constraint if policy else None,
        args_excerpt=json.dumps(call.arguments)[:200],
        reason=reason,
    )
    return Clearance("deny", result_of(call, reason, envelope.model_dump(exclude_none=True), True))


def _policy_reason(call: Call, policy: PolicyDecision) -> str:
    text = f"Permission denied: {call.function_id} matched rule {policy.rule_id}"
    if policy.matched_constraint is not None:
        c = policy.matched_constraint
        text += f" on {c.field} {c.operator} {c.value!r}"
    return text
