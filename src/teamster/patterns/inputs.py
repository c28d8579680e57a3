"""Answers to `requestUserInput`, for runs in this process: a future per pending request."""

from __future__ import annotations

import asyncio
import contextlib


class Inputs:
    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[str]] = {}

    def open(self, request_id: str) -> None:
        """Accept answers for `request_id` from now on, before anyone is told about it."""
        self._pending.setdefault(request_id, asyncio.get_running_loop().create_future())

    async def wait(self, request_id: str, timeout_s: float) -> str | None:
        """The answer, or None when `timeout_s` passes first."""
        self.open(request_id)
        future = self._pending[request_id]
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return None
        finally:
            self._pending.pop(request_id, None)
            with contextlib.suppress(asyncio.InvalidStateError):
                future.cancel()

    def resolve(self, request_id: str, answer: str) -> bool:
        """Deliver an answer; False when nothing waits for `request_id`."""
        future = self._pending.get(request_id)
        if future is None or future.done():
            return False
        future.set_result(answer)
        return True

    def pending(self) -> list[str]:
        return list(self._pending)
