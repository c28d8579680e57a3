"""Invocation and trigger ids: opaque strings on the wire, so cheap ones will do."""

from __future__ import annotations

import itertools
import uuid

_PREFIX = uuid.uuid4().hex[:12]
_COUNTER = itertools.count(1)


def new_id() -> str:
    """Unique across processes (a random prefix) and cheap to make (a counter)."""
    return f"{_PREFIX}-{next(_COUNTER)}"
