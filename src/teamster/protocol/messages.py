"""The iii worker protocol (0.23 wire): one struct per message type, decoded and encoded here only."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import orjson

from teamster.protocol.errors import ErrorCode, ProtocolError
from teamster.protocol.jsontext import beyond_orjson
from teamster.protocol.limits import MAX_FRAME_DEPTH

JSON = Any


class _Message(msgspec.Struct, tag_field="type", tag=str.lower):
    """A frame's `type` is its class name in lower case; msgspec decodes a frame straight into its class."""

    type: ClassVar[str]


class WorkerRegistered(_Message):
    worker_id: str
    reattach_token: str | None = None


class RegisterFunction(_Message):
    id: str
    description: str | None = None
    request_format: JSON = None
    response_format: JSON = None
    metadata: dict[str, Any] | None = None
    invocation: dict[str, Any] | None = None


class UnregisterFunction(_Message):
    id: str


class RegisterTrigger(_Message):
    id: str
    trigger_type: str
    function_id: str
    config: JSON = None
    metadata: dict[str, Any] | None = None
    namespace: str | None = None
    trigger_namespace: str | None = None


class TriggerRegistrationResult(_Message):
    id: str
    trigger_type: str | None = None
    function_id: str | None = None
    error: dict[str, Any] | None = None


class UnregisterTrigger(_Message):
    id: str
    trigger_type: str | None = None


class RegisterTriggerType(_Message):
    id: str
    description: str | None = None
    trigger_request_format: JSON = None
    call_request_format: JSON = None
    namespace: str | None = None


class UnregisterTriggerType(_Message):
    id: str
    namespace: str | None = None


class InvokeFunction(_Message):
    function_id: str
    invocation_id: str | None = None
    data: JSON = None
    metadata: JSON = None
    action: dict[str, Any] | None = None
    namespace: str | None = None
    traceparent: str | None = None
    baggage: str | None = None


class InvocationResult(_Message):
    invocation_id: str
    function_id: str | None = None
    result: JSON = None
    error: dict[str, Any] | None = None
    traceparent: str | None = None
    baggage: str | None = None


class Reattach(_Message):
    previous_worker_id: str
    reattach_token: str


class RegistrationRejected(_Message):
    code: str
    namespace: str | None = None
    function_id: str | None = None
    worker_name: str | None = None
    owner_worker_id: str | None = None


class RegisterService(_Message):
    id: str
    name: str | None = None
    description: str | None = None
    parent_service_id: str | None = None


class Ping(_Message):
    pass


class Pong(_Message):
    pass


class Error(_Message):
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
for _cls in _TYPES:
    _cls.type = _cls.__struct_config__.tag


@dataclass(frozen=True, slots=True)
class _Shape:
    cls: type
    names: tuple[str, ...]
    required: tuple[str, ...]
    strings: tuple[str, ...]  # fields that must be strings when present
    objects: tuple[str, ...]  # fields that must be JSON objects when present


def _holds(annotation: Any, kind: type) -> bool:
    """Whether a field typed `annotation` holds `kind` (alone, or in a union with null)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_holds(arg, kind) for arg in typing.get_args(annotation))
    return (typing.get_origin(annotation) or annotation) is kind


def _shape(cls: Any) -> _Shape:
    fields = msgspec.structs.fields(cls)
    names = tuple(f.name for f in fields)
    required = tuple(f.name for f in fields if f.required)
    strings = tuple(f.name for f in fields if _holds(f.type, str))
    objects = tuple(f.name for f in fields if _holds(f.type, dict))
    return _Shape(cls, names, required, strings, objects)


_SHAPES: dict[str, _Shape] = {cls.type: _shape(cls) for cls in _TYPES}
_decoder = msgspec.json.Decoder(Message)


def decode(raw: str | bytes) -> Message:
    """Parse one frame; raise ProtocolError (and nothing else) for anything that is not a valid message."""
    try:
        msg: Message = _decoder.decode(raw)
        return msg
    except (msgspec.DecodeError, RecursionError):
        # Read again field by field, to say exactly what is wrong (or to take a very deep frame).
        return from_json(raw)


def from_json(raw: str | bytes) -> Message:
    """`decode` by way of a dict, checked field by field: slower, and it names what is wrong."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise ProtocolError(
                "too_deep", f"frame nests deeper than {MAX_FRAME_DEPTH} levels, the most the engine decodes"
            ) from None
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


# A string field that says who waits on a frame, found in the frame with its escaped quotes and
# backslashes blanked out. In valid JSON a key follows `{` or `,` and every quote left is a string's
# edge, so a match is a key at some depth, never text inside a string.
_WAITER_FIELD = re.compile(rb'[{,]\s*"(type|invocation_id|function_id)"\s*:\s*("[^"]*")')
# The search reads at most this much of a frame, and at most this many candidate fields, so that
# its cost (C, but a little Python per string and per candidate) stays small on any frame. A
# larger undecodable frame is dropped unanswered, as is any frame whose fields lie beyond these.
STAND_IN_MAX_BYTES = 1024 * 1024
_MAX_CANDIDATES = 1000


def stand_in(raw: str | bytes, exc: ProtocolError) -> tuple[str, InvocationResult] | None:
    """The refused frame's type and the failed result that stands for it, when someone waits on the
    frame; None when no one does.

    For an `invokefunction` with an invocation id it is the result its sender is owed; for an
    `invocationresult`, the result the call's caller gets instead. Without it the caller would wait
    for its own timeout, or for ever: the engine sets none. The fields are fished out of the raw
    text, since the frame did not parse; this runs only on the error path.
    """
    if len(raw) > STAND_IN_MAX_BYTES:
        return None
    fields = _top_level_strings(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    kind, invocation_id = fields.get("type"), fields.get("invocation_id")
    if invocation_id is None or kind not in ("invokefunction", "invocationresult"):
        return None
    code = ErrorCode.PAYLOAD_TOO_DEEP if exc.reason == "too_deep" else ErrorCode.DESERIALIZATION_ERROR
    what = "call" if kind == "invokefunction" else "result"
    return kind, InvocationResult(
        invocation_id=invocation_id,
        function_id=fields.get("function_id"),
        error={"code": code, "message": f"the engine could not decode the {what}: {exc}"},
    )


def _top_level_strings(raw: bytes) -> dict[str, str]:
    """`type`, `invocation_id` and `function_id` of a JSON object, where they are strings at its top level.

    The depth of each candidate is counted from the previous one: the brackets between them outside
    strings (every other piece between quotes), so the frame is read a few times, however deep it is.
    """
    # Same length as `raw`, so positions carry over; an escaped backslash goes first, as JSON pairs them.
    blank = raw.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    found: dict[str, str] = {}
    depth, start = 0, 0
    for count, match in enumerate(_WAITER_FIELD.finditer(blank)):
        if count == _MAX_CANDIDATES:
            break
        key_at = match.start(1) - 1
        outside = b"".join(blank[start:key_at].split(b'"')[::2])
        depth += outside.count(b"{") + outside.count(b"[") - outside.count(b"}") - outside.count(b"]")
        start = key_at
        name = match.group(1).decode()
        if depth == 1 and name not in found:
            try:
                value = orjson.loads(raw[match.start(2) : match.end(2)])
            except orjson.JSONDecodeError:
                continue
            found[name] = value
    return found


def to_dict(msg: Message) -> dict[str, Any]:
    """The wire form: `type` first, unset (None) fields left out, as the iii engine and SDKs do."""
    out: dict[str, Any] = {"type": msg.type}
    for name in _SHAPES[msg.type].names:
        value = getattr(msg, name)
        if value is not None:
            out[name] = value
    return out


def encode(msg: Message) -> bytes:
    """JSON bytes; a value JSON cannot carry (a set, say) raises ProtocolError."""
    frame = to_dict(msg)
    try:
        return orjson.dumps(frame)
    except TypeError as refusal:
        try:
            return beyond_orjson(frame, refusal)
        except TypeError as exc:
            raise ProtocolError("unencodable", f"{msg.type} is not JSON-encodable: {exc}") from None
