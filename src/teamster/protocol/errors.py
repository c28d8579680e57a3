"""Error codes of the iii protocol (§2.11) and the typed exceptions that carry them."""

from __future__ import annotations

from typing import Any

FUNCTION_NOT_FOUND = "function_not_found"
FUNCTION_NOT_INVOKABLE = "function_not_invokable"
INVOCATION_FAILED = "invocation_failed"
INVOCATION_STOPPED = "invocation_stopped"
INVOCATION_ERROR = "invocation_error"
CHANNEL_SEND_FAILED = "channel_send_failed"
ENQUEUE_ERROR = "enqueue_error"
FORBIDDEN = "FORBIDDEN"
INVALID_NAMESPACE = "INVALID_NAMESPACE"
DESERIALIZATION_ERROR = "deserialization_error"
SERIALIZATION_ERROR = "serialization_error"
TRIGGER_REGISTRATION_FAILED = "trigger_registration_failed"
FUNCTION_NAMESPACE_CONFLICT = "FUNCTION_NAMESPACE_CONFLICT"
WORKER_NAMESPACE_CONFLICT = "WORKER_NAMESPACE_CONFLICT"
TIMEOUT = "TIMEOUT"
PAYLOAD_TOO_LARGE = "payload_too_large"
# A value to store over its cap (iii-state's code, used by iii-stream too), or nested past MAX_JSON_DEPTH.
VALUE_TOO_LARGE = "VALUE_TOO_LARGE"
VALUE_TOO_DEEP = "VALUE_TOO_DEEP"
# teamster's own: a frame nested deeper than the engine decodes (protocol.limits.MAX_FRAME_DEPTH).
PAYLOAD_TOO_DEEP = "payload_too_deep"


class ProtocolError(Exception):
    """A frame that is not a valid protocol message; the engine logs and drops it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvocationError(Exception):
    """A call that ended in a protocol error (`{code, message, stacktrace?}` on the wire)."""

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
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            if isinstance(code, str) and isinstance(message, str):
                trace = error.get("stacktrace")
                return cls(code, message, stacktrace=trace if isinstance(trace, str) else None, function_id=function_id)
        return cls("UNKNOWN", repr(error), function_id=function_id)
