"""`teamster run PATTERN MESSAGE`: one pattern run in this process, shown live or as NDJSON.

Backends: `inproc` (agents call the provider here), or `engine` (each agent call is a harness turn):
on the engine at `--engine-url`, or on one embedded for the run. No API server is involved.
Exit status: 0 when the run ends in `workflow_complete`, 1 on `workflow_error`, 2 for a mistake in
the command. The heavy imports (patterns, harness, provider SDKs) happen inside the command, so the
rest of the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from teamster.app.output import UserError, execute, quiet_logs, stderr
from teamster.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from teamster.app.questions import Answer, Decide
    from teamster.patterns.agents import Agents
    from teamster.patterns.engine import EngineClient
    from teamster.patterns.request import Options, RunRequest, Turn

DEFAULT_DATA_DIR = Path(".teamster")


class Backend(StrEnum):
    inproc = "inproc"
    engine = "engine"


class Policy(StrEnum):
    manual = "manual"
    auto = "auto"
    full = "full"


def run_command(
    pattern: Annotated[str, typer.Argument(help="Pattern: orchestrated, debate, market, … (a wrong name lists all).")],
    message: Annotated[str, typer.Argument(help="What to ask the team.")],
    backend: Annotated[Backend, typer.Option(help="Where the agents run.")] = Backend.inproc,
    model: Annotated[str, typer.Option(help="Model id; `scripted` needs no key.")] = "scripted",
    provider: Annotated[str | None, typer.Option(help="Provider (default: the catalog's for the model).")] = None,
    engine_url: Annotated[
        str | None, typer.Option(help="With --backend engine: the engine's ws:// URL (default: embed one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as one JSON line, nothing else.")] = False,
    max_turns: Annotated[int | None, typer.Option(min=1, max=50, help="At most N model steps per agent call.")] = None,
    caps: Annotated[
        list[str] | None, typer.Option("--cap", help="A pattern cap KEY=VALUE, e.g. debate_rounds=2 (repeatable).")
    ] = None,
    history: Annotated[
        Path | None, typer.Option(help="JSON file: the conversation so far, [{role, content}, …].")
    ] = None,
    book: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON file scripting the scripted model: per agent, a list of calls, each of turns."),
    ] = None,
    policy: Annotated[
        Policy, typer.Option(help="Engine: approval mode of the agents' sessions (manual asks you).")
    ] = Policy.full,
    budget: Annotated[float | None, typer.Option(min=0.000001, help="Engine: a USD ceiling for this run.")] = None,
    data_dir: Annotated[
        Path, typer.Option(help="Embedded engine: where stored provider keys are read.")
    ] = DEFAULT_DATA_DIR,
) -> None:
    """Run a pattern here and now, showing its agents and events live; exit 1 if the run fails."""
    quiet_logs()

    async def main() -> int:
        target = Target(backend, engine_url, policy, budget, data_dir, book=_book(book) if book is not None else None)
        request = _request(pattern, message, model, provider, caps or [], max_turns, history, target)
        return await _run(request, target, as_json)

    raise typer.Exit(execute(main()))


@dataclass(frozen=True, slots=True)
class Target:
    """Where and under which gates the run goes."""

    backend: Backend
    engine_url: str | None
    policy: Policy
    budget: float | None
    data_dir: Path
    book: dict[str, Any] | None = None  # scripts the scripted model per agent

    def check(self) -> None:
        if self.backend == Backend.inproc:
            for given, flag in ((self.engine_url, "--engine-url"), (self.budget, "--budget")):
                if given is not None:
                    raise UserError(f"{flag} applies to --backend engine only")
            if self.policy != Policy.full:
                raise UserError("--policy applies to --backend engine only: inproc runs have no approvals")

    @property
    def label(self) -> str:
        return self.backend.value if self.engine_url is None else f"engine at {self.engine_url}"


@dataclass(frozen=True, slots=True)
class Team:
    """A run's agents on one backend, and how a person's replies reach them."""

    agents: Agents
    answer: Answer
    decide: Decide | None = None  # None: nothing on this backend waits for approval


# ---- checking the command -------------------------------------------------------------------------


def _request(
    pattern: str,
    message: str,
    model: str,
    provider: str | None,
    caps: list[str],
    max_turns: int | None,
    history: Path | None,
    target: Target,
) -> RunRequest:
    """The run the command asks for, checked before anything starts; a UserError names the first mistake."""
    from teamster.patterns import pricing
    from teamster.patterns.inproc import default_streams
    from teamster.patterns.request import PATTERN_NAMES, RunRequest

    if pattern not in PATTERN_NAMES:
        raise UserError(f"unknown pattern {pattern!r}: one of {', '.join(PATTERN_NAMES)}")
    provider = provider or pricing.provider_of(model)
    providers = sorted(default_streams())
    if provider not in providers:
        raise UserError(f"unknown provider {provider!r}: one of {', '.join(providers)}")
    target.check()
    if target.book is not None:
        if provider != "scripted" or model != "scripted":
            raise UserError("--book scripts the scripted model: leave --model and --provider out")
        model = "scripted:book"  # an engine loads the book under a name of its own
    try:
        return RunRequest(
            pattern=pattern,  # type: ignore[arg-type]
            query=message,
            model=model,
            provider=provider,
            history=_history(history) if history is not None else [],
            options=_options(caps, max_turns),
            run_id=uuid.uuid4().hex,
        )
    except ValidationError as exc:
        raise UserError(_first_problem(exc, {"query": "message"})) from None


def _options(caps: list[str], max_turns: int | None) -> Options:
    from teamster.patterns.request import Options

    values: dict[str, Any] = {}
    for cap in caps:
        key, sep, raw = cap.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--cap {cap!r}: write KEY=VALUE, e.g. --cap debate_rounds=2")
        values[key.strip()] = yaml.safe_load(raw)  # a number, a word, true/false
    if max_turns is not None:
        values["max_turns"] = max_turns
    try:
        return Options.model_validate(values)
    except ValidationError as exc:
        raise UserError("--cap " + _first_problem(exc)) from None


def _history(path: Path) -> list[Turn]:
    from teamster.patterns.request import Turn

    turns = _load(path, "--history")
    if not isinstance(turns, list):
        raise UserError(f"--history {path}: a JSON list of {{role, content}} turns is required")
    try:
        return TypeAdapter(list[Turn]).validate_python(turns)
    except ValidationError as exc:
        raise UserError(f"--history {path}: {_first_problem(exc)}") from None


def _book(path: Path) -> dict[str, Any]:
    from teamster.harness.providers.scripted import LoadRequest

    agents = _load(path, "--book")
    try:
        LoadRequest(name="book", agents=agents)
    except ValidationError as exc:
        raise UserError(f"--book {path}: {_first_problem(exc, {'agents': 'book'})}") from None
    return dict(agents)


def _load(path: Path, flag: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML reads JSON too
    except OSError as exc:
        raise UserError(f"{flag} {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{flag} {path}: not valid YAML or JSON ({exc})") from None


def _first_problem(exc: ValidationError, rename: dict[str, str] | None = None) -> str:
    first = exc.errors()[0]
    parts = [str(part) for part in first["loc"]]
    if parts and rename and parts[0] in rename:
        parts[0] = rename[parts[0]]
    return f"{'.'.join(parts) or 'value'}: {first['msg']}"


# ---- running --------------------------------------------------------------------------------------


async def _run(request: RunRequest, target: Target, as_json: bool) -> int:
    """Drive the run to its terminal event on `target`, showing it; the exit status."""
    from teamster.app.live import RunDisplay
    from teamster.app.questions import Questions
    from teamster.patterns.engine import EngineAgents
    from teamster.patterns.events import ApprovalResolved, Event
    from teamster.patterns.registry import drive
    from teamster.patterns.run import Run

    title = f"{request.pattern} · {request.provider}/{request.model} · {target.label}"
    async with _team(request, target, spinner=not as_json) as team:
        with RunDisplay(title, as_json=as_json, console=Console()) as display:
            questions: Questions | None = None

            def sink(event: Event) -> None:
                data = event.model_dump(mode="json")
                display.show(data)
                if questions is not None:
                    questions.on_event(data)

            run = Run(request, team.agents, sink)
            if isinstance(team.agents, EngineAgents):
                team.agents.on_approval = run.emit  # a parked call is an event of the run

            async def decide(event: dict[str, Any], allow: bool) -> str | None:
                assert team.decide is not None
                refused = await team.decide(event, allow)
                if refused is None:
                    run.emit(ApprovalResolved(call_id=event["call_id"], decision="allow" if allow else "deny"))
                return refused

            if sys.stdin.isatty():  # a person is there to answer
                questions = Questions(display, stderr(), team.answer, decide if team.decide is not None else None)
            try:
                await drive(run)
            finally:
                if questions is not None:
                    await questions.close()
            return display.finish()


@asynccontextmanager
async def _team(request: RunRequest, target: Target, *, spinner: bool) -> AsyncIterator[Team]:
    if target.backend == Backend.inproc:
        yield _inproc(request, target)
        return
    from teamster.app.embedded import embedded_engine
    from teamster.app.remote import connected
    from teamster.patterns.engine import EngineClient
    from teamster.sdk import Worker

    async with AsyncExitStack() as stack:
        if target.engine_url is not None:
            client = EngineClient(Worker("teamster-run"))
            await stack.enter_async_context(connected(client.worker, target.engine_url))
        else:
            console = stderr()
            starting = console.status("starting an embedded engine…") if spinner and console.is_terminal else None
            with starting or contextlib.nullcontext():
                client = await stack.enter_async_context(embedded_engine(target.data_dir))
        yield await _on_engine(request, target, client)


def _inproc(request: RunRequest, target: Target) -> Team:
    from teamster.harness.providers import scripted
    from teamster.patterns.inproc import InprocAgents, default_streams

    scripts = scripted.Scripts()
    if target.book is not None:
        scripts.load(scripted.LoadRequest(name="book", agents=target.book))
    agents = InprocAgents(request.provider or "scripted", request.model, streams=default_streams(scripts))

    async def answer(request_id: str, text: str) -> str | None:
        return None if agents.inputs.resolve(request_id, text) else "the question is closed (timed out)"

    return Team(agents, answer)


async def _on_engine(request: RunRequest, target: Target, client: EngineClient) -> Team:
    from teamster.patterns.engine import EngineAgents
    from teamster.protocol import InvocationError

    worker = client.worker
    model = request.model
    if target.book is not None:
        name = f"book-{uuid.uuid4().hex[:12]}"  # the engine may be shared: a name no other run uses
        await _call(worker, "provider::scripted::load", {"name": name, "agents": target.book}, "--book")
        model = f"scripted:{name}"
    agents = EngineAgents(
        client, request.provider or "scripted", model, run_id=request.run_id, approval_mode=target.policy.value
    )
    if target.budget is not None:
        payload = {"ceiling_usd": target.budget, "period": "month", "name": f"run {request.run_id}"}
        agents.budget_id = (await _call(worker, "budget::create", payload, "--budget"))["budget_id"]

    async def answer(request_id: str, text: str) -> str | None:
        try:
            await worker.trigger("patterns::input::resolve", {"request_id": request_id, "answer": text})
        except InvocationError as exc:
            return exc.message
        return None

    async def decide(event: dict[str, Any], allow: bool) -> str | None:
        payload = {
            "session_id": event["session_id"],
            "function_call_id": event["call_id"],
            "decision": "allow" if allow else "deny",
        }
        try:
            await worker.trigger("approval::resolve", payload)
        except InvocationError as exc:
            return exc.message
        return None

    return Team(agents, answer, decide)


async def _call(worker: Any, function_id: str, payload: dict[str, Any], flag: str) -> Any:
    """A setup call on the engine; its failure is the user's to fix (wrong engine, bad book)."""
    from teamster.protocol import InvocationError

    try:
        return await worker.trigger(function_id, payload)
    except InvocationError as exc:
        if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
            raise UserError(
                f"{flag}: the engine has no {function_id}: run it with `teamster up` (thick profile)"
            ) from None
        raise UserError(f"{flag}: {exc.message}") from None
