"""`teamster budget …`: USD spend ceilings, through the engine's `llm-budget` worker (docs/harness/budget.md).

These commands talk to the engine over WebSocket (`--engine-url`, env `TEAMSTER_URL`), not to the run
API: budgets belong to the harness, whoever runs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from teamster.app.output import JsonFlag, UserError, execute, print_json, say, when
from teamster.app.remote import DEFAULT_ENGINE, connected
from teamster.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from teamster.harness.budget.models import Budget
    from teamster.sdk import Worker

app = typer.Typer(help="Spend ceilings (USD per day, week or month) kept by the engine.", no_args_is_help=True)

M = TypeVar("M", bound=BaseModel)
EngineUrl = Annotated[str, typer.Option(envvar="TEAMSTER_URL", help="The engine's WebSocket URL.")]
BudgetId = Annotated[str, typer.Argument(help="The budget's id (from `teamster budget list`).")]


class Period(StrEnum):
    day = "day"
    week = "week"
    month = "month"


@app.command("create")
def create(
    ceiling: Annotated[float, typer.Option(min=0.000001, help="The ceiling in USD.")],
    period: Annotated[Period, typer.Option(help="When spend resets (UTC).")] = Period.month,
    name: Annotated[str | None, typer.Option(help="A name to recognise it by.")] = None,
    engine_url: EngineUrl = DEFAULT_ENGINE,
    as_json: JsonFlag = False,
) -> None:
    """Create a budget; prints its id."""
    from teamster.harness.budget.replies import CreateReply

    payload = {"ceiling_usd": ceiling, "period": period.value, "name": name}
    created = execute(_with_engine(engine_url, lambda w: _call(w, "budget::create", payload, CreateReply)))
    if as_json:
        print_json(created.model_dump(mode="json"))
        return
    say(f"created budget {created.budget_id}: ${ceiling:g} per {period.value}")


@app.command("list")
def list_budgets(engine_url: EngineUrl = DEFAULT_ENGINE, as_json: JsonFlag = False) -> None:
    """Every budget, newest first, with its spend this period."""
    from teamster.harness.budget.replies import BudgetList

    found = execute(_with_engine(engine_url, lambda w: _call(w, "budget::list", {}, BudgetList)))
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    console = Console()
    if not found.budgets:
        console.print(Text("no budgets: create one with `teamster budget create --ceiling USD`", style="dim"))
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("budget", no_wrap=True, min_width=len(found.budgets[0].id))
    table.add_column("name")
    for header in ("period", "spent", "ceiling", "resets", "state"):
        table.add_column(header, no_wrap=True)
    for budget in found.budgets:
        table.add_row(
            budget.id,
            budget.name or "",
            budget.period,
            f"${budget.spent_usd:.4f}",
            f"${budget.ceiling_usd:g}",
            when(budget.period_resets_at, dated=True),
            _state(budget),
        )
    console.print(table)


@app.command("show")
def show(budget_id: BudgetId, engine_url: EngineUrl = DEFAULT_ENGINE, as_json: JsonFlag = False) -> None:
    """One budget with its usage per period and a forecast for this one."""
    from teamster.harness.budget.replies import BudgetReply, ForecastReply, UsageReply

    async def read(worker: Worker) -> tuple[BudgetReply, UsageReply, ForecastReply]:
        ref = {"budget_id": budget_id}
        return (
            await _call(worker, "budget::get", ref, BudgetReply),
            await _call(worker, "budget::usage", ref, UsageReply),
            await _call(worker, "budget::forecast", ref, ForecastReply),
        )

    got, usage, forecast = execute(_with_engine(engine_url, read))
    if as_json:
        print_json({**got.model_dump(mode="json"), "usage": usage.model_dump(), "forecast": forecast.model_dump()})
        return
    budget = got.budget
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    breach = forecast.days_until_breach
    for label, value in (
        ("name", budget.name or "–"),
        ("ceiling", f"${budget.ceiling_usd:g} per {budget.period}"),
        ("spent", f"${budget.spent_usd:.4f} this period (${budget.ceiling_usd - budget.spent_usd:.4f} left)"),
        ("period", f"{when(budget.period_start_at, dated=True)} → {when(budget.period_resets_at, dated=True)}"),
        ("state", _state(budget)),
        (
            "forecast",
            f"${forecast.projected_period_usd:.4f} this period, {'on track' if forecast.on_track else 'over'}",
        ),
        ("breach", "not this period" if breach is None else f"in {breach:.1f} day(s)"),
    ):
        facts.add_row(label, value)
    periods = Table(box=box.SIMPLE_HEAD, title="usage", title_justify="left")
    for header in ("from", "to", "spent", "records"):
        periods.add_column(header)
    for row in usage.by_period:
        periods.add_row(
            when(row.period_start, dated=True),
            when(row.period_end, dated=True),
            f"${row.spent_usd:.4f}",
            str(row.records_count),
        )
    Console().print(Panel(Group(facts, periods), title=f"budget {budget.id}", title_align="left"))


@app.command("delete")
def delete(budget_id: BudgetId, engine_url: EngineUrl = DEFAULT_ENGINE) -> None:
    """Delete a budget and its spend log."""
    from teamster.harness.budget.replies import DeleteReply

    async def remove(worker: Worker) -> None:
        deleted = await _call(worker, "budget::delete", {"budget_id": budget_id}, DeleteReply)
        if not deleted.deleted:
            raise UserError(f"no budget {budget_id}: `teamster budget list` shows them")

    execute(_with_engine(engine_url, remove))
    say(f"deleted budget {budget_id}")


@app.command("reset")
def reset(budget_id: BudgetId, engine_url: EngineUrl = DEFAULT_ENGINE) -> None:
    """Forgive this period's spend (it stays in the usage log)."""
    from teamster.harness.budget.replies import ResetReply

    payload = {"budget_id": budget_id}
    done = execute(_with_engine(engine_url, lambda w: _call(w, "budget::reset", payload, ResetReply)))
    say(f"reset budget {budget_id}: ${done.previous_spent_usd:.4f} forgiven")


def _state(budget: Budget) -> str:
    if budget.paused:
        return "paused"
    return "enforced" if budget.enforced else "not enforced"


async def _with_engine(url: str, work: Callable[[Worker], Awaitable[Any]]) -> Any:
    from teamster.sdk import Worker

    async with connected(Worker("teamster-budget"), url) as worker:
        return await work(worker)


async def _call(worker: Worker, function_id: str, payload: dict[str, Any], reply: type[M]) -> M:
    """One budget function; its failure as one line that says what to do."""
    from teamster.protocol import InvocationError

    try:
        return reply.model_validate(await worker.trigger(function_id, payload))
    except InvocationError as exc:
        if exc.code == ErrorCode.BUDGET_NOT_FOUND:
            raise UserError(f"no budget {payload.get('budget_id')}: `teamster budget list` shows them") from None
        if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
            raise UserError(
                "the engine has no budget worker: start it with `teamster up` (the thick profile) or pass --engine-url"
            ) from None
        raise UserError(exc.message) from None
