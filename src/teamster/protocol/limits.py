"""How deeply nested a JSON value may be, where teamster reads one from outside.

Every decoder on a value's way has a depth it cannot go past — msgspec and the standard library
stop at the interpreter's recursion limit (about 1,000), orjson at 1,024 — and past it they fail
with a `RecursionError` or a bare decode error that says nothing useful. teamster refuses a value
nested deeper than `MAX_JSON_DEPTH` where it first reads it (an HTTP body, a state value), well
before any of them, so the refusal is a clear error and the value never reaches a worker whose
decoder would choke on it inside the frame that carries it.
"""

from __future__ import annotations

from typing import Any

MAX_JSON_DEPTH = 512

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
