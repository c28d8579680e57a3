"""Pattern test helpers: run a pattern with the scripted provider and collect its events.

`run_events` is parametrised over the backends, so each pattern test runs on every backend. A *book*
scripts agents by name: `{"critic": [[turn, ...], ...]}` — each list is one call of that agent; turns past
the end of a list (and agents not in the book) answer like the scripted test model.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.engine.engine import Engine
from teamster.harness.contracts import Pricing, StreamRequest
from teamster.harness.providers import scripted
from teamster.harness.providers.credentials import Credentials
from teamster.harness.providers.events import EventWriter
from teamster.harness.providers.messages import text_of
from teamster.harness.providers.worker import provider_worker
from teamster.patterns import InprocAgents, Options, PatternRequest, Turn, pricing, run_pattern
from teamster.patterns import functions as patterns
from teamster.patterns.engine import EngineAgents, EngineClient
from teamster.patterns.events import Event, InputRequest
from teamster.patterns.tools import PREFIX
from teamster.sdk import Worker
from tests.conftest import engine_config

Book = dict[str, list[list[dict[str, Any]]]]
RunEvents = Callable[..., Awaitable[list[Event]]]
Answer = Callable[[InputRequest], str | None]  # a human's answer to an input request; None leaves it to time out
T = TypeVar("T")


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    """A scripted turn that calls one pattern tool."""
    return {"function_calls": [{"function_id": PREFIX + tool, "arguments": arguments}]}


def say(text: str, **extra: Any) -> dict[str, Any]:
    return {"text": text, **extra}


def fail(message: str) -> dict[str, Any]:
    return {"error": {"message": message}}


def request(
    pattern: str, query: str, book: Book | None, history: list[dict[str, str]] | None, **options: Any
) -> PatternRequest:
    return PatternRequest(
        pattern=pattern,  # type: ignore[arg-type]
        query=query,
        model="scripted:book" if book is not None else "scripted",
        history=[Turn.model_validate(t) for t in history or []],
        options=Options(**options),
    )


async def run_inproc(
    pattern: str,
    query: str = "Write a haiku about teamwork.",
    *,
    book: Book | None = None,
    history: list[dict[str, str]] | None = None,
    seen: list[StreamRequest] | None = None,
    answer: Answer | None = None,
    **options: Any,
) -> list[Event]:
    """Run in-process; every request the model received is appended to `seen` when given; `answer`
    answers each `input_request`."""
    scripts = scripted.Scripts()
    if book is not None:
        scripts.load(scripted.LoadRequest(name="book", agents=book))  # type: ignore[arg-type]
    req = request(pattern, query, book, history, **options)
    stream = scripted.streamer(scripts)

    async def recording(request: StreamRequest, out: EventWriter, credentials: Credentials) -> None:
        if seen is not None:
            seen.append(request.model_copy(deep=True))
        await stream(request, out, credentials)

    agents = InprocAgents("scripted", req.model, streams={"scripted": recording})
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if answer is not None and isinstance(event, InputRequest):
            reply = answer(event)
            # the request is open before it is announced, so an answer given at once is taken
            if reply is not None and not agents.inputs.resolve(event.request_id, reply):
                raise AssertionError(f"input request {event.request_id} was announced before it was open")

    await run_pattern(req, agents, sink)
    return events


def prompts(seen: list[StreamRequest], agent: str) -> list[str]:
    """The opening prompt of each call `agent` received, in order."""
    return [text_of(r.messages[0].content) for r in seen if r.agent_id == agent and len(r.messages) == 1]


TEST_PRICE = Pricing(input_per_1m=3.0, output_per_1m=15.0)


@pytest.fixture(autouse=True)
def _priced_scripted_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripted model is free in the catalog; price it here so cost totals are tested, not 0 == 0."""
    real = pricing.pricing
    monkeypatch.setattr(pricing, "pricing", lambda p, m: TEST_PRICE if p == "scripted" else real(p, m))


@pytest.fixture(params=["inproc", "engine"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run_events(backend: str) -> Iterator[RunEvents]:
    """`await run_events(pattern, query, book=..., history=..., **options)` on the parametrised backend."""
    yield run_engine if backend == "engine" else run_inproc


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]  # type: ignore[attr-defined]


def only(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]  # type: ignore[attr-defined]


def assert_contract(events: list[Event]) -> None:
    """Gapless seq from 1, one run id, exactly one terminal event and it is last."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.run_id for e in events}) == 1
    terminal = [e for e in events if e.type in ("workflow_complete", "workflow_error")]  # type: ignore[attr-defined]
    assert len(terminal) == 1 and terminal[0] is events[-1]


# ---- the engine backend ------------------------------------------------------------------------
# `run_engine` runs a pattern through `EngineAgents` on a real in-process engine with the thick harness and
# the patterns worker. Starting the thick workers costs about half a second (their JSON Schemas), so every
# test of the session shares one engine (`shared_engine`): it serves from its own thread and event loop,
# and each run executes on that loop, its worker attached in-process. Each run loads its book under a
# fresh name, so runs never share a script; the PatternRequest still says `scripted:book`, so events match
# the inproc backend's.

ALLOW_PATTERN_TOOLS = "version: 1\nrules:\n  - 'pattern::*'\n"  # pattern tools only record intent


def recording_scripted(seen: dict[str, list[StreamRequest]]) -> Worker:
    """The scripted provider, keeping every request it answers under its model name."""
    scripts = scripted.Scripts()
    stream = scripted.streamer(scripts)

    async def recording(request: StreamRequest, out: EventWriter, credentials: Credentials) -> None:
        seen.setdefault(request.model, []).append(request.model_copy(deep=True))
        await stream(request, out, credentials)

    async def load(req: scripted.LoadRequest) -> scripted.LoadResult:
        return scripts.load(req)

    worker = provider_worker(scripted.NAME, recording)
    worker.register_function(f"provider::{scripted.NAME}::load", load)
    return worker


class PatternEngine:
    """An engine with the thick harness (pattern tools allowed), the patterns worker and an EngineClient."""

    def __init__(self, data_dir: Path, *, rules: str = ALLOW_PATTERN_TOOLS, catalog: str | None = None) -> None:
        self.data_dir = data_dir
        self.rules = rules
        self.catalog = catalog
        self.seen: dict[str, list[StreamRequest]] = {}
        self.client = EngineClient()
        self.workers: list[Worker] = []

    async def __aenter__(self) -> PatternEngine:
        rules = self.data_dir / "rules.yaml"
        rules.write_text(self.rules)
        catalogs: tuple[Path, ...] = ()
        if self.catalog is not None:
            catalogs = (self.data_dir / "catalog.yaml",)
            catalogs[0].write_text(self.catalog)
        options = HarnessOptions(data_dir=self.data_dir, policy_file=rules, catalog_files=catalogs)
        harness = [w for w in harness_workers("thick", options) if w.name != f"provider-{scripted.NAME}"]
        self.engine = Engine(engine_config("memory", self.data_dir))
        await self.engine.start()
        self.workers = [*harness, recording_scripted(self.seen), patterns.create_worker()]
        for worker in [*self.workers, self.client.worker]:
            await worker.open_local(self.engine)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in reversed([*self.workers, self.client.worker]):
            await worker.close()
        await self.engine.stop()

    def agents(self, model: str, **kwargs: Any) -> EngineAgents:
        return EngineAgents(self.client, "scripted", model, **kwargs)

    async def load(self, book: Book | None, name: str | None = None) -> str:
        """Load `book` (none: every agent is the test model) under `name` (default: a fresh one); its model."""
        name = name or f"book-{uuid.uuid4().hex[:12]}"
        await self.client.worker.trigger("provider::scripted::load", {"name": name, "agents": book or {}})
        return f"scripted:{name}"

    async def run(
        self,
        pattern: str,
        query: str = "Write a haiku about teamwork.",
        *,
        book: Book | None = None,
        history: list[dict[str, str]] | None = None,
        seen: list[StreamRequest] | None = None,
        answer: Answer | None = None,
        name: str | None = None,
        budget_id: str | None = None,
        **options: Any,
    ) -> list[Event]:
        """`run_inproc` on this engine; `name` names the book (default: a fresh name), `budget_id` caps the run."""
        model = await self.load(book, name)
        req = request(pattern, query, book, history, **options)
        req.run_id = uuid.uuid4().hex
        agents = self.agents(model, run_id=req.run_id, budget_id=budget_id)
        events: list[Event] = []
        answering: list[asyncio.Future[Any]] = []

        def sink(event: Event) -> None:
            events.append(event)
            if answer is not None and isinstance(event, InputRequest):
                reply = answer(event)
                if reply is not None:  # the request is stored before it is announced: answer at once, as a page would
                    resolve = {"request_id": event.request_id, "answer": reply}
                    answering.append(
                        asyncio.ensure_future(self.client.worker.trigger("patterns::input::resolve", resolve))
                    )

        try:
            await run_pattern(req, agents, sink)
        finally:
            asked = self.seen.pop(model, [])
            await asyncio.gather(*answering)  # an answer refused (input_not_found) fails the test
        if seen is not None:
            seen.extend(asked)
        return events


class EngineThread:
    """A PatternEngine serving from its own thread and loop; `submit` runs a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pattern-engine", daemon=True)
        self.thread.start()
        self.data_dir = Path(tempfile.mkdtemp(prefix="teamster-patterns-"))
        self.host = PatternEngine(self.data_dir)
        asyncio.run_coroutine_threadsafe(self.host.__aenter__(), self.loop).result()

    async def submit(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.host.__aexit__(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


_shared: list[EngineThread] = []  # at most one, started by the first engine run of the session


async def shared_engine() -> EngineThread:
    if not _shared:
        _shared.append(await asyncio.to_thread(EngineThread))
    return _shared[0]


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_engine() -> Iterator[None]:
    yield
    while _shared:
        _shared.pop().stop()


async def run_engine(
    pattern: str,
    query: str = "Write a haiku about teamwork.",
    *,
    book: Book | None = None,
    history: list[dict[str, str]] | None = None,
    seen: list[StreamRequest] | None = None,
    answer: Answer | None = None,
    **options: Any,
) -> list[Event]:
    """`run_inproc` on the engine backend (the session's shared engine)."""
    engine = await shared_engine()
    return await engine.submit(
        engine.host.run(pattern, query, book=book, history=history, seen=seen, answer=answer, **options)
    )
