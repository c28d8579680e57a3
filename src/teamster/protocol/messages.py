"""The iii worker protocol (0.23 wire): one dataclass per message type, decoded and encoded here only."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from teamster.protocol.errors import ProtocolError

JSON = Any


@dataclass(slots=True)
class WorkerRegistered:
    type: ClassVar[str] = "workerregistered"
    worker_id: str
    reattach_token: str | None = None


@dataclass(slots=True)
class RegisterFunction:
    type: ClassVar[str] = "registerfunction"
    id: str
    description: str | None = None
    request_format: JSON = None
    response_format: JSON = None
    metadata: dict[str, Any] | None = None
    invocation: dict[str, Any] | None = None


@dataclass(slots=True)
class UnregisterFunction:
    type: ClassVar[str] = "unregisterfunction"
    id: str


@dataclass(slots=True)
class RegisterTrigger:
    type: ClassVar[str] = "registertrigger"
    id: str
    trigger_type: str
    function_id: str
    config: JSON = None
    metadata: dict[str, Any] | None = None
    namespace: str | None = None
    trigger_namespace: str | None = None


@dataclass(slots=True)
class TriggerRegistrationResult:
    type: ClassVar[str] = "triggerregistrationresult"
    id: str
    trigger_type: str | None = None
    function_id: str | None = None
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class UnregisterTrigger:
    type: ClassVar[str] = "unregistertrigger"
    id: str
    trigger_type: str | None = None


@dataclass(slots=True)
class RegisterTriggerType:
    type: ClassVar[str] = "registertriggertype"
    id: str
    description: str | None = None
    trigger_request_format: JSON = None
    call_request_format: JSON = None
    namespace: str | None = None


@dataclass(slots=True)
class UnregisterTriggerType:
    type: ClassVar[str] = "unregistertriggertype"
    id: str
    namespace: str | None = None


@dataclass(slots=True)
class InvokeFunction:
    type: ClassVar[str] = "invokefunction"
    function_id: str
    invocation_id: str | None = None
    data: JSON = None
    metadata: JSON = None
    action: dict[str, Any] | None = None
    namespace: str | None = None
    traceparent: str | None = None
    baggage: str | None = None


@dataclass(slots=True)
class InvocationResult:
    type: ClassVar[str] = "invocationresult"
    invocation_id: str
    function_id: str | None = None
    result: JSON = None
    error: dict[str, Any] | None = None
    traceparent: str | None = None
    baggage: str | None = None


@dataclass(slots=True)
class Reattach:
    type: ClassVar[str] = "reattach"
    previous_worker_id: str
    reattach_token: str


@dataclass(slots=True)
class RegistrationRejected:
    type: ClassVar[str] = "registrationrejected"
    code: str
    namespace: str | None = None
    function_id: str | None = None
    worker_name: str | None = None
    owner_worker_id: str | None = None


@dataclass(slots=True)
class RegisterService:
    type: ClassVar[str] = "registerservice"
    id: str
    name: str | None = None
    description: str | None = None
    parent_service_id: str | None = None


@dataclass(slots=True)
class Ping:
    type: ClassVar[str] = "ping"


@dataclass(slots=True)
class Pong:
    type: ClassVar[str] = "pong"


@dataclass(slots=True)
class Error:
    type: ClassVar[str] = "error"
    error: dict[str, Any]


Message = (
    WorkerRegistered
    | RegisterFunction
    | UnregisterFunction
    | RegisterTrigger
    | TriggerRegistrationResult
    | UnregisterTrigger
    | RegisterTriggerType
    | UnregisterTriggerType
    | InvokeFunction
    | InvocationResult
    | Reattach
    | RegistrationRejected
    | RegisterService
    | Ping
    | Pong
    | Error
)

_TYPES: tuple[Any, ...] = typing.get_args(Message)


@dataclass(frozen=True, slots=True)
class _Shape:
    cls: type
    names: tuple[str, ...]
    required: tuple[str, ...]
    strings: tuple[str, ...]  # fields that must be strings when present
    objects: tuple[str, ...]  # fields that must be JSON objects when present


def _shape(cls: Any) -> _Shape:
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    required = tuple(f.name for f in fields if f.default is dataclasses.MISSING)
    strings = tuple(f.name for f in fields if str(f.type).startswith("str"))
    objects = tuple(f.name for f in fields if str(f.type).startswith("dict"))
    return _Shape(cls, names, required, strings, objects)


_SHAPES: dict[str, _Shape] = {cls.type: _shape(cls) for cls in _TYPES}


def decode(raw: str | bytes) -> Message:
    """Parse one frame; raise ProtocolError (and nothing else) for anything that is not a valid message."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("malformed_json", f"frame is not JSON: {exc}") from None
    return from_dict(obj)


def from_dict(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise ProtocolError("malformed_frame", "frame is not a JSON object")
    kind = obj.get("type")
    shape = _SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}")
    for name in shape.required:
        if obj.get(name) is None:
            raise ProtocolError("missing_field", f"{kind}: field {name!r} is required")
    for name in shape.strings:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise ProtocolError("invalid_field", f"{kind}: field {name!r} must be a string")
    for name in shape.objects:
        value = obj.get(name)
        if value is not None and not isinstance(value, dict):
            raise ProtocolError("invalid_field", f"{kind}: field {name!r} must be an object")
    msg: Message = shape.cls(**{name: obj[name] for name in shape.names if name in obj})
    return msg


def to_dict(msg: Message) -> dict[str, Any]:
    """The wire form: `type` first, unset (None) fields left out, as the iii engine and SDKs do."""
    out: dict[str, Any] = {"type": msg.type}
    for name in _SHAPES[msg.type].names:
        value = getattr(msg, name)
        if value is not None:
            out[name] = value
    return out


def encode(msg: Message) -> bytes:
    """JSON bytes; a value JSON cannot carry (a set, an int past 64 bits) raises ProtocolError."""
    frame = to_dict(msg)
    try:
        return orjson.dumps(frame)
    except TypeError as exc:
        if str(exc) == "Recursion limit reached":
            # orjson stops at 254 levels; a deep (valid) document, like a long session tree, still goes.
            try:
                return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            except (TypeError, ValueError, RecursionError) as deep:
                exc = TypeError(str(deep))
        raise ProtocolError("unencodable", f"{msg.type} is not JSON-encodable: {exc}") from None
