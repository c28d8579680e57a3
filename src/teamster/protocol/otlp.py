"""Spans on the wire: the span record and its OTLP/JSON form (`OTLP` telemetry frames).

Workers build `SpanRecord`s and send them as `OTLP` frames; the engine decodes frames from any SDK into the same.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

OTLP_FRAME_PREFIX = b"OTLP"
SESSION_ID = "iii.session.id"
MESSAGE_ID = "iii.message.id"
FUNCTION_ID = "iii.function.id"
KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")  # OTLP SpanKind order
STATUSES = ("unset", "ok", "error")  # OTLP StatusCode order
# What an OTLP/JSON `kind` or status `code` may be: the enum's number, or its name (proto3 JSON allows both).
_KIND_OF: dict[Any, str] = {**dict(enumerate(KINDS)), **{f"SPAN_KIND_{kind.upper()}": kind for kind in KINDS}}
_STATUS_OF: dict[Any, str] = {
    **dict(enumerate(STATUSES)),
    **{f"STATUS_CODE_{status.upper()}": status for status in STATUSES},
}
_KIND_NUMBER = {kind: number for number, kind in enumerate(KINDS)}
_STATUS_NUMBER = {status: number for number, status in enumerate(STATUSES)}
_HEX = frozenset("0123456789abcdef")
_S = TypeVar("_S")
_NON_FINITE = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}  # JSON has no such numbers; proto3 spells them


class SpanRecord(msgspec.Struct, gc=False):
    """One finished span, as workers produce it and the engine stores and exports it.

    Not tracked by the cycle collector (it holds no cycles): the engine keeps thousands of them, and
    walking them cost more than decoding them.
    """

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None
    name: str
    service_name: str
    start_ns: int
    end_ns: int = 0
    kind: str = "internal"
    status: str = "unset"
    status_message: str | None = None
    attributes: dict[str, Any] = {}
    events: list[dict[str, Any]] | None = None
    scope: str = "teamster"

    def to_json(self) -> dict[str, Any]:
        """The shape `engine::traces::*` return (iii's stored-span fields, attributes as an object)."""
        out: dict[str, Any] = {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "service_name": self.service_name,
            "start_time_unix_nano": self.start_ns,
            "end_time_unix_nano": self.end_ns,
            "duration_ms": max(0, self.end_ns - self.start_ns) / 1e6,
            "status": self.status,
            "attributes": dict(self.attributes),  # in-process callers get a copy, not the stored dict
            "events": self.events or [],
            "instrumentation_scope_name": self.scope,
        }
        if self.status_message:
            out["status_description"] = self.status_message
        return out


# ---- OTLP/JSON ----------------------------------------------------------------------------------


# The OTLP/JSON export as msgspec structs, both ways: decoded straight into them, a span costs a
# fraction of a dict tree, and like SpanRecord they are invisible to the cycle collector. Fields
# absent or at their default are left out when encoding; unknown fields are ignored when decoding.


class _Value(msgspec.Struct, gc=False, omit_defaults=True):
    stringValue: str | UnsetType = UNSET
    boolValue: bool | UnsetType = UNSET
    intValue: int | str | UnsetType = UNSET
    doubleValue: float | str | UnsetType = UNSET  # proto3 JSON may send "NaN" or "1.5"
    arrayValue: _ValueList | UnsetType = UNSET
    kvlistValue: _KeyValueList | UnsetType = UNSET
    bytesValue: str | UnsetType = UNSET


class _KeyValue(msgspec.Struct, gc=False, omit_defaults=True):
    key: str
    value: _Value | None = None


class _ValueList(msgspec.Struct, gc=False, omit_defaults=True):
    values: list[_Value] | None = None


class _KeyValueList(msgspec.Struct, gc=False, omit_defaults=True):
    values: list[_KeyValue] | None = None


class _Status(msgspec.Struct, gc=False, omit_defaults=True):
    code: int | str | None = 0
    message: str | None = None


class _Event(msgspec.Struct, gc=False, omit_defaults=True):
    name: str = ""
    timeUnixNano: int | str | None = 0
    attributes: list[_KeyValue] | None = None


class _Span(msgspec.Struct, gc=False, omit_defaults=True):
    traceId: str
    spanId: str
    name: str
    parentSpanId: str | None = None
    kind: int | str | None = 0
    startTimeUnixNano: int | str | None = 0
    endTimeUnixNano: int | str | None = 0
    attributes: list[_KeyValue] | None = None
    events: list[_Event] | None = None
    status: _Status | None = None


class _Scope(msgspec.Struct, gc=False, omit_defaults=True):
    name: str | None = None


class _Resource(msgspec.Struct, gc=False, omit_defaults=True):
    attributes: list[_KeyValue] | None = None


class _ScopeSpans(msgspec.Struct, Generic[_S], gc=False, omit_defaults=True):
    scope: _Scope | None = None
    spans: list[_S] | None = None


class _ResourceSpans(msgspec.Struct, Generic[_S], gc=False, omit_defaults=True):
    resource: _Resource | None = None
    scopeSpans: list[_ScopeSpans[_S]] | None = None


class _Export(msgspec.Struct, Generic[_S], gc=False, omit_defaults=True):
    resourceSpans: list[_ResourceSpans[_S]]


_whole = msgspec.json.Decoder(_Export[_Span])
_span_by_span = msgspec.json.Decoder(_Export[msgspec.Raw])  # a bad span then skips only itself
_one_span = msgspec.json.Decoder(_Span)
_encoder = msgspec.json.Encoder()


def encode_otlp(spans: Iterable[SpanRecord]) -> bytes:
    """An OTLP/JSON `ExportTraceServiceRequest`: one resource per service, hex ids (the OTLP/JSON rule)."""
    groups: dict[tuple[str, str], list[_Span]] = {}
    for span in spans:
        groups.setdefault((span.service_name, span.scope), []).append(_wire_span(span))
    resources: dict[str, list[_ScopeSpans[_Span]]] = {}
    for (service, scope), wire_spans in groups.items():
        resources.setdefault(service, []).append(_ScopeSpans(_Scope(scope), wire_spans))
    return _encoder.encode(
        _Export(
            [
                _ResourceSpans(_Resource(_wire_attributes({"service.name": service})), scopes)
                for service, scopes in resources.items()
            ]
        )
    )


def _wire_span(span: SpanRecord) -> _Span:
    return _Span(
        span.trace_id,
        span.span_id,
        span.name,
        span.parent_span_id or None,
        _KIND_NUMBER.get(span.kind, 0),
        str(span.start_ns),  # int64 travels as a string in proto3 JSON
        str(span.end_ns),
        _wire_attributes(span.attributes),
        [
            _Event(
                event.get("name", ""),
                str(event.get("time_unix_nano", 0)),
                _wire_attributes(event.get("attributes") or {}),
            )
            for event in span.events
        ]
        if span.events
        else None,
        _Status(_STATUS_NUMBER.get(span.status, 0), span.status_message or None),
    )


def _wire_attributes(attributes: Mapping[str, Any]) -> list[_KeyValue]:
    return [_KeyValue(key, _wire_value(value)) for key, value in attributes.items() if value is not None]


def _wire_value(value: Any) -> _Value:
    if type(value) is str:  # nearly every attribute: skip the checks below
        return _Value(value)
    if isinstance(value, bool):
        return _Value(boolValue=value)
    if isinstance(value, int):
        return _Value(intValue=str(value))
    if isinstance(value, float):
        return _Value(doubleValue=value if math.isfinite(value) else _NON_FINITE[str(value)])
    if isinstance(value, list | tuple):
        return _Value(arrayValue=_ValueList([_wire_value(v) for v in value]))
    if isinstance(value, dict):
        return _Value(kvlistValue=_KeyValueList(_wire_attributes(value)))
    return _Value(str(value))


class MalformedTelemetry(ValueError):
    """An `OTLP` frame that is not an OTLP/JSON trace export."""


def decode_otlp(payload: bytes) -> tuple[list[SpanRecord], int]:
    """Spans of an OTLP/JSON trace export, and how many spans in it were unusable and skipped.

    A frame whose structure is wrong raises MalformedTelemetry; a bad span only skips itself.
    """
    export: _Export[_Span] | _Export[msgspec.Raw]
    try:
        export = _whole.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        try:
            export = _span_by_span.decode(payload)
        except msgspec.ValidationError as exc:
            raise MalformedTelemetry(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise MalformedTelemetry(f"not JSON: {exc}") from None
        except RecursionError:
            raise MalformedTelemetry("nested too deeply") from None
    spans: list[SpanRecord] = []
    skipped = 0
    for resource_spans in export.resourceSpans:
        service_name = _service_name(resource_spans.resource)
        for scope_spans in resource_spans.scopeSpans or ():
            scope = scope_spans.scope
            scope_name = scope.name or "" if scope is not None else ""
            for span in scope_spans.spans or ():
                try:
                    wire = span if isinstance(span, _Span) else _one_span.decode(span)
                    spans.append(_record(wire, service_name, scope_name))
                except (msgspec.DecodeError, ValueError, TypeError, RecursionError):
                    skipped += 1
    return spans, skipped


def _service_name(resource: _Resource | None) -> str:
    """The resource's last `service.name`, when it is a non-empty string; its other attributes are not read."""
    name = "unknown"
    for kv in resource.attributes or () if resource is not None else ():
        if kv.key == "service.name":
            value = kv.value.stringValue if kv.value is not None else None
            name = value if isinstance(value, str) and value else "unknown"
    return name


def _record(span: _Span, service_name: str, scope: str) -> SpanRecord:
    parent = span.parentSpanId
    status = span.status
    events = (
        [
            {
                "name": event.name,
                "time_unix_nano": int(event.timeUnixNano or 0),
                "attributes": _attributes(event.attributes),
            }
            for event in span.events
        ]
        if span.events
        else None
    )
    return SpanRecord(
        _otlp_id(span.traceId, 16),
        _otlp_id(span.spanId, 8),
        _otlp_id(parent, 8) if parent else None,
        span.name,
        service_name,
        int(span.startTimeUnixNano or 0),
        int(span.endTimeUnixNano or 0),
        _KIND_OF.get(span.kind, "unspecified"),
        _STATUS_OF.get(status.code, "unset") if status is not None else "unset",
        status.message or None if status is not None else None,
        _attributes(span.attributes),
        events,
        scope,
    )


def _otlp_id(value: str, size: int) -> str:
    """Hex per the OTLP/JSON spec; base64 (plain proto3 JSON) is accepted too. All-zero ids are invalid."""
    hexed = value.lower()
    if len(hexed) != 2 * size or not _HEX.issuperset(hexed):
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError(f"bad id {value!r}") from None
        if len(raw) != size:
            raise ValueError(f"bad id {value!r}")
        hexed = raw.hex()
    if hexed == "0" * (2 * size):
        raise ValueError("all-zero id")
    return hexed


def _attributes(attributes: list[_KeyValue] | None) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in attributes} if attributes else {}


def _value(value: _Value | None) -> Any:
    if value is None:
        return None
    if value.stringValue is not UNSET:
        return value.stringValue
    if value.boolValue is not UNSET:
        return value.boolValue
    if value.intValue is not UNSET:
        return int(value.intValue)
    if value.doubleValue is not UNSET:
        return float(value.doubleValue)
    if value.arrayValue is not UNSET:
        return [_value(v) for v in value.arrayValue.values or ()]
    if value.kvlistValue is not UNSET:
        return _attributes(value.kvlistValue.values)
    if value.bytesValue is not UNSET:
        return value.bytesValue
    return None
