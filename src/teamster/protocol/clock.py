"""teamster's two clocks in milliseconds, one definition each, low enough for every layer to import.

`now_ms` is the wall clock: what is stored or sent (timestamps, expiry times, leases) must mean the
same after a restart and to another process. `monotonic_ms` is for durations measured within one
process: it never jumps when the wall clock is set.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the Unix epoch, read through `time.time` (the clock a test sets by patching it)."""
    return int(time.time() * 1000)


def monotonic_ms() -> int:
    """Milliseconds on a clock that only moves forward; meaningful only as a difference."""
    return time.monotonic_ns() // 1_000_000
