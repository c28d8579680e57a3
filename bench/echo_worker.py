"""The benchmark's echo worker, run as its own process: `python bench/echo_worker.py ws://…`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from teamster.sdk import Worker

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None


async def serve(url: str) -> None:
    worker = Worker("bench-echo")

    @worker.function("bench::echo")
    async def echo(data: Any) -> Any:
        return data

    async with worker.connect(url):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1]))
