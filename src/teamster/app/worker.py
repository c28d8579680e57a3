"""The `app` worker: the run API and the web playground, as functions `app::*` bound to HTTP routes.

It drives pattern runs itself (`RunManager`), on the `inproc` backend or through the engine's harness,
and keeps their records and events on the engine, so `teamster up` can be stopped and started again
without losing a run.
"""

from __future__ import annotations

import os
from typing import Any

from teamster.app.context import App
from teamster.app.http import bind
from teamster.app.routes import all_routes
from teamster.app.runs import RunManager
from teamster.engine.config import EngineConfig
from teamster.patterns.engine import EngineClient
from teamster.sdk import Worker
from teamster.sdk.transport import LocalHost


class AppWorker(Worker):
    """The app's worker: its functions are the run API's routes, one `app::<name>` each.

    Their ids come from the route table (`teamster.app.routes`), so the constructor registers them by
    hand (`teamster.app.http.bind`) rather than through `@handles`. It stays a `Worker` subclass because
    the app hooks the connection's life: runs left behind are recovered on every open, and its runs are
    closed before it disconnects.

    `token`: the one the engine's HTTP listener demands, which the engine checks; the app only reports
    (in `/health`) whether there is one."""

    def __init__(self, *, token: str | None = None, profile: str = "thick", keepalive_s: float | None = None) -> None:
        super().__init__("app", description="Run API and web playground")
        client = EngineClient(self)  # its bindings must exist before the worker connects
        self.runs = RunManager(self, client, self._credentials)
        self.app = App(self, self.runs, token is not None, profile=profile)
        if keepalive_s is not None:
            self.app.keepalive_s = keepalive_s
        self.routes = all_routes(self.app)
        bind(self, self.routes)

    def reserve_routes(self, config: EngineConfig) -> None:
        """Reserve this worker's routes for `app::` functions in the engine's `iii-http` config, so no
        other worker can bind them (or a path that would answer their requests) while the app is away."""
        http = config.worker("iii-http")
        if http is not None:
            reserved = http.config.setdefault("reserved_routes", {})
            reserved.setdefault("app::", [f"{route.method} {route.path}" for route in self.routes])

    async def open(self, url: str | None = None, *, wait: float = 30.0, headers: dict[str, str] | None = None) -> None:
        await super().open(url, wait=wait, headers=headers)
        await self.runs.recover()

    async def open_local(self, engine: LocalHost) -> None:
        await super().open_local(engine)
        await self.runs.recover()

    async def close(self) -> None:
        await self.runs.close()
        await super().close()

    async def _credentials(self, provider: str) -> Any:
        """A provider's key as the credentials worker resolves it: stored first, then the environment."""
        return await self.trigger("auth::get_token", {"provider": provider})


def create_worker(*, profile: str = "thick", token: str | None = None) -> AppWorker:
    """The app worker; `token` defaults to `TEAMSTER_TOKEN` from the environment."""
    return AppWorker(token=token if token is not None else os.environ.get("TEAMSTER_TOKEN") or None, profile=profile)
