"""One step of a session at a time, across processes: each step runs under the session's lease.

Two step messages for one session can be in flight at once: two approvals each wake the parked turn, a
redelivered step meets its successor, a second orchestrator process takes over. Each step holds the lease
at `turn_lease/<sid>` (see `harness/lease.py`) while it runs, renewing it, so a crashed holder blocks the
session for one time to live at most.

A step that finds the lease taken does not wait for the holder's whole step (a tool call may run for
minutes): it sets the lease's `again` flag and ends as soon as it sees the holder renew after that, because
a holder that is alive hands the flag over when it lets go and runs the session's current state once more.
A holder that dies instead stops renewing; then the waiter takes the lease over itself.
"""

from __future__ import annotations

import asyncio

from teamster.harness.lease import Lease

LEASES = "turn_lease"


async def acquire_or_defer(lease: Lease) -> bool:
    """True: this step holds the lease. False: a live holder has been asked for one more pass instead."""
    asked: dict[str, int] = {}  # the live claims, and their expiries, as of the `again` flag's write
    pause = 0.02
    while live := await lease.claim():
        if asked and any(nonce in asked and expires > asked[nonce] for nonce, expires in live.items()):
            return False  # renewed after the flag was set: that holder is alive and will see the flag
        if not asked.keys() & live.keys():
            asked = await lease.ask_again()
            if not asked:
                continue  # let go between our claim and the flag: try the lease again at once
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
    return True
