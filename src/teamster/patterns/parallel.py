"""Parallel phases of a pattern: run agent calls concurrently, and leave no sibling running after a failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_all(*calls: Awaitable[T]) -> list[T]:
    """`asyncio.gather` whose first failure cancels the siblings and waits for them before it propagates.

    A plain gather leaves siblings running: they would emit events after the run's terminal event and keep
    spending tokens for a run that has already failed.
    """
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
