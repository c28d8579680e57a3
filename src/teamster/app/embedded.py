"""An engine inside a CLI command, for one run: memory storage, no sockets, every worker attached in-process.

It carries the thick harness profile and the patterns worker, as `teamster up` does, so an engine-backend
run needs no server; it is gone when the command ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.engine.config import DEFAULT_WORKERS, EngineConfig, WorkerEntry
from teamster.engine.engine import Engine
from teamster.patterns.engine import EngineClient
from teamster.patterns.functions import create_worker as patterns_worker

SOCKETS = frozenset({"iii-worker-manager", "iii-http"})  # attached workers need no listener


@asynccontextmanager
async def embedded_engine(data_dir: Path) -> AsyncIterator[EngineClient]:
    """A running engine with the thick harness and the patterns worker; yields a client attached to it.

    `data_dir` is where stored provider keys are read from, as for `teamster up`; nothing is written there.
    """
    modules = [WorkerEntry(name=name) for name in DEFAULT_WORKERS if name not in SOCKETS]
    config = EngineConfig(storage="memory", data_dir=data_dir, workers=modules)
    client = EngineClient()  # before it attaches: its bindings must precede any run
    workers = [*harness_workers("thick", HarnessOptions(data_dir=data_dir)), patterns_worker(), client.worker]
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(Engine(config))
        for worker in workers:
            await stack.enter_async_context(worker.attach(engine))
        yield client
