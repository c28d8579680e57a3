"""JSON text of any value JSON can carry: orjson, and the standard library where orjson stops short.

orjson refuses two things JSON carries: nesting past 254 levels (a long session tree, say) and
integers past 64 bits (decoded exactly, so forwarded exactly). The standard library writes those.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

ORJSON_LIMITS = ("Recursion limit reached", "Integer exceeds 64-bit range")


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON; TypeError when JSON cannot carry it (a set, NaN, a cycle)."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        return beyond_orjson(value, exc)


def beyond_orjson(value: Any, refusal: TypeError) -> bytes:
    """What `dumps` writes once orjson has refused `value` with `refusal`: for callers that try orjson
    inline on a hot path and come here only when it fails."""
    if str(refusal) not in ORJSON_LIMITS:
        raise refusal
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(str(exc)) from None
