"""Every error code teamster puts on the wire, in one registry, and the typed exceptions that carry them.

`ErrorCode` is the one place a code is spelled. Its values are the exact wire strings: the iii protocol's
own (§2.11) and those of iii's engine modules keep iii's spelling, mixed case and all, because the
official iii SDKs are clients of this engine; codes teamster added keep the spelling they shipped with.
docs/errors.md lists each code with who raises it and what it means.

`InvocationError` is a call that ended in an error reply. Decoded from a reply (`from_wire`, the SDK's
boundary) or constructed anywhere, it is the subclass of its code's family (`ERROR_TYPES`), so a caller
may write `except Timeout:` or `except FunctionNotFound:`; `except InvocationError` and `.code` keep
working for every code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self, cast


class ErrorCode(StrEnum):
    """The registry of error codes, grouped by who raises them; each value is the wire spelling."""

    # ---- the iii protocol (§2.11): what any invocation may end in ----
    FUNCTION_NOT_FOUND = "function_not_found"
    FUNCTION_NOT_INVOKABLE = "function_not_invokable"
    INVOCATION_FAILED = "invocation_failed"
    INVOCATION_STOPPED = "invocation_stopped"
    INVOCATION_ERROR = "invocation_error"
    CHANNEL_SEND_FAILED = "channel_send_failed"
    ENQUEUE_ERROR = "enqueue_error"
    DESERIALIZATION_ERROR = "deserialization_error"
    SERIALIZATION_ERROR = "serialization_error"
    TRIGGER_REGISTRATION_FAILED = "trigger_registration_failed"
    PAYLOAD_TOO_LARGE = "payload_too_large"

    # ---- the iii engine: access, namespaces, deadlines (iii spells these in upper case) ----
    FORBIDDEN = "FORBIDDEN"
    AUTH_ERROR = "AUTH_ERROR"
    INVALID_NAMESPACE = "INVALID_NAMESPACE"
    FUNCTION_NAMESPACE_CONFLICT = "FUNCTION_NAMESPACE_CONFLICT"
    WORKER_NAMESPACE_CONFLICT = "WORKER_NAMESPACE_CONFLICT"
    TIMEOUT = "TIMEOUT"

    # ---- teamster's engine: frames and values past its limits ----
    PAYLOAD_TOO_DEEP = "payload_too_deep"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"
    VALUE_TOO_DEEP = "VALUE_TOO_DEEP"

    # ---- engine:: functions ----
    INVALID_ARGUMENTS = "INVALID_ARGUMENTS"
    WORKER_NOT_FOUND = "WORKER_NOT_FOUND"
    TRIGGER_TYPE_NOT_FOUND = "TRIGGER_TYPE_NOT_FOUND"
    TRIGGER_NOT_FOUND = "TRIGGER_NOT_FOUND"

    # ---- iii-state: a storage failure, named for the function ----
    SET_ERROR = "SET_ERROR"
    GET_ERROR = "GET_ERROR"
    DELETE_ERROR = "DELETE_ERROR"
    UPDATE_ERROR = "UPDATE_ERROR"
    LIST_ERROR = "LIST_ERROR"
    LIST_GROUPS_ERROR = "LIST_GROUPS_ERROR"

    # ---- iii-stream: a storage failure, named for the function ----
    STREAM_SET_ERROR = "STREAM_SET_ERROR"
    STREAM_GET_ERROR = "STREAM_GET_ERROR"
    STREAM_DELETE_ERROR = "STREAM_DELETE_ERROR"
    STREAM_UPDATE_ERROR = "STREAM_UPDATE_ERROR"
    STREAM_GET_GROUP_ERROR = "STREAM_GET_GROUP_ERROR"
    STREAM_LIST_GROUPS_ERROR = "STREAM_LIST_GROUPS_ERROR"
    STREAM_LIST_ALL_ERROR = "STREAM_LIST_ALL_ERROR"
    STREAM_RESULT_ERROR = "STREAM_RESULT_ERROR"

    # ---- iii-pubsub ----
    TOPIC_NOT_SET = "topic_not_set"

    # ---- iii-configuration ----
    INVALID_ID = "INVALID_ID"
    NOT_REGISTERED = "NOT_REGISTERED"
    NOT_FOUND = "NOT_FOUND"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    EXPAND_FAILED = "EXPAND_FAILED"
    ADAPTER_ERROR = "ADAPTER_ERROR"

    # ---- iii-http: the body of a refused HTTP request ----
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    CONDITION_NOT_MET = "CONDITION_NOT_MET"
    # ... and a request refused at the door, in the run API's lower-case style
    BAD_REQUEST = "bad_request"
    UNKNOWN_HOST = "unknown_host"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    UNAUTHORIZED = "unauthorized"

    # ---- the SDK: what a caller sees when no reply can come ----
    CONNECTION_LOST = "CONNECTION_LOST"
    UNKNOWN = "UNKNOWN"

    # ---- harness workers ----
    STATE_UPDATE_ERROR = "STATE_UPDATE_ERROR"
    SESSION_NOT_FOUND = "session_not_found"
    ENTRY_NOT_FOUND = "entry_not_found"
    BUDGET_NOT_FOUND = "BUDGET_NOT_FOUND"
    SKILL_NOT_FOUND = "SKILL_NOT_FOUND"
    INVALID_SKILL = "INVALID_SKILL"
    INVALID_CAPABILITY = "INVALID_CAPABILITY"
    CREDENTIALS_CORRUPT = "CREDENTIALS_CORRUPT"
    MODEL_UNKNOWN = "model_unknown"
    SUMMARY_FAILED = "summary_failed"
    LEASE_LOST = "lease_lost"
    TURN_NOT_FOUND = "TURN_NOT_FOUND"
    COMPACTION_BUSY = "COMPACTION_BUSY"
    EVENTS_UNSENT = "EVENTS_UNSENT"
    ALREADY_DECIDED = "already_decided"  # approval::resolve's reply `error`, not an exception
    INVALID_PAYLOAD = "invalid_payload"  # approval::resolve's reply `error`: a blank or slashed id

    # ---- patterns: human input ----
    INPUT_INVALID_ARGUMENTS = "invalid_arguments"
    INPUT_NOT_FOUND = "input_not_found"
    INPUT_ANSWERED = "input_already_answered"
    INPUT_CLOSED = "input_closed"

    # ---- the run API (HTTP error bodies, not invocation errors) ----
    INVALID_REQUEST = "invalid_request"
    RUN_NOT_FOUND = "run_not_found"
    RUN_FINISHED = "run_finished"
    APPROVAL_NOT_FOUND = "approval_not_found"
    FILE_NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"


class ProtocolError(Exception):
    """A frame that is not a valid protocol message; the engine logs and drops it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvocationError(Exception):
    """A call that ended in a protocol error (`{code, message, stacktrace?}` on the wire).

    `code` is the wire string as received: an `ErrorCode` compares equal to it, and a code no registry
    entry names (a foreign worker's own) is kept as it came. Constructing one by its code builds the
    class of the code's family (`InvocationError(ErrorCode.TIMEOUT, …)` is a `Timeout`), so the error
    is as typed raised in-process as it is decoded from a reply.
    """

    def __new__(cls, code: str, *args: Any, **kwargs: Any) -> Self:
        return cast(Self, super().__new__(error_type(code) if cls is InvocationError else cls))

    def __init__(
        self,
        code: str,
        message: str,
        *,
        stacktrace: str | None = None,
        function_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.stacktrace = stacktrace
        self.function_id = function_id

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.stacktrace:
            out["stacktrace"] = self.stacktrace
        return out

    @classmethod
    def from_wire(cls, error: Any, function_id: str | None = None) -> InvocationError:
        """The error reply `error` as the exception of its code's family (`InvocationError` for the rest)."""
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            if isinstance(code, str) and isinstance(message, str):
                trace = error.get("stacktrace")
                return cls(code, message, stacktrace=trace if isinstance(trace, str) else None, function_id=function_id)
        return cls(ErrorCode.UNKNOWN, repr(error), function_id=function_id)


class NotFound(InvocationError):
    """The call named something that does not exist: a session, an entry, a budget, a skill, a trigger…"""


class FunctionNotFound(NotFound):
    """No worker registered the function called (`function_not_found`)."""


class Forbidden(InvocationError):
    """The caller may not do this: its role or grants refuse the call, or its token was refused."""


class Timeout(InvocationError):
    """No reply came within the call's deadline (`TIMEOUT`); the callee may still be running."""


class ConnectionLost(InvocationError):
    """The link to the engine was down when the call was sent, or closed before its reply arrived."""


class InvocationFailed(InvocationError):
    """The handler ran and raised (`invocation_failed`); the message is its error."""


class InvocationStopped(InvocationError):
    """The invocation was stopped before it finished (`invocation_stopped`), e.g. its worker went away."""


class InvalidPayload(InvocationError):
    """A payload that could not be carried: not JSON, or past a size or depth limit."""


class InvalidRequest(InvocationError):
    """Arguments that decode but make no sense: a bad id, an unknown capability, a schema refusal…"""


class Conflict(InvocationError):
    """The request clashes with the current state: a name taken, a request already answered, a lease lost."""


class StateUpdateFailed(InvocationError):
    """`state::update` replied that some of its ops failed (`STATE_UPDATE_ERROR`); the message names them."""


_FAMILIES: dict[type[InvocationError], frozenset[ErrorCode]] = {
    FunctionNotFound: frozenset({ErrorCode.FUNCTION_NOT_FOUND}),
    NotFound: frozenset(
        {
            ErrorCode.WORKER_NOT_FOUND,
            ErrorCode.TRIGGER_TYPE_NOT_FOUND,
            ErrorCode.TRIGGER_NOT_FOUND,
            ErrorCode.NOT_FOUND,
            ErrorCode.SESSION_NOT_FOUND,
            ErrorCode.ENTRY_NOT_FOUND,
            ErrorCode.BUDGET_NOT_FOUND,
            ErrorCode.SKILL_NOT_FOUND,
            ErrorCode.TURN_NOT_FOUND,
            ErrorCode.INPUT_NOT_FOUND,
        }
    ),
    Forbidden: frozenset({ErrorCode.FORBIDDEN, ErrorCode.AUTH_ERROR}),
    Timeout: frozenset({ErrorCode.TIMEOUT}),
    ConnectionLost: frozenset({ErrorCode.CONNECTION_LOST}),
    InvocationFailed: frozenset({ErrorCode.INVOCATION_FAILED}),
    InvocationStopped: frozenset({ErrorCode.INVOCATION_STOPPED}),
    InvalidPayload: frozenset(
        {
            ErrorCode.DESERIALIZATION_ERROR,
            ErrorCode.SERIALIZATION_ERROR,
            ErrorCode.PAYLOAD_TOO_LARGE,
            ErrorCode.PAYLOAD_TOO_DEEP,
            ErrorCode.VALUE_TOO_LARGE,
            ErrorCode.VALUE_TOO_DEEP,
        }
    ),
    InvalidRequest: frozenset(
        {
            ErrorCode.INVALID_NAMESPACE,
            ErrorCode.INVALID_ARGUMENTS,
            ErrorCode.INPUT_INVALID_ARGUMENTS,
            ErrorCode.TOPIC_NOT_SET,
            ErrorCode.INVALID_ID,
            ErrorCode.NOT_REGISTERED,
            ErrorCode.SCHEMA_INVALID,
            ErrorCode.INVALID_SKILL,
            ErrorCode.INVALID_CAPABILITY,
            ErrorCode.MODEL_UNKNOWN,
        }
    ),
    Conflict: frozenset(
        {
            ErrorCode.FUNCTION_NAMESPACE_CONFLICT,
            ErrorCode.WORKER_NAMESPACE_CONFLICT,
            ErrorCode.LEASE_LOST,
            ErrorCode.COMPACTION_BUSY,
            ErrorCode.INPUT_ANSWERED,
            ErrorCode.INPUT_CLOSED,
        }
    ),
    StateUpdateFailed: frozenset({ErrorCode.STATE_UPDATE_ERROR}),
}
ERROR_TYPES: dict[str, type[InvocationError]] = {code: kind for kind, group in _FAMILIES.items() for code in group}


def error_type(code: str) -> type[InvocationError]:
    """The exception class of `code`'s family; `InvocationError` for a code without one."""
    return ERROR_TYPES.get(code, InvocationError)
