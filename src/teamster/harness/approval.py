"""The `approval-gate` worker: human decisions on parked calls and per-session approval settings (iii-harness §4).

`approval::resolve` records a human's allow/deny for one parked call at `approvals/<sid>/<cid>`,
where the orchestrator's state trigger picks it up; the first decision of a call stands. The settings functions keep
`approval_settings/<sid>` = `{mode, always_allow, approved_always, mode_set_at}`, and
`approval::decide` applies them for the orchestrator before it consults policy.

Human-only functions (`approval::resolve` and every settings function) can never be called by the
model: `approval::decide` answers `deny` for them in every mode, so a model cannot approve its own
calls or widen its own permissions. They are registered with the `human` access mark, so no worker
on the bus reaches them either: only the app in-process, or an `admin` connection.

Settings mutations change only the fields they touch, through `state::update` ops. Edits to a
grant list (dedupe on add, filter on remove) and decisions (first one stands) are read-then-write, so
they run one at a time under this worker's lock; as the only owner of these function ids, the worker
sees every such edit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from teamster.protocol.access import mark
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker
from teamster.sdk.state import update_state

log = logging.getLogger("teamster.harness.approval")

APPROVALS_SCOPE = "approvals"
SETTINGS_SCOPE = "approval_settings"
HUMAN_ONLY = frozenset(
    {
        "approval::resolve",
        "approval::get_settings",
        "approval::set_mode",
        "approval::add_always_allow",
        "approval::remove_always_allow",
        "approval::approve_always",
        "approval::clear_settings",
    }
)

Mode = Literal["manual", "auto", "full"]
GrantList = Literal["always_allow", "approved_always"]


class Grant(BaseModel):
    function_id: str
    granted_at: int  # ms since the epoch
    granted_by: Literal["user_click"] = "user_click"


class ApprovalSettings(BaseModel):
    mode: Mode
    always_allow: list[Grant] = Field(default_factory=list)
    approved_always: list[Grant] = Field(default_factory=list)
    mode_set_at: int = 0

    def grants(self, which: GrantList, function_id: str) -> bool:
        return any(grant.function_id == function_id for grant in getattr(self, which))


class Verdict(BaseModel):
    """The reply of `approval::decide`."""

    decision: Literal["allow", "ask", "deny"]
    reason: str


class ResolveRequest(BaseModel):
    session_id: str
    function_call_id: str
    decision: Literal["allow", "deny"]
    reason: str | None = None


class SessionRequest(BaseModel):
    session_id: str = Field(min_length=1)


class ModeRequest(SessionRequest):
    mode: Mode


class FunctionRequest(SessionRequest):
    function_id: str = Field(min_length=1)


class ApprovalGate:
    """The handlers, with what they share: the worker to call state through and the default mode."""

    def __init__(self, worker: Worker, default_mode: Mode) -> None:
        self.worker = worker
        self.default_mode = default_mode
        self._lock = asyncio.Lock()

    async def resolve(self, req: ResolveRequest) -> dict[str, Any]:
        """Record a human's allow/deny for a parked call; the orchestrator resumes on the state change.

        The first decision stands: the same decision again is acknowledged and writes nothing (a client
        retrying), a different one is refused as `already_decided` with the decision that stands.
        """
        if not (_valid_id(req.session_id) and _valid_id(req.function_call_id)):
            return {"ok": False, "error": ErrorCode.INVALID_PAYLOAD}
        key = f"{req.session_id}/{req.function_call_id}"
        async with self._lock:
            stored = await self.worker.trigger("state::get", {"scope": APPROVALS_SCOPE, "key": key})
            if isinstance(stored, dict) and "decision" in stored:
                if stored["decision"] == req.decision:
                    return {"ok": True}
                return {"ok": False, "error": ErrorCode.ALREADY_DECIDED, "decision": stored["decision"]}
            value = {"decision": req.decision, "reason": req.reason}
            await self.worker.trigger("state::set", {"scope": APPROVALS_SCOPE, "key": key, "value": value})
        return {"ok": True}

    async def get_settings(self, req: SessionRequest) -> ApprovalSettings:
        """A session's approval settings (defaults when it has none)."""
        return await self._read(req.session_id)

    async def set_mode(self, req: ModeRequest) -> ApprovalSettings:
        """Switch a session between manual, auto and full approval."""
        return await self._update(
            req.session_id,
            {"type": "set", "path": "mode", "value": req.mode},
            {"type": "set", "path": "mode_set_at", "value": now_ms()},
        )

    async def add_always_allow(self, req: FunctionRequest) -> ApprovalSettings:
        """Let a function run without asking while the session is in auto mode."""
        return await self._grant("always_allow", req)

    async def approve_always(self, req: FunctionRequest) -> ApprovalSettings:
        """Let a function run without asking in every mode."""
        return await self._grant("approved_always", req)

    async def remove_always_allow(self, req: FunctionRequest) -> ApprovalSettings:
        """Take a function off the session's auto-mode allow list."""
        async with self._lock:
            settings = await self._read(req.session_id)
            if not settings.grants("always_allow", req.function_id):
                return settings
            kept = [g.model_dump() for g in settings.always_allow if g.function_id != req.function_id]
            return await self._update(req.session_id, {"type": "set", "path": "always_allow", "value": kept})

    async def clear_settings(self, req: SessionRequest) -> ApprovalSettings:
        """Forget a session's settings, back to the defaults."""
        async with self._lock:
            await self.worker.trigger("state::delete", {"scope": SETTINGS_SCOPE, "key": req.session_id})
        return self._defaults()

    async def decide(self, req: FunctionRequest) -> Verdict:
        """Whether the session's settings alone allow a call, before policy is consulted (the mode matrix)."""
        if req.function_id in HUMAN_ONLY:
            return Verdict(decision="deny", reason="human_only_function")
        settings = await self._read(req.session_id)
        if settings.mode == "full":
            return Verdict(decision="allow", reason="mode_full")
        if settings.grants("approved_always", req.function_id):
            return Verdict(decision="allow", reason="approved_always")
        if settings.mode == "auto" and settings.grants("always_allow", req.function_id):
            return Verdict(decision="allow", reason="always_allow")
        return Verdict(decision="ask", reason="no_grant")

    async def _grant(self, which: GrantList, req: FunctionRequest) -> ApprovalSettings:
        async with self._lock:
            settings = await self._read(req.session_id)
            if settings.grants(which, req.function_id):
                return settings
            grant = Grant(function_id=req.function_id, granted_at=now_ms())
            return await self._update(req.session_id, {"type": "append", "path": which, "value": grant.model_dump()})

    async def _read(self, session_id: str) -> ApprovalSettings:
        stored = await self.worker.trigger("state::get", {"scope": SETTINGS_SCOPE, "key": session_id})
        return self._settings(session_id, stored)

    async def _update(self, session_id: str, *ops: dict[str, Any]) -> ApprovalSettings:
        updated = await update_state(self.worker, SETTINGS_SCOPE, session_id, *ops)
        return self._settings(session_id, updated.new_value)

    def _settings(self, session_id: str, stored: Any) -> ApprovalSettings:
        """Stored fields over the defaults: a record written by ops alone may lack some."""
        if stored is None:
            return self._defaults()
        try:
            return ApprovalSettings.model_validate({"mode": self.default_mode, **stored})
        except (TypeError, ValidationError) as exc:
            log.warning("approval: settings of session %s are malformed, using defaults: %s", session_id, exc)
            return self._defaults()

    def _defaults(self) -> ApprovalSettings:
        return ApprovalSettings(mode=self.default_mode)


def create_worker(default_mode: Mode = "manual") -> Worker:
    """The approval-gate worker; sessions that never chose a mode get `default_mode`."""
    worker = Worker("approval-gate", description="Human approval of parked calls and per-session approval settings")
    gate = ApprovalGate(worker, default_mode)
    for function_id, handler in (
        ("approval::resolve", gate.resolve),
        ("approval::get_settings", gate.get_settings),
        ("approval::set_mode", gate.set_mode),
        ("approval::add_always_allow", gate.add_always_allow),
        ("approval::remove_always_allow", gate.remove_always_allow),
        ("approval::approve_always", gate.approve_always),
        ("approval::clear_settings", gate.clear_settings),
        ("approval::decide", gate.decide),
    ):
        worker.register_function(function_id, handler, metadata=mark("human") if function_id in HUMAN_ONLY else None)
    return worker


def _valid_id(value: str) -> bool:
    return bool(value) and "/" not in value
