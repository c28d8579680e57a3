"""A value that satisfies a JSON Schema, for the common keywords: arguments a test model can call any tool with.

Not tied to providers: anything that needs a plausible payload for a function from its published
request schema (a demo call, a placeholder in a form) can use `example_for`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}


def example_for(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value that satisfies `schema` for the common keywords.

    Handles `$ref` (local), `const`, `default`, `enum`, `anyOf`/`oneOf` (the first non-null branch),
    `allOf` (merged), types string/number/integer/boolean/null/array/object, required properties,
    nested objects, `minLength`/`maxLength`, `format`, `minimum`/`maximum` (and exclusive ones),
    `multipleOf`, `minItems`/`maxItems`, `uniqueItems`, `minProperties`. Not `pattern`.
    """
    if root is None:
        root = schema
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "$ref" in schema:
        target = _resolve(root, schema["$ref"])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return example_for(_merge(target, rest) if rest else target, root, depth + 1)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return copy.deepcopy(schema["enum"][0])
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            rest = {k: v for k, v in schema.items() if k != key}
            pick = next((o for o in options if not _is_null(o, root)), options[0])
            return example_for(_merge(rest, pick), root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict) and "$ref" in part:
                part = _resolve(root, part["$ref"])
            merged = _merge(merged, part)
        return example_for(merged, root, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return _integer(schema)
    if kind == "number":
        return _number(schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        return non_null[0] if non_null else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minLength", "maxLength", "format", "pattern")):
        return "string"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return None


def _object(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    found = schema.get("properties")
    props: dict[str, Any] = found if isinstance(found, dict) else {}
    extra = schema.get("additionalProperties")
    out: dict[str, Any] = {}
    required = [k for k in schema.get("required", []) if isinstance(k, str)]
    for key in required:
        sub = props.get(key, extra if isinstance(extra, dict) else {})
        out[key] = example_for(sub, root, depth + 1)
    want = schema.get("minProperties", 0)
    for key, sub in props.items():
        if len(out) >= want:
            break
        if key not in out:
            out[key] = example_for(sub, root, depth + 1)
    return out


def _array(schema: dict[str, Any], root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    if isinstance(items, list):  # draft-04 tuple form
        prefix, items = items, schema.get("additionalItems", {})
    low = int(schema.get("minItems", 0))
    high = schema.get("maxItems")
    count = max(low, 1, len(prefix) if isinstance(prefix, list) else 0)
    if isinstance(high, int):
        count = min(count, high)
    out: list[Any] = []
    for i in range(count):
        if isinstance(prefix, list) and i < len(prefix):
            value = example_for(prefix[i], root, depth + 1)
        else:
            value = example_for(items if isinstance(items, dict) else {}, root, depth + 1)
        if schema.get("uniqueItems") and value in out:
            value = _vary(value, i)
        out.append(value)
    return out


def _vary(value: Any, i: int) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + i
    if isinstance(value, str):
        return f"{value}{i}"
    return value


def _string(schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    text = _FORMATS.get(fmt, "example") if isinstance(fmt, str) else "example"
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    if len(text) < low:
        text += "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low is exclusive, high, high is exclusive), for draft-04 and later forms."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_ex = high_ex = False
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_min, bool):
        low_ex = ex_min and low is not None
    elif isinstance(ex_min, int | float) and (low is None or ex_min >= low):
        low, low_ex = ex_min, True
    if isinstance(ex_max, bool):
        high_ex = ex_max and high is not None
    elif isinstance(ex_max, int | float) and (high is None or ex_max <= high):
        high, high_ex = ex_max, True
    return low, low_ex, high, high_ex


def _integer(schema: dict[str, Any]) -> int:
    low, low_ex, high, high_ex = _bounds(schema)
    lo = None if low is None else (math.floor(low) + 1 if low_ex else math.ceil(low))
    hi = None if high is None else (math.ceil(high) - 1 if high_ex else math.floor(high))
    value = 1
    if lo is not None and value < lo:
        value = lo
    if hi is not None and value > hi:
        value = hi
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        value = math.ceil(value / step) * step
        if hi is not None and value > hi:
            value = math.floor(hi / step) * step
    return value


def _number(schema: dict[str, Any]) -> float | int:
    low, low_ex, high, high_ex = _bounds(schema)
    step = schema.get("multipleOf")
    value: float = 1
    if low is not None and (value < low or (low_ex and value <= low)):
        value = low + 1 if low_ex else low
    if high is not None and (value > high or (high_ex and value >= high)):
        value = high - 1 if high_ex else high
    if (
        low is not None
        and high is not None
        and not ((value > low if low_ex else value >= low) and (value < high if high_ex else value <= high))
    ):
        value = (low + high) / 2
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        snapped = math.ceil(value / step) * step
        if high is not None and (snapped > high or (high_ex and snapped >= high)):
            snapped = math.floor(value / step) * step
        value = snapped
    return value


def _resolve(root: Any, ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return {}
    return node


def _merge(base: Any, extra: Any) -> dict[str, Any]:
    out = dict(base) if isinstance(base, dict) else {}
    if not isinstance(extra, dict):
        return out
    for key, value in extra.items():
        if key == "properties" and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = out[key] + [v for v in value if v not in out[key]]
        else:
            out[key] = value
    return out


def _is_null(option: Any, root: Any) -> bool:
    if isinstance(option, dict) and "$ref" in option:
        option = _resolve(root, option["$ref"])
    return isinstance(option, dict) and option.get("type") == "null"
