"""Spans on the wire: the span record and its OTLP/JSON form (`OTLP` telemetry frames).

Workers build `SpanRecord`s and send them as `OTLP` frames; the engine decodes frames from any SDK into the same.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

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


@dataclass(slots=True)
class SpanRecord:
    """One finished span, as workers produce it and the engine stores and exports it."""

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
    attributes: dict[str, Any] = field(default_factory=dict)
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


def encode_otlp(spans: Iterable[SpanRecord]) -> bytes:
    """An OTLP/JSON `ExportTraceServiceRequest`: one resource per service, hex ids (the OTLP/JSON rule)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for span in spans:
        groups.setdefault((span.service_name, span.scope), []).append(_otlp_span(span))
    resources: dict[str, list[dict[str, Any]]] = {}
    for (service, scope), otlp_spans in groups.items():
        resources.setdefault(service, []).append({"scope": {"name": scope}, "spans": otlp_spans})
    return orjson.dumps(
        {
            "resourceSpans": [
                {"resource": {"attributes": _otlp_attributes({"service.name": service})}, "scopeSpans": scopes}
                for service, scopes in resources.items()
            ]
        }
    )


def _otlp_span(span: SpanRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": _KIND_NUMBER.get(span.kind, 0),
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": _otlp_attributes(span.attributes),
        "status": {"code": _STATUS_NUMBER.get(span.status, 0)},
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if span.status_message:
        out["status"]["message"] = span.status_message
    if span.events:
        out["events"] = [
            {
                "name": event.get("name", ""),
                "timeUnixNano": str(event.get("time_unix_nano", 0)),
                "attributes": _otlp_attributes(event.get("attributes") or {}),
            }
            for event in span.events
        ]
    return out


def _otlp_attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _otlp_value(value)} for key, value in attributes.items() if value is not None]


def _otlp_value(value: Any) -> dict[str, Any]:
    if type(value) is str:  # nearly every attribute: skip the checks below
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 travels as a string in proto3 JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_otlp_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _otlp_attributes(value)}}
    return {"stringValue": value if isinstance(value, str) else str(value)}


class MalformedTelemetry(ValueError):
    """An `OTLP` frame that is not an OTLP/JSON trace export."""


def decode_otlp(payload: bytes) -> tuple[list[SpanRecord], int]:
    """Spans of an OTLP/JSON trace export, and how many spans in it were unusable and skipped.

    A frame whose structure is wrong raises MalformedTelemetry; a bad span only skips itself.
    """
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedTelemetry(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedTelemetry("not a JSON object")
    try:
        return _decode_resources(doc)
    except MalformedTelemetry:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise MalformedTelemetry(f"bad resource or scope: {exc!r}") from None


def _decode_resources(doc: dict[str, Any]) -> tuple[list[SpanRecord], int]:
    spans: list[SpanRecord] = []
    skipped = 0
    for resource_spans in _list(doc.get("resourceSpans"), "resourceSpans", required=True):
        resource = _dict(resource_spans, "resourceSpans[]").get("resource")
        resource_attrs = _attributes(_dict(resource, "resource").get("attributes")) if resource is not None else {}
        service = resource_attrs.get("service.name")
        service_name = service if isinstance(service, str) and service else "unknown"
        for scope_spans in _list(resource_spans.get("scopeSpans"), "scopeSpans"):
            scope = _dict(scope_spans, "scopeSpans[]").get("scope")
            scope_name = _dict(scope, "scope").get("name") if scope is not None else None
            for raw in _list(scope_spans.get("spans"), "spans"):
                try:
                    spans.append(_span_from_otlp(raw, service_name, scope_name if isinstance(scope_name, str) else ""))
                except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
                    skipped += 1
    return spans, skipped


def _list(value: Any, where: str, *, required: bool = False) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise MalformedTelemetry(f"{where} must be a list")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedTelemetry(f"{where} must be an object")
    return value


def _span_from_otlp(raw: dict[str, Any], service_name: str, scope: str) -> SpanRecord:
    # Every span of every frame passes here: positional construction, absent fields skipped.
    parent = raw.get("parentSpanId")
    status = raw.get("status") or {}
    name = raw["name"]
    if not isinstance(name, str):
        raise TypeError("span name must be a string")
    message = status.get("message")
    raw_events = raw.get("events")
    events = (
        [
            {
                "name": str(event.get("name", "")),
                "time_unix_nano": int(event.get("timeUnixNano") or 0),
                "attributes": _attributes(event.get("attributes")),
            }
            for event in raw_events
        ]
        if raw_events
        else None
    )
    return SpanRecord(
        _otlp_id(raw["traceId"], 16),
        _otlp_id(raw["spanId"], 8),
        _otlp_id(parent, 8) if parent else None,
        name,
        service_name,
        int(raw.get("startTimeUnixNano") or 0),
        int(raw.get("endTimeUnixNano") or 0),
        _KIND_OF.get(raw.get("kind", 0), "unspecified"),
        _STATUS_OF.get(status.get("code", 0), "unset"),
        message if isinstance(message, str) and message else None,
        _attributes(raw.get("attributes")),
        events,
        scope,
    )


def _otlp_id(value: Any, size: int) -> str:
    """Hex per the OTLP/JSON spec; base64 (plain proto3 JSON) is accepted too. All-zero ids are invalid."""
    if not isinstance(value, str):
        raise TypeError("ids are strings")
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


def _attributes(raw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in raw or []:
        key = entry.get("key")
        if isinstance(key, str):
            out[key] = _any_value(entry.get("value"))
    return out


def _any_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return _attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return None
