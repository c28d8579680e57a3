"""Provider failures: `ProviderError` for what a provider already understands, and `classify_error`, which maps
any exception to an `ErrorKind` and a readable message for the stream's `error` event."""

from __future__ import annotations

import re
from typing import Any

from teamster.harness.contracts import ErrorKind
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode


class ProviderError(Exception):
    """A failure the provider already understands: `kind` goes straight into the `error` event."""

    def __init__(self, message: str, kind: ErrorKind = "permanent") -> None:
        super().__init__(message)
        self.message = message
        self.kind: ErrorKind = kind


_OVERFLOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|input is too long|too many tokens"
    r"|exceeds? (the )?(model'?s? )?(maximum )?(context|token limit)|reduce the length",
    re.IGNORECASE,
)
_TYPE_KINDS: dict[str, ErrorKind] = {
    "authentication_error": "auth_expired",
    "permission_error": "auth_expired",
    "invalid_api_key": "auth_expired",
    "rate_limit_error": "rate_limited",
    "rate_limit_exceeded": "rate_limited",
    "overloaded_error": "transient",
    "api_error": "transient",
    "timeout_error": "transient",
    "server_error": "transient",
    "context_length_exceeded": "context_overflow",
}


def classify_error(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map an exception to `(error_kind, message)`.

    401/403 → auth_expired, 429 → rate_limited, a context-length complaint (or 413) → context_overflow,
    408/5xx/529, timeouts and connection failures → transient, everything else → permanent. Provider SDK
    errors are read by shape (`status_code`, `body`), so this needs no SDK import.
    """
    if isinstance(exc, ProviderError):
        return exc.kind, exc.message
    status = getattr(exc, "status_code", None)
    error_type, api_message = _body_error(getattr(exc, "body", None))
    message = api_message or str(exc) or type(exc).__name__
    kind: ErrorKind
    if isinstance(status, int) and status >= 400:
        message = f"HTTP {status}: {message}"
        kind = _status_kind(status)
        if kind == "permanent" and error_type in _TYPE_KINDS:
            kind = _TYPE_KINDS[error_type]
    elif error_type in _TYPE_KINDS:  # an error event inside a 200 stream
        kind = _TYPE_KINDS[error_type]
    elif isinstance(exc, TimeoutError) or _named(exc, "Timeout"):
        kind, message = "transient", f"timed out: {message}"
    elif isinstance(exc, ConnectionError) or _named(exc, "ConnectionError", "ConnectError"):
        kind, message = "transient", f"connection failed: {message}"
    elif isinstance(exc, InvocationError):
        kind = "transient" if exc.code == ErrorCode.TIMEOUT else "permanent"
    else:
        kind = "permanent"
    if kind == "permanent" and _OVERFLOW.search(message):
        kind = "context_overflow"
    return kind, message


def _status_kind(status: int) -> ErrorKind:
    if status in (401, 403):
        return "auth_expired"
    if status == 429:
        return "rate_limited"
    if status == 413:
        return "context_overflow"
    if status == 408 or status >= 500:
        return "transient"
    return "permanent"


def _body_error(body: Any) -> tuple[str | None, str | None]:
    """(type or code, message) from an API error body: `{error:{type,code,message}}` or the inner dict."""
    if not isinstance(body, dict):
        return None, body if isinstance(body, str) and body else None
    nested = body.get("error")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else body
    message = inner.get("message")
    kind = next((v for k in ("code", "type") if isinstance(v := inner.get(k), str) and v in _TYPE_KINDS), None)
    if kind is None:
        kind = inner.get("type") if isinstance(inner.get("type"), str) else None
    return kind, message if isinstance(message, str) and message else None


def _named(exc: BaseException, *parts: str) -> bool:
    return any(part in cls.__name__ for cls in type(exc).__mro__ for part in parts)
