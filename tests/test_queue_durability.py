"""iii-queue on SQLite across a SIGKILL of the engine process: nothing lost, in-flight work redelivered."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from teamster.sdk import Enqueue, Worker
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "work"
# Retries stay quick and never reach the DLQ while no worker serves the function.
QUEUE_CONFIG = {"queue_configs": {QUEUE: {"backoff_ms": 5, "max_retries": 30}}}

_ENGINE = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[1])
    from tests.conftest import engine_config
    from teamster.engine.engine import Engine

    async def main() -> None:
        engine = Engine(engine_config("sqlite", Path(sys.argv[2]), iii_queue=json.loads(sys.argv[3])))
        await engine.start()
        print(engine.ports["ws"], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@asynccontextmanager
async def engine_process(data_dir: Path) -> AsyncIterator[str]:
    """An engine in its own process on SQLite in `data_dir`; yields its ws url and SIGKILLs it on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ENGINE,
        str(ROOT),
        str(data_dir),
        json.dumps(QUEUE_CONFIG),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
        yield f"ws://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()


def recorder(received: list[Any], started: asyncio.Event | None = None) -> Callable[[Any], Awaitable[None]]:
    """A handler that records its data; with `started`, it then signals and never finishes."""

    async def handle(data: Any) -> None:
        received.append(data)
        if started is not None:
            started.set()
            await asyncio.Event().wait()

    return handle


@pytest.mark.slow
async def test_messages_survive_engine_kill(tmp_path: Path) -> None:
    n = 5
    stuck: list[Any] = []
    started = asyncio.Event()
    first = Worker("before-crash")
    first.register_function("work::slow", recorder(stuck, started))
    async with engine_process(tmp_path) as url:
        await first.open(url, wait=10)
        for i in range(n):
            await first.trigger("work::job", {"i": i}, action=Enqueue(QUEUE))  # nobody serves work::job yet
        await first.trigger("work::slow", {"slow": True}, action=Enqueue(QUEUE))
        await asyncio.wait_for(started.wait(), 5)
    await first.close()
    assert stuck == [{"slow": True}]

    jobs: list[Any] = []
    slow: list[Any] = []
    second = Worker("after-crash")
    second.register_function("work::job", recorder(jobs))
    second.register_function("work::slow", recorder(slow))
    async with engine_process(tmp_path) as url:
        await second.open(url, wait=10)
        try:

            async def drained() -> bool:
                counts = await second.trigger("engine::queue::topic_stats", {"topic": QUEUE})
                return bool(counts == {"topic": QUEUE, "ready": 0, "in_flight": 0, "dead": 0})

            await eventually(drained)
        finally:
            await second.close()

    assert sorted(job["i"] for job in jobs) == list(range(n))  # each exactly once: acked, so never again
    assert slow == [{"slow": True}]  # in flight at the kill: delivered again
