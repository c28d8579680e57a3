"""How deeply nested (and how large) a JSON value may be, where teamster reads or stores one from outside.

Every decoder on a value's way has a depth it cannot go past — msgspec and the standard library
stop at the interpreter's recursion limit (about 1,000), orjson at 1,024 — and past it they fail
with a `RecursionError` or a bare decode error that says nothing useful. teamster refuses a value
nested deeper than `MAX_JSON_DEPTH` where it first reads it (an HTTP body, a state value), well
before any of them, so the refusal is a clear error and the value never reaches a worker whose
decoder would choke on it inside the frame that carries it.
"""

from __future__ import annotations

from typing import Any

import orjson

from teamster.protocol.errors import ErrorCode, InvocationError
from teamster.protocol.jsontext import beyond_orjson

MAX_JSON_DEPTH = 512

# The default cap on a value the engine stores (a state value, a stream item) or fans out (a stream
# event): well under the 64 MiB frame, which a set or update result carries twice (old and new).
MAX_VALUE_BYTES = 4 * 1024 * 1024

# The deepest frame the engine decodes: orjson's fixed limit (msgspec hands it what passes the
# recursion limit). A deeper `invokefunction` or `invocationresult` is answered with PAYLOAD_TOO_DEEP.
MAX_FRAME_DEPTH = 1024


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` (decoded JSON: dicts, lists, scalars) nests more than `limit` containers deep.

    Iterative, so it cannot itself run out of stack on the values it is there to refuse.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_stored(value: Any, max_bytes: int | None, setting: str, function_id: str) -> None:
    """Refuse a value to store that is over `max_bytes` as JSON (VALUE_TOO_LARGE) or nests more than
    MAX_JSON_DEPTH deep (VALUE_TOO_DEEP), naming `setting`, the cap and the size.

    The value arrives decoded, so its size is that of its JSON written again with orjson (about a
    millisecond per MiB), paid where a value is stored, never per frame. orjson writes at most 254
    levels, so the depth walk runs only for a value it refused.
    """
    try:
        size = len(orjson.dumps(value))
    except TypeError as refusal:
        if too_deep(value):
            raise InvocationError(
                ErrorCode.VALUE_TOO_DEEP, f"value nests deeper than {MAX_JSON_DEPTH} levels", function_id=function_id
            ) from None
        try:
            size = len(beyond_orjson(value, refusal))
        except TypeError:
            return  # not JSON at all (an in-process caller's set, say): what stores or sends it refuses it
    if max_bytes is not None and size > max_bytes:
        raise InvocationError(
            ErrorCode.VALUE_TOO_LARGE, f"value is {size} bytes; {setting} is {max_bytes}", function_id=function_id
        )
