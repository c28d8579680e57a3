"""The `llm-budget` worker: the `budget::*` handlers over a `BudgetStore`, and `create_worker`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from teamster.harness.budget.models import Alert, Budget, Exemption, SpendLog
from teamster.harness.budget.money import money
from teamster.harness.budget.periods import Period, period_end, period_start
from teamster.harness.budget.replies import (
    AlertSetReply,
    BudgetList,
    BudgetReply,
    CheckReply,
    CreateReply,
    DeleteReply,
    ExemptReply,
    ForecastReply,
    PeriodSpend,
    RecordReply,
    ResetReply,
    UsageReply,
)
from teamster.harness.budget.requests import (
    AlertSetRequest,
    CheckRequest,
    CreateRequest,
    DeleteRequest,
    EnforceRequest,
    ExemptRequest,
    ForecastRequest,
    GetRequest,
    ListRequest,
    PauseRequest,
    RecordRequest,
    ResetRequest,
    UpdateRequest,
    UsageRequest,
)
from teamster.harness.budget.rules import add_spend, check, forecast, prune_exemptions, roll_over
from teamster.harness.budget.store import BudgetStore, budget_key, spend_log_key
from teamster.protocol.access import mark
from teamster.protocol.errors import ErrorCode
from teamster.protocol.handles import handles
from teamster.sdk import InvocationError, Worker

WORKER_NAME = "llm-budget"


class Budgets:
    """The `budget::*` handlers over one `BudgetStore`.

    The functions that loosen or redirect a ceiling (update, delete, enforce, exempt, pause, reset,
    alert_set) are marked `human`: a worker or a model cannot lift the limit on what it spends."""

    def __init__(self, worker: Worker, clock: Callable[[], float] = time.time) -> None:
        self.store = BudgetStore(worker, clock)

    @handles(CreateRequest.function_id, description="Create a budget; it starts enforced and not paused")
    async def create(self, req: CreateRequest) -> CreateReply:
        now = self.store.now()
        start = period_start(req.period, now)
        budget = Budget(
            id=uuid.uuid4().hex,
            workspace_id=req.workspace_id,
            agent_id=req.agent_id,
            name=req.name,
            ceiling_usd=req.ceiling_usd,
            period=req.period,
            period_start_at=start,
            period_resets_at=period_end(req.period, start),
            created_at=now,
            updated_at=now,
        )
        await self.store.save(budget)
        return CreateReply(budget_id=budget.id)

    @handles(GetRequest.function_id, description="Read a budget, as of now")
    async def get(self, req: GetRequest) -> BudgetReply:
        budget, _ = await self.store.change(req.budget_id, req.function_id, _nothing)
        return BudgetReply(budget=budget)

    @handles(ListRequest.function_id, description="List budgets, newest first, optionally filtered")
    async def list_budgets(self, req: ListRequest) -> BudgetList:
        now = self.store.now()
        budgets, _ = await self.store.everything()
        shown = [
            prune_exemptions(roll_over(b, now)[0], now)  # a view: the next call on the budget persists it
            for b in budgets
            if req.workspace_id in (None, b.workspace_id) and req.agent_id in (None, b.agent_id)
        ]
        shown.sort(key=lambda b: (b.created_at, b.id), reverse=True)
        return BudgetList(budgets=shown)

    @handles(
        UpdateRequest.function_id,
        description="Change ceiling, period, enforced, paused or name",
        metadata=mark("human"),
    )
    async def update(self, req: UpdateRequest) -> BudgetReply:
        patch = req.patch

        async def apply(budget: Budget, now: int) -> None:
            if patch.ceiling_usd is not None:
                budget.ceiling_usd = patch.ceiling_usd
            if patch.enforced is not None:
                budget.enforced = patch.enforced
            if patch.paused is not None:
                budget.paused = patch.paused
            if "name" in patch.model_fields_set:
                budget.name = patch.name
            if patch.period is not None and patch.period != budget.period:
                await _change_period(self.store, budget, patch.period, now)
            budget.updated_at = now

        budget, _ = await self.store.change(req.budget_id, req.function_id, apply)
        return BudgetReply(budget=budget)

    @handles(DeleteRequest.function_id, description="Delete a budget and its spend log", metadata=mark("human"))
    async def delete(self, req: DeleteRequest) -> DeleteReply:
        async with self.store.locked(req.budget_id):
            try:
                await self.store.load(req.budget_id, req.function_id)
            except InvocationError as exc:
                if exc.code == ErrorCode.BUDGET_NOT_FOUND:
                    return DeleteReply(deleted=False)
                raise
            for entry in await self.store.logs(req.budget_id):
                await self.store.delete(spend_log_key(entry.budget_id, entry.period_start))
            await self.store.delete(budget_key(req.budget_id))
        return DeleteReply(deleted=True)

    @handles(CheckRequest.function_id, description="May a call costing about this much go ahead?")
    async def check(self, req: CheckRequest) -> CheckReply:
        async def apply(budget: Budget, now: int) -> CheckReply:
            return check(budget, req.estimated_cost_usd, req.principal_id)

        return (await self.store.change(req.budget_id, req.function_id, apply))[1]

    @handles(RecordRequest.function_id, description="Add spend; fires the alerts it crosses")
    async def record(self, req: RecordRequest) -> RecordReply:
        async def apply(budget: Budget, now: int) -> list[tuple[str, dict[str, Any]]]:
            return add_spend(budget, req.cost_usd, now)

        budget, due = await self.store.change(req.budget_id, req.function_id, apply)
        await self.store.fire(due)
        return RecordReply(spent_usd=budget.spent_usd, remaining_usd=money(budget.ceiling_usd - budget.spent_usd))

    @handles(UsageRequest.function_id, description="Spend of the current period, or of every period")
    async def usage(self, req: UsageRequest) -> UsageReply:
        async def apply(budget: Budget, now: int) -> list[SpendLog]:
            return [] if req.window == "current" else await self.store.logs(budget.id)

        budget, logs = await self.store.change(req.budget_id, req.function_id, apply)
        live = SpendLog(
            budget_id=budget.id,
            period_start=budget.period_start_at,
            period_end=budget.period_resets_at,
            spent_usd=budget.period_spent_usd,
            records_count=budget.records_count,
        )
        # The live budget is the truth for its own period; a reset's snapshot of it is left out.
        rows = sorted([e for e in logs if e.period_start != live.period_start] + [live], key=lambda e: e.period_start)
        total = 0.0
        for row in rows:
            total = money(total + row.spent_usd)
        return UsageReply(
            spent_usd=total,
            by_period=[PeriodSpend.model_validate(row.model_dump(exclude={"budget_id"})) for row in rows],
            records_count=sum(row.records_count for row in rows),
        )

    @handles(ForecastRequest.function_id, description="Project this period's spend at the rate so far")
    async def forecast(self, req: ForecastRequest) -> ForecastReply:
        async def apply(budget: Budget, now: int) -> ForecastReply:
            return forecast(budget, now)

        return (await self.store.change(req.budget_id, req.function_id, apply))[1]

    @handles(EnforceRequest.function_id, description="Turn enforcement on or off", metadata=mark("human"))
    async def enforce(self, req: EnforceRequest) -> BudgetReply:
        async def apply(budget: Budget, now: int) -> None:
            budget.enforced, budget.updated_at = req.enforced, now

        return BudgetReply(budget=(await self.store.change(req.budget_id, req.function_id, apply))[0])

    @handles(
        ExemptRequest.function_id,
        description="Let one principal past the ceiling for some hours",
        metadata=mark("human"),
    )
    async def exempt(self, req: ExemptRequest) -> ExemptReply:
        async def apply(budget: Budget, now: int) -> int:
            expires_at = now + round(req.hours * 3_600_000)
            others = [e for e in budget.exemptions if e.principal_id != req.principal_id]
            budget.exemptions = [
                *others,
                Exemption(principal_id=req.principal_id, reason=req.reason, expires_at=expires_at),
            ]
            budget.updated_at = now
            return expires_at

        _, expires_at = await self.store.change(req.budget_id, req.function_id, apply)
        return ExemptReply(budget_id=req.budget_id, principal_id=req.principal_id, expires_at=expires_at)

    @handles(PauseRequest.function_id, description="Pause or resume enforcement", metadata=mark("human"))
    async def pause(self, req: PauseRequest) -> BudgetReply:
        async def apply(budget: Budget, now: int) -> None:
            budget.paused, budget.updated_at = req.paused, now

        return BudgetReply(budget=(await self.store.change(req.budget_id, req.function_id, apply))[0])

    @handles(
        ResetRequest.function_id,
        description="Archive this period's spend and start it again at 0",
        metadata=mark("human"),
    )
    async def reset(self, req: ResetRequest) -> ResetReply:
        async def apply(budget: Budget, now: int) -> float:
            previous = budget.spent_usd
            await self.store.save_log(
                SpendLog(
                    budget_id=budget.id,
                    period_start=budget.period_start_at,
                    period_end=now,
                    spent_usd=budget.period_spent_usd,
                    records_count=budget.records_count,
                )
            )
            budget.spent_usd = 0.0
            for alert in budget.alerts:
                alert.last_fired_period_start = None
            budget.updated_at = now
            return previous

        _, previous = await self.store.change(req.budget_id, req.function_id, apply)
        return ResetReply(budget_id=req.budget_id, previous_spent_usd=previous)

    @handles(
        AlertSetRequest.function_id,
        description="Call a function once a period at a share of the ceiling",
        metadata=mark("human"),
    )
    async def alert_set(self, req: AlertSetRequest) -> AlertSetReply:
        alert = Alert(
            alert_id=uuid.uuid4().hex,
            threshold_pct=req.threshold_pct,
            callback_function_id=req.callback_function_id,
            callback_payload=req.callback_payload,
        )

        async def apply(budget: Budget, now: int) -> None:
            budget.alerts.append(alert)
            budget.updated_at = now

        await self.store.change(req.budget_id, req.function_id, apply)
        return AlertSetReply(alert_id=alert.alert_id)


def create_worker(*, clock: Callable[[], float] = time.time) -> Worker:
    """The `llm-budget` worker; `clock` (epoch seconds) is injectable so tests can move time."""
    worker = Worker(WORKER_NAME, description="USD spend ceilings per day, week or month")
    worker.serve(Budgets(worker, clock))
    return worker


async def _nothing(budget: Budget, now: int) -> None:
    return None


async def _change_period(store: BudgetStore, budget: Budget, period: Period, now: int) -> None:
    """Switch the period in place. Spend against the ceiling carries over: a new period never forgives.

    The new window starts at the new period's start, but never before the old window's start, so a
    window only moves forward and never lands on an archived period's key. When it moves, the old
    window is archived (ending now) and the new one starts with fresh usage counters.
    """
    start = max(period_start(period, now), budget.period_start_at)
    if start != budget.period_start_at:
        if budget.records_count or budget.period_spent_usd:
            await store.save_log(
                SpendLog(
                    budget_id=budget.id,
                    period_start=budget.period_start_at,
                    period_end=now,
                    spent_usd=budget.period_spent_usd,
                    records_count=budget.records_count,
                )
            )
        for alert in budget.alerts:  # what fired for this spend stays fired
            if alert.last_fired_period_start == budget.period_start_at:
                alert.last_fired_period_start = start
        budget.period_spent_usd, budget.records_count = 0.0, 0
        budget.period_start_at = start
    budget.period = period
    budget.period_resets_at = period_end(period, start)
