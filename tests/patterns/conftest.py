"""Pattern test helpers: run a pattern with the scripted provider and collect its events.

`run_events` is parametrised over the backends, so each pattern test runs on every backend. A *book*
scripts agents by name: `{"critic": [[turn, ...], ...]}` — each list is one call of that agent; turns past
the end of a list (and agents not in the book) answer like the scripted test model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from teamster.harness.contracts import StreamRequest
from teamster.harness.providers import scripted
from teamster.harness.providers.stream import Credentials, EventWriter, text_of
from teamster.patterns import InprocAgents, Options, RunRequest, Turn, run_pattern
from teamster.patterns.events import Event
from teamster.patterns.tools import PREFIX

Book = dict[str, list[list[dict[str, Any]]]]
RunEvents = Callable[..., Awaitable[list[Event]]]


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    """A scripted turn that calls one pattern tool."""
    return {"function_calls": [{"function_id": PREFIX + tool, "arguments": arguments}]}


def say(text: str, **extra: Any) -> dict[str, Any]:
    return {"text": text, **extra}


def fail(message: str) -> dict[str, Any]:
    return {"error": {"message": message}}


def request(
    pattern: str, query: str, book: Book | None, history: list[dict[str, str]] | None, **options: Any
) -> RunRequest:
    return RunRequest(
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
    **options: Any,
) -> list[Event]:
    """Run in-process; every request the model received is appended to `seen` when given."""
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
    await run_pattern(req, agents, events.append)
    return events


def prompts(seen: list[StreamRequest], agent: str) -> list[str]:
    """The opening prompt of each call `agent` received, in order."""
    return [text_of(r.messages[0].content) for r in seen if r.agent_id == agent and len(r.messages) == 1]


@pytest.fixture(params=["inproc"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run_events(backend: str) -> Iterator[RunEvents]:
    """`await run_events(pattern, query, book=..., history=..., **options)` on the parametrised backend."""
    yield run_inproc


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
