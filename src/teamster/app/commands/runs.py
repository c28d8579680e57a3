"""`teamster runs …`: the runs of a teamster server (`GET /runs`), one run's status, its events as they come."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from teamster.app.client import DEFAULT_API, ApiClient, Url, path
from teamster.app.live import clip
from teamster.app.output import JsonFlag, execute, print_json, say, when

if TYPE_CHECKING:
    from teamster.app.schemas import RunView

app = typer.Typer(help="Runs on a teamster server: list them, show one, follow its events.", no_args_is_help=True)

STATUS_STYLES = {"running": "cyan", "completed": "green", "failed": "red", "aborted": "yellow", "interrupted": "yellow"}
RunId = Annotated[str, typer.Argument(help="The run's id (from `teamster runs list`).")]


@app.command("list")
def list_runs(
    session: Annotated[str | None, typer.Option(help="Only this conversation's runs.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this status: running, completed, failed, aborted, interrupted.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many, newest first.")] = 50,
    url: Url = DEFAULT_API,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""

    async def main() -> None:
        from teamster.app.schemas import RunList

        async with ApiClient(url) as api:
            found = await api.get("/runs", RunList, limit=limit, session_id=session, status=status)
        if as_json:
            print_json(found.model_dump(mode="json"))
            return
        Console().print(_table(found.runs, found.total))

    execute(main())


@app.command("show")
def show_run(run_id: RunId, url: Url = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """One run's status, totals and answer, and what it waits for."""

    async def main() -> None:
        from teamster.app.schemas import RunView

        async with ApiClient(url) as api:
            view = await api.get(path("runs", run_id), RunView)
        if as_json:
            print_json(view.model_dump(mode="json"))
            return
        Console().print(_panel(view))

    execute(main())


@app.command("events")
def run_events(
    run_id: RunId,
    after: Annotated[int, typer.Option(min=0, help="Only events with seq above N.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing events until the run ends.")] = False,
    url: Url = DEFAULT_API,
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as one JSON line.")] = False,
) -> None:
    """A run's events; with --follow, live until it ends (exit 1 if it failed)."""

    async def main() -> int:
        from teamster.app.live import RunDisplay, describe
        from teamster.app.schemas import EventsPage, RunView

        async with ApiClient(url) as api:
            if not follow:
                page = await api.get(path("runs", run_id, "events"), EventsPage, after=after)
                console = Console()
                for event in page.events:
                    if as_json:
                        print_json(event)
                    else:
                        console.print(describe(event), soft_wrap=True)
                return 0
            view = await api.get(path("runs", run_id), RunView)  # an unknown run fails here, in one line
            title = f"{view.pattern} · {view.provider}/{view.model} · {view.backend} · run {run_id}"
            with RunDisplay(title, as_json=as_json) as display:
                async for event in api.events(run_id, after):
                    display.show(event)
                return display.finish()

    raise typer.Exit(execute(main()))


@app.command("abort")
def abort_run(run_id: RunId, url: Url = DEFAULT_API) -> None:
    """Stop a running run; its last event is `workflow_error: run aborted`."""

    async def main() -> None:
        from teamster.app.schemas import Aborted

        async with ApiClient(url) as api:
            done = await api.post(path("runs", run_id, "abort"), Aborted)
        say(f"run {run_id} {done.status}")

    execute(main())


def _table(runs: list[RunView], total: int) -> RenderableType:
    if not runs:
        return Text("no runs yet: start one with `teamster run` or POST /runs", style="dim")
    table = Table(box=box.SIMPLE_HEAD, caption=f"{len(runs)} of {total} run(s)", caption_justify="left")
    table.add_column("run", no_wrap=True, min_width=len(runs[0].run_id))  # whole: it is what you copy
    for header in ("pattern", "backend", "status", "created", "cost"):
        table.add_column(header, no_wrap=True, min_width=len(header))
    table.add_column("message")  # the one that wraps: a narrow terminal squeezes it first
    for run in runs:
        table.add_row(
            run.run_id,
            run.pattern,
            run.backend,
            Text(run.status, style=STATUS_STYLES.get(run.status, "")),
            when(run.created_at),
            f"${run.cost_usd:.4f}",
            clip(run.message, 60),
        )
    return table


def _panel(view: RunView) -> RenderableType:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    duration = f"{(view.finished_at - view.created_at) / 1000:.1f} s" if view.finished_at else "–"
    for name, value in (
        ("status", Text(view.status, style=STATUS_STYLES.get(view.status, ""))),
        ("pattern", view.pattern),
        ("backend", f"{view.backend} (policy {view.policy})" if view.backend == "engine" else view.backend),
        ("model", f"{view.provider}/{view.model}"),
        ("session", view.session_id),
        ("message", clip(view.message, 200)),
        ("created", when(view.created_at)),
        ("finished", f"{when(view.finished_at)} (after {duration})" if view.finished_at else "–"),
        ("usage", f"{view.input_tokens:,} in / {view.output_tokens:,} out tokens, ${view.cost_usd:.4f}"),
        ("budget", f"${view.budget:g}" if view.budget is not None else "none"),
        ("events", f"{view.event_count} (`teamster runs events {view.run_id}`)"),
        ("trace", view.trace_id or "–"),
    ):
        facts.add_row(name, value)
    parts: list[RenderableType] = [facts]
    for pending in view.pending_inputs:
        parts.append(Text(f"\n{pending.agent} asks: {pending.question} (request {pending.request_id})", style="yellow"))
    for call in view.pending_approvals:
        parts.append(
            Text(
                f"\n{call.agent} waits to call {call.function_id}: "
                f"`teamster approvals approve {view.run_id} {call.call_id}` (or deny)",
                style="yellow",
            )
        )
    if view.result:
        parts.append(Panel(Markdown(view.result), title="answer", title_align="left"))
    if view.error:
        parts.append(Text(f"\nerror: {view.error}", style="bold red"))
    return Panel(Group(*parts), title=f"run {view.run_id}", title_align="left")
