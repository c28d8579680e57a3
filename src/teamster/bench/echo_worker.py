"""The engine benchmark's echo worker, run as its own process: `python -m teamster.bench.echo_worker ws://…`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from teamster.app.run import run
from teamster.sdk import Worker


async def serve(url: str) -> None:
    worker = Worker("bench-echo")

    @worker.function("bench::echo")
    async def echo(data: Any) -> Any:
        return data

    async with worker.connect(url):
        print("ready", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()
