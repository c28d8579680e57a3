"""A lease on one key of engine state: one holder at a time across processes, given up when its holder dies.

The value maps each claim's nonce to its expiry in epoch ms, beside an optional `"again": true`. State has
no compare-and-set, but one `state::update` is atomic and replies with the value as of that write: a claim
wins when no other unexpired claim is there, so of two claims only the earlier can win (both may lose; each
tries again after a pause). An expired claim (a crashed holder's) counts for nothing; the winner clears it.
A holder that works for longer than the time to live keeps its claim alive with `renew`.

`again` is how a caller that found the lease taken asks the holder for one more pass: `release` removes the
claim and the flag in one update and reports whether the flag was there, so no request falls between them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.sdk import Worker
from teamster.sdk.state import update_state

AGAIN = "again"  # beside the claims; never a nonce (those are hex)


class Lease:
    """One claim (one nonce) on the lease at `scope`/`key`."""

    def __init__(self, worker: Worker, scope: str, key: str, ttl_s: float) -> None:
        self.worker = worker
        self.scope = scope
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.nonce = uuid.uuid4().hex

    async def claim(self) -> dict[str, int]:
        """Try once: {} when this claim holds the lease now, else the other live claims (this one withdrawn)."""
        now = now_ms()
        _, value = await self._update({"type": "set", "path": self._path, "value": now + self.ttl_ms})
        others = {nonce: expires for nonce, expires in _claims(value).items() if nonce != self.nonce}
        live = {nonce: expires for nonce, expires in others.items() if expires > now}
        if live:
            await self._update({"type": "remove", "path": self._path})
            return live
        if others:
            await self._update(*({"type": "remove", "path": nonce} for nonce in others))
        return {}

    async def take(self, wait_s: float) -> bool:
        """Claim, trying again for up to `wait_s` while another holder keeps the lease."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        pause = 0.05
        while await self.claim():
            if loop.time() + pause > deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
        return True

    async def renew(self) -> None:
        await self._update({"type": "set", "path": self._path, "value": now_ms() + self.ttl_ms})

    async def keep(self) -> None:
        """Renew every third of the time to live, until cancelled (a failed renewal is tried again next time)."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                await self.renew()
            except InvocationError:
                continue

    async def held(self) -> bool:
        """Whether this claim is still there and unexpired."""
        value = await self.worker.trigger("state::get", {"scope": self.scope, "key": self.key})
        return _claims(value).get(self.nonce, 0) > now_ms()

    async def ask_again(self) -> dict[str, int]:
        """Ask the holder for one more pass; the live claims as of that write ({}: nobody holds it any more)."""
        now = now_ms()
        _, value = await self._update({"type": "set", "path": AGAIN, "value": True})
        return {nonce: expires for nonce, expires in _claims(value).items() if expires > now}

    async def release(self) -> bool:
        """Let go; whether another caller asked for one more pass while this claim held the lease."""
        old, _ = await self._update({"type": "remove", "path": self._path}, {"type": "remove", "path": AGAIN})
        return isinstance(old, dict) and old.get(AGAIN) is True

    @property
    def _path(self) -> str:
        return self.nonce

    async def _update(self, *ops: dict[str, Any]) -> tuple[Any, Any]:
        """Apply `ops` atomically; the value before and after them."""
        return await update_state(self.worker, self.scope, self.key, *ops)


def _claims(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(nonce): int(expires) for nonce, expires in value.items() if nonce != AGAIN}
