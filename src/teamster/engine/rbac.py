"""Worker-manager RBAC (iii §1.3, §2.3–§2.8, §3.2): a listener's `rbac` config, the session its auth
function (or a token's role, `teamster.engine.roles`) grants each connection, and the checks and hooks
applied to that connection's traffic."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from msgspec.structs import replace
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from teamster.engine.config import first_error
from teamster.engine.registry import FunctionRegistry
from teamster.engine.roles import Role, cleared, reserved, role_named
from teamster.protocol import InvocationError, InvokeFunction, RegisterFunction, RegisterTrigger, RegisterTriggerType
from teamster.protocol.access import access_of
from teamster.protocol.errors import ErrorCode

log = logging.getLogger("teamster.engine")

DEFAULT = "default"
WORKERS_REGISTER = "engine::workers::register"
# Callable whatever the grants say (unless forbidden by name): without them a worker cannot even
# name itself, log or open a channel.
INFRASTRUCTURE = frozenset(
    {
        "engine::channels::create",
        WORKERS_REGISTER,
        "engine::log::info",
        "engine::log::warn",
        "engine::log::error",
        "engine::log::debug",
        "engine::log::trace",
        "engine::baggage::get",
        "engine::baggage::set",
        "engine::baggage::get_all",
    }
)

Call = Callable[[str, Any], Awaitable[Any]]  # engine.call: a function id and its payload, in `default`


class AuthError(Exception):
    """The auth function refused the connection, failed, or answered something unusable."""


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def wildcard(pattern: str, value: str) -> bool:
    """`*` matches any run of characters (`::` included); everything else is literal."""
    return _glob(pattern).fullmatch(value) is not None


def _unwrap(text: str) -> str | None:
    """The pattern inside `match("…")` (or `match('…')`); None when `text` is not written that way."""
    text = text.strip()
    for quote in ('"', "'"):
        if text.startswith(f"match({quote}") and text.endswith(f"{quote})") and len(text) >= 9:
            return text[7:-2]
    return None


def _grant_covers(grant: str, function_id: str) -> bool:
    """A grant is an id or a wildcard, bare (`svc::*`) or wrapped (`match("svc::*")`)."""
    raw = _unwrap(grant) or grant
    return raw == function_id or ("*" in raw and wildcard(raw, function_id))


def _same(expected: Any, actual: Any) -> bool:
    # JSON tells `true` from `1`; Python's == does not.
    return type(expected) is type(actual) and expected == actual


class FunctionFilter(BaseModel):
    """One `expose_functions` rule: `match("svc::*")`, or `{match: …}` / `{metadata: {…}}` with an optional
    `namespace` (absent: the rule applies in `default` only)."""

    model_config = ConfigDict(extra="forbid")

    match: str | None = None
    metadata: dict[str, Any] | None = None
    namespace: str = DEFAULT

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            pattern = _unwrap(value)
            if pattern is None:
                raise ValueError(f'expected match("pattern") or a mapping, got {value!r}')
            return {"match": pattern}
        return value

    @model_validator(mode="after")
    def _one_matcher(self) -> FunctionFilter:
        if (self.match is None) == (not self.metadata):
            raise ValueError("a filter has exactly one of 'match' or a non-empty 'metadata'")
        return self

    def matches(self, function_id: str, namespace: str, metadata: Any) -> bool:
        if namespace != self.namespace:
            return False
        if self.match is not None:
            return wildcard(self.match, function_id)
        if not isinstance(metadata, dict):
            return False
        return all(
            key in metadata and _value_matches(want, metadata[key]) for key, want in (self.metadata or {}).items()
        )


def _value_matches(want: Any, actual: Any) -> bool:
    pattern = _unwrap(want) if isinstance(want, str) else None
    if pattern is not None:
        return isinstance(actual, str) and wildcard(pattern, actual)
    return _same(want, actual)


class RbacConfig(BaseModel):
    """The `rbac` block of an `iii-worker-manager` entry."""

    model_config = ConfigDict(extra="forbid")

    auth_function_id: str | None = None
    expose_functions: list[FunctionFilter] = Field(default_factory=list)
    on_function_registration_function_id: str | None = None
    on_trigger_registration_function_id: str | None = None
    on_trigger_type_registration_function_id: str | None = None


class AuthResult(BaseModel):
    """What the auth function grants one connection (the shape of iii's `AuthResult`)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    namespaces: dict[str, list[str]] = Field(default_factory=dict)  # grants per namespace; keys may be declared
    allowed_functions: list[str] = Field(default_factory=list)  # grants in `default`
    forbidden_functions: list[str] = Field(default_factory=list)  # denied everywhere, over any grant
    allowed_trigger_types: list[str] | None = None  # None: any type
    allow_trigger_type_registration: bool = False
    allow_function_registration: bool = True
    function_registration_prefix: str | None = None
    context: Any = Field(default_factory=dict)  # handed to the middleware and every hook
    role: Role | None = None  # teamster's addition: this role's session instead of the grants above


@dataclass(slots=True)
class Session:
    """One connection's standing on an RBAC or middleware listener, fixed at the handshake."""

    rbac: RbacConfig | None
    middleware_function_id: str | None
    grants: AuthResult
    role: Role | None = None  # a token's role, or one an auth function answered; grants are then unused
    # (kind, id the worker used) -> id the engine filed it under, for unregister frames
    renamed: dict[tuple[str, str], str] = field(default_factory=dict)
    # Calls skip every check and go straight to their target, as on a listener without sessions.
    direct: bool = field(init=False)

    def __post_init__(self) -> None:
        self.direct = self.role == "admin" and self.middleware_function_id is None

    # ---- calls --------------------------------------------------------------------------------

    def allows(self, function_id: str, namespace: str, metadata: Any) -> bool:
        """A role decides by the function's access mark alone. Otherwise deny by name wins; a marked
        function needs a grant of its exact id; then grants, the infrastructure ids, and the
        listener's `expose_functions`."""
        if self.role is not None:
            return cleared(self.role, metadata)
        grants = self.grants
        if function_id in grants.forbidden_functions:
            return False
        if access_of(metadata) is not None:  # a wildcard or an expose rule must not hand out keys
            return function_id in grants.namespaces.get(namespace, ()) or (
                namespace == DEFAULT and function_id in grants.allowed_functions
            )
        if any(_grant_covers(grant, function_id) for grant in grants.namespaces.get(namespace, ())):
            return True
        if namespace == DEFAULT and function_id in grants.allowed_functions:
            return True
        if function_id in INFRASTRUCTURE or self.rbac is None:
            return True
        return any(rule.matches(function_id, namespace, metadata) for rule in self.rbac.expose_functions)

    def denial(self, function_id: str, namespace: str, metadata: Any) -> str | None:
        """Why a call or trigger target is FORBIDDEN, or None when it is allowed."""
        if self.allows(function_id, namespace, metadata):
            return None
        access = access_of(metadata)
        if self.role is not None:
            return f"function '{function_id}' is marked {access}; role '{self.role}' may not call it"
        if access is not None and function_id not in self.grants.forbidden_functions:
            return f"function '{function_id}' is marked {access} (grant it by its exact id in namespace '{namespace}')"
        fix = (
            "remove from rbac.forbidden_functions"
            if function_id in self.grants.forbidden_functions
            else "add to rbac.expose_functions"
        )
        return f"function '{function_id}' not allowed in namespace '{namespace}' ({fix})"

    def check_call(self, function_id: str, namespace: str, metadata: Any) -> None:
        reason = self.denial(function_id, namespace, metadata)
        if reason is not None:
            raise InvocationError(ErrorCode.FORBIDDEN, reason, function_id=function_id)

    def check_worker_name(self, data: dict[str, Any]) -> None:
        """`engine::workers::register`: allowed by name, and a scoped session declares only its namespaces."""
        self.check_call(WORKERS_REGISTER, DEFAULT, None)
        scopes = self.grants.namespaces
        declared = data.get("namespace") or DEFAULT
        if scopes and declared not in scopes:
            raise InvocationError(
                ErrorCode.FORBIDDEN,
                f"namespace '{declared}' not allowed for this session (permitted: {', '.join(sorted(scopes))})",
                function_id=WORKERS_REGISTER,
            )

    def middleware_input(self, msg: InvokeFunction, namespace: str) -> dict[str, Any]:
        return {
            "function_id": msg.function_id,
            "payload": msg.data,
            "action": msg.action,
            "context": self.grants.context,
            "namespace": namespace,
        }

    # ---- registrations ------------------------------------------------------------------------

    def may_claim(self, function_id: str, namespace: str, functions: FunctionRegistry) -> bool:
        """Whether this session may register `function_id` at all: a `worker` or `provider` stays out
        of the reserved services (`teamster.engine.roles`); other sessions keep iii's rules."""
        return self.role in (None, "admin") or not reserved(function_id, namespace, functions)

    def filed_as(self, kind: str, worker_id: str) -> str:
        """The id a registration of `kind` that the worker calls `worker_id` was filed under."""
        return self.renamed.get((kind, worker_id), worker_id)

    async def vet_function(self, call: Call, msg: RegisterFunction, namespace: str) -> RegisterFunction | None:
        """The registration to apply (maybe renamed by the hook or the prefix), or None when refused."""
        if not self.grants.allow_function_registration:
            log.warning("function %s refused: this session may not register functions", msg.id)
            return None
        vetted = msg
        hook = self.rbac.on_function_registration_function_id if self.rbac else None
        if hook is not None:
            answer = await _hook(
                call,
                hook,
                {
                    "function_id": msg.id,
                    "description": msg.description,
                    "metadata": msg.metadata,
                    "namespace": namespace,
                    "context": self.grants.context,
                },
                f"function {msg.id}",
            )
            if answer is None:
                return None
            vetted = replace(
                msg,
                id=_text(answer, "function_id", msg.id),
                description=_text(answer, "description", msg.description),
                metadata=answer["metadata"] if isinstance(answer.get("metadata"), dict) else msg.metadata,
            )
        vetted = replace(vetted, id=self.prefixed(vetted.id))
        self._remember("function", msg.id, vetted.id)
        return vetted

    async def vet_trigger_type(self, call: Call, msg: RegisterTriggerType) -> RegisterTriggerType | None:
        if not self.grants.allow_trigger_type_registration:
            log.warning("trigger type %s refused: this session may not register trigger types", msg.id)
            return None
        hook = self.rbac.on_trigger_type_registration_function_id if self.rbac else None
        if hook is None:
            return msg
        answer = await _hook(
            call,
            hook,
            {"trigger_type_id": msg.id, "description": msg.description, "context": self.grants.context},
            f"trigger type {msg.id}",
        )
        if answer is None:
            return None
        vetted = replace(
            msg, id=_text(answer, "trigger_type_id", msg.id), description=_text(answer, "description", msg.description)
        )
        self._remember("trigger_type", msg.id, vetted.id)
        return vetted

    async def vet_trigger(self, call: Call, msg: RegisterTrigger) -> RegisterTrigger | None:
        """The binding to apply, or None when its type is not allowed or the hook refuses it. Whether the
        target may be reached is the caller's check (`denial`), since a refusal there is answered."""
        if not self.allows_trigger_type(msg.trigger_type):
            log.warning("trigger %s refused: type %s is not allowed for this session", msg.id, msg.trigger_type)
            return None
        vetted = msg
        hook = self.rbac.on_trigger_registration_function_id if self.rbac else None
        if hook is not None:
            answer = await _hook(
                call,
                hook,
                {
                    "trigger_id": msg.id,
                    "trigger_type": msg.trigger_type,
                    "function_id": msg.function_id,
                    "config": msg.config,
                    "metadata": msg.metadata,
                    "namespace": msg.namespace or DEFAULT,
                    "context": self.grants.context,
                },
                f"trigger {msg.id}",
            )
            if answer is None:
                return None
            vetted = replace(
                msg,
                id=_text(answer, "trigger_id", msg.id),
                trigger_type=_text(answer, "trigger_type", msg.trigger_type),
                function_id=_text(answer, "function_id", msg.function_id),
                config=msg.config if answer.get("config") is None else answer["config"],
            )
        vetted = replace(vetted, function_id=self.prefixed(vetted.function_id))
        self._remember("trigger", msg.id, vetted.id)
        return vetted

    def allows_trigger_type(self, trigger_type: str) -> bool:
        allowed = self.grants.allowed_trigger_types
        return allowed is None or trigger_type in allowed

    def prefixed(self, function_id: str) -> str:
        """The id a function or binding target is filed under: `prefix::id` when the session has a prefix."""
        prefix = self.grants.function_registration_prefix
        return f"{prefix}::{function_id}" if prefix else function_id

    def _remember(self, kind: str, worker_id: str, filed: str) -> None:
        if filed != worker_id:
            self.renamed[(kind, worker_id)] = filed
        else:
            self.renamed.pop((kind, worker_id), None)


def role_session(role: str, rbac: RbacConfig | None, middleware_function_id: str | None) -> Session:
    """The session of a connection admitted as `role` (by its token, or `admin` on tokenless
    loopback). The listener's middleware and registration hooks still apply; its
    `expose_functions` do not, since the role decides what may be called."""
    grants = AuthResult(allow_trigger_type_registration=True)
    return Session(rbac, middleware_function_id, grants, role=role_named(role))


async def open_session(
    call: Call,
    rbac: RbacConfig | None,
    middleware_function_id: str | None,
    *,
    headers: dict[str, str],
    query_params: dict[str, list[str]],
    ip_address: str,
) -> Session:
    """Authenticate a new connection; raise AuthError when it may not connect. An answer naming a
    `role` gets that role's session (keeping its `context`), whatever grants it lists besides."""
    if rbac is None or rbac.auth_function_id is None:
        return Session(rbac, middleware_function_id, AuthResult(allow_trigger_type_registration=True))
    request = {"headers": headers, "query_params": query_params, "ip_address": ip_address}
    try:
        answer = await call(rbac.auth_function_id, request)
    except InvocationError as exc:
        raise AuthError(exc.message) from None
    if answer is None:
        raise AuthError("auth function returned no result")
    try:
        grants = AuthResult.model_validate(answer)
    except ValidationError as exc:
        raise AuthError(f"auth function result: {first_error(exc, 'result')}") from None
    if grants.role is None:
        return Session(rbac, middleware_function_id, grants)
    session = role_session(grants.role, rbac, middleware_function_id)
    session.grants.context = grants.context
    return session


async def _hook(call: Call, hook: str, data: dict[str, Any], what: str) -> dict[str, Any] | None:
    """A registration hook's answer: an object (fields to change) admits; an error or anything else refuses."""
    try:
        answer = await call(hook, data)
    except InvocationError as exc:
        log.warning("%s refused by %s: %s", what, hook, exc)
        return None
    if not isinstance(answer, dict):
        log.warning("%s refused by %s: it answered %r, not an object", what, hook, answer)
        return None
    return answer


def _text(answer: dict[str, Any], key: str, current: Any) -> Any:
    value = answer.get(key)
    return value if isinstance(value, str) else current
