"""Ids and random bits: invocation and trigger ids are opaque strings on the wire, so cheap ones will do."""

from __future__ import annotations

import itertools
import os
import random
import uuid

# teamster's own generator (not secret: span ids, frame masks, backoff jitter). Drawing from the global
# one would shift the sequence of a program that seeded it for its own reasons.
rng = random.Random()
os.register_at_fork(after_in_child=rng.seed)  # as the global one does: a forked child must not repeat its parent

_PREFIX = uuid.uuid4().hex[:12]
_COUNTER = itertools.count(1)


def new_id() -> str:
    """Unique across processes (a random prefix) and cheap to make (a counter)."""
    return f"{_PREFIX}-{next(_COUNTER)}"
