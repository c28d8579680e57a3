"""Run API test helpers: the `app` worker served on a real engine, and an HTTP client that speaks to it.

`AppServer` runs the engine, the thick harness, the patterns worker and the app worker in this process,
on this event loop, with the HTTP listener on a free port. `UpProcess` runs `teamster up` in its own
process, for tests that stop or kill it. Both are reached only over HTTP, through `Api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.app.worker import AppWorker
from teamster.engine.engine import Engine
from teamster.patterns import functions as patterns
from teamster.sdk import Worker
from tests.conftest import engine_config

TOKEN = "s3cret-test-token"
TEAMSTER = str(Path(sys.executable).parent / "teamster")
UP_LINE = re.compile(r"teamster is up: open (http://\S+?)/? ")
NO_RULES = "version: 1\nrules: []\n"  # kernel defaults only: a pattern tool is no rule's, so `manual` parks it
Book = dict[str, list[list[dict[str, Any]]]]


@dataclass(slots=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any  # the decoded JSON, or the text when the reply is not JSON


@dataclass(slots=True)
class Frame:
    """One Server-Sent Events frame: an event (`id` and `data`) or a comment."""

    id: int | None = None
    data: dict[str, Any] | None = None
    comment: str | None = None


class Api:
    """An HTTP client of one teamster, sending the bearer token (when it has one) unless told not to."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str | None = None) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.token = token

    def headers(self, extra: dict[str, str] | None = None, *, auth: bool = True) -> dict[str, str]:
        found = {"authorization": f"Bearer {self.token}"} if auth and self.token else {}
        return {**found, **(extra or {})}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        data: str | None = None,
    ) -> Reply:
        """One request; `body` goes as JSON, `data` as it is."""
        sent = {"json": body} if body is not None else {"data": data}
        async with self.http.request(method, self.base + path, headers=self.headers(headers, auth=auth), **sent) as r:
            text = await r.text()
            decoded: Any = text
            if r.content_type == "application/json":
                decoded = json.loads(text)
            return Reply(r.status, r.headers, decoded)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.call("POST", path, body, **kwargs)

    async def start(self, **fields: Any) -> str:
        """`POST /runs` with `fields` (message defaults to a haiku request); the run id."""
        reply = await self.post("/runs", {"message": "Write a haiku about teamwork.", **fields})
        assert reply.status == 202, reply.body
        return str(reply.body["run_id"])

    async def page(self, run_id: str, after: int = 0, wait: float = 0) -> dict[str, Any]:
        reply = await self.get(f"/runs/{run_id}/events?after={after}&wait={wait}")
        assert reply.status == 200, reply.body
        return dict(reply.body)

    async def events_until(
        self, run_id: str, stop: Callable[[dict[str, Any]], bool], after: int = 0, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Long-poll the events after `after` until one satisfies `stop` (or the run ends); all of them."""
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                page = await self.page(run_id, after=after + len(events), wait=5)
                events += page["events"]
                if any(stop(e) for e in page["events"]) or page["done"]:
                    return events

    async def finish(self, run_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every event of the run, once it has ended."""
        events = await self.events_until(run_id, lambda e: False, timeout=timeout)
        assert events and events[-1]["type"] in ("workflow_complete", "workflow_error"), events[-1:]
        return events

    async def waiting(self, run_id: str, kind: str, after: int = 0) -> dict[str, Any]:
        """The first `approval_request` or `input_request` (`kind`) of the run after `after`."""
        events = await self.events_until(run_id, lambda e: e["type"] == kind, after)
        found = [e for e in events if e["type"] == kind]
        assert found, f"the run ended without an {kind}: {events[-1:]}"
        return found[0]

    @contextlib.asynccontextmanager
    async def sse(self, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        extra = {"accept": "text/event-stream", **(headers or {})}
        async with self.http.get(self.base + path, headers=self.headers(extra)) as response:
            yield response


async def frames(response: aiohttp.ClientResponse) -> AsyncIterator[Frame]:
    """The SSE frames of a response, as they arrive, until it closes."""
    lines: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line:
            lines.append(line)
            continue
        frame = Frame()
        for part in lines:
            name, _, value = part.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                frame.comment = value
            elif name == "id":
                frame.id = int(value)
            elif name == "data":
                frame.data = json.loads(value)
        lines = []
        yield frame
    assert not lines, f"the stream ended inside a frame: {lines}"


async def read_sse(response: aiohttp.ClientResponse) -> list[Frame]:
    return [frame async for frame in frames(response)]


def event_frames(found: list[Frame]) -> list[Frame]:
    return [f for f in found if f.comment is None]


@dataclass
class AppServer:
    """The run API on an in-process engine with the thick harness; `url` once entered."""

    data_dir: Path
    token: str | None = TOKEN
    keepalive_s: float | None = None
    url: str = ""
    client: Worker = field(default_factory=lambda: Worker("app-tests"))
    workers: list[Worker] = field(default_factory=list)

    async def __aenter__(self) -> AppServer:
        rules = self.data_dir / "rules.yaml"
        rules.write_text(NO_RULES)
        harness = harness_workers("thick", HarnessOptions(data_dir=self.data_dir, policy_file=rules))
        app = AppWorker(token=self.token, keepalive_s=self.keepalive_s)
        config = engine_config("memory", self.data_dir, iii_http={"token": self.token, "token_env": None})
        app.reserve_routes(config)
        self.engine = Engine(config)
        await self.engine.start()
        self.workers = [*harness, patterns.create_worker(), app, self.client]
        for worker in self.workers:
            await worker.open_local(self.engine)
        self.url = f"http://127.0.0.1:{self.engine.ports['http']}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in reversed(self.workers):
            await worker.close()
        await self.engine.stop()

    async def load(self, name: str, book: Book) -> str:
        """Load a scripted book (agent → its calls' turns); the model that plays it."""
        await self.client.trigger("provider::scripted::load", {"name": name, "agents": book})
        return f"scripted:{name}"


class UpProcess:
    """`teamster up` in its own process, in `cwd`, its output collected; `url` once it is up."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.args = ["up", "--ws-port", "0", "--http-port", "0", *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.lines: list[str] = []
        self.url = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def run(self, timeout: float = 60.0) -> int:
        """Run to its exit (for a start that is refused); the exit status."""
        await self._spawn()
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            self.lines += [line.decode() async for line in self.proc.stdout]
            return await self.proc.wait()

    async def start(self, timeout: float = 60.0) -> UpProcess:
        """Start and wait for the "teamster is up" line."""
        await self._spawn()
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while not self.url:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"teamster up exited before it was up:\n{self.output}")
                self.lines.append(line)
                if found := UP_LINE.search(line):
                    self.url = found.group(1)
        self._drain = asyncio.create_task(self._collect())  # a full pipe would block the process
        return self

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and wait for the exit; the exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            if self._drain is not None:
                await self._drain
        return code

    async def _spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            TEAMSTER,
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def _collect(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.lines += [line.decode() async for line in self.proc.stdout]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AppServer]:
    """One app per test module (modules override it for other settings); its tests share the module's loop."""
    async with AppServer(tmp_path_factory.mktemp("app")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(server: AppServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, server.url, server.token)
