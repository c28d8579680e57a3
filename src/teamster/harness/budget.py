"""`llm-budget`: USD ceilings per day, week or month, checked before and recorded after model calls (iii-harness §5).

Callers ask `budget::check` before a model call and report the cost with `budget::record` after it;
this worker only answers, it never blocks anything itself. Every budget lives in state scope
`budgets` under `budget:<id>`; finished periods are archived there as `spend_log:<id>:<period_start>`.

Every change to one budget runs under an in-process `asyncio.Lock` for that budget id and is written
with `state::set`: the engine gives each function id a single owner, so this worker instance is the
only writer of its budgets and the lock is enough to make concurrent calls race-free.

Money stays a float, rounded to 1e-9 USD after every addition or subtraction, so sums such as
0.1 + 0.2 land exactly on 0.3 and a check at the boundary does not fail spuriously.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from teamster.protocol.access import mark
from teamster.protocol.errors import ErrorCode
from teamster.sdk import InvocationError, Void, Worker
from teamster.sdk.keyed_lock import KeyedLock

log = logging.getLogger("teamster.harness.budget")

WORKER_NAME = "llm-budget"
SCOPE = "budgets"
MONEY_DIGITS = 9  # USD is rounded to 1e-9 after every addition
FORECAST_MIN_ELAPSED_MS = 3_600_000  # a forecast extrapolates from at least one hour of elapsed period
DAY_MS = 86_400_000

Period = Literal["day", "week", "month"]
CheckReason = Literal["paused", "not_enforced", "exempt", "ceiling_exceeded"]
T = TypeVar("T")


def money(usd: float) -> float:
    """USD rounded to 1e-9: applied after every sum so float noise never decides a check."""
    return round(usd, MONEY_DIGITS)


def budget_key(budget_id: str) -> str:
    return f"budget:{budget_id}"


def spend_log_key(budget_id: str, period_start: int) -> str:
    return f"spend_log:{budget_id}:{period_start}"


# ---- periods: UTC-anchored, times in epoch milliseconds -----------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def period_start(period: Period, ms: int) -> int:
    """Start of the period holding `ms`: UTC midnight, Monday 00:00 UTC, or the 1st at 00:00 UTC."""
    moment = _datetime(ms)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if period == "day":
        return _ms(day)
    if period == "week":
        return _ms(day - timedelta(days=day.weekday()))
    return _ms(datetime(moment.year, moment.month, 1, tzinfo=UTC))


def period_end(period: Period, ms: int) -> int:
    """The first period boundary after `ms` (when the period holding `ms` resets)."""
    start = period_start(period, ms)
    if period == "day":
        return start + DAY_MS
    if period == "week":
        return start + 7 * DAY_MS
    moment = _datetime(start)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return _ms(datetime(year, month, 1, tzinfo=UTC))


# ---- stored shapes --------------------------------------------------------------------------------


class Alert(BaseModel):
    alert_id: str
    threshold_pct: float  # a fraction of the ceiling: 0.8 fires at 80 %
    callback_function_id: str
    callback_payload: dict[str, Any] | None = None
    last_fired_period_start: int | None = None


class Exemption(BaseModel):
    principal_id: str
    reason: str
    expires_at: int


class Budget(BaseModel):
    """The record at `budgets/budget:<id>`. Times are epoch milliseconds."""

    id: str
    workspace_id: str | None = None
    agent_id: str | None = None
    name: str | None = None
    ceiling_usd: float
    period: Period
    spent_usd: float = 0.0  # counts against the ceiling; budget::reset sets it to 0
    period_spent_usd: float = 0.0  # everything recorded in the current period, resets included
    records_count: int = 0  # budget::record calls in the current period
    period_start_at: int
    period_resets_at: int
    enforced: bool = True
    paused: bool = False
    alerts: list[Alert] = Field(default_factory=list)
    exemptions: list[Exemption] = Field(default_factory=list)
    created_at: int
    updated_at: int


class SpendLog(BaseModel):
    """The record at `budgets/spend_log:<id>:<period_start>`: one finished (or reset) period."""

    budget_id: str
    period_start: int
    period_end: int
    spent_usd: float
    records_count: int


# ---- requests: lenient on unknown keys (the engine adds `_caller_worker_id`), strict on values -----


class _Request(BaseModel):
    """A function's payload: unknown keys ignored, values strict."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    function_id: ClassVar[str] = ""


class _BudgetRef(_Request):
    budget_id: str = Field(min_length=1)


class CreateRequest(_Request):
    function_id = "budget::create"
    ceiling_usd: float = Field(gt=0)
    period: Period
    workspace_id: str | None = None
    agent_id: str | None = None
    name: str | None = None


class GetRequest(_BudgetRef):
    function_id = "budget::get"


class ListRequest(_Request):
    function_id = "budget::list"
    workspace_id: str | None = None
    agent_id: str | None = None


class BudgetPatch(BaseModel):
    """Only these fields can change; anything else is refused. A null means "leave as is", except `name`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    ceiling_usd: float | None = Field(default=None, gt=0)
    period: Period | None = None
    enforced: bool | None = None
    paused: bool | None = None
    name: str | None = None  # an explicit null clears it


class UpdateRequest(_BudgetRef):
    function_id = "budget::update"
    patch: BudgetPatch


class DeleteRequest(_BudgetRef):
    function_id = "budget::delete"


class CheckRequest(_BudgetRef):
    function_id = "budget::check"
    estimated_cost_usd: float = Field(default=0.0, ge=0)
    principal_id: str | None = None


class RecordRequest(_BudgetRef):
    function_id = "budget::record"
    cost_usd: float = Field(ge=0)


class UsageRequest(_BudgetRef):
    function_id = "budget::usage"
    window: Literal["all", "current"] = "all"


class ForecastRequest(_BudgetRef):
    function_id = "budget::forecast"


class EnforceRequest(_BudgetRef):
    function_id = "budget::enforce"
    enforced: bool


class ExemptRequest(_BudgetRef):
    function_id = "budget::exempt"
    principal_id: str = Field(min_length=1)
    reason: str
    hours: float = Field(default=24.0, gt=0)


class PauseRequest(_BudgetRef):
    function_id = "budget::pause"
    paused: bool


class ResetRequest(_BudgetRef):
    function_id = "budget::reset"


class AlertSetRequest(_BudgetRef):
    function_id = "budget::alert_set"
    threshold_pct: float = Field(gt=0, le=1)
    callback_function_id: str = Field(min_length=1)
    callback_payload: dict[str, Any] | None = None


# ---- replies ---------------------------------------------------------------------------------------


class CreateReply(BaseModel):
    budget_id: str


class BudgetReply(BaseModel):
    budget: Budget


class BudgetList(BaseModel):
    budgets: list[Budget]


class DeleteReply(BaseModel):
    deleted: bool


class CheckReply(BaseModel):
    allowed: bool
    remaining_usd: float
    reason: CheckReason | None = None  # left out of the reply when there is none

    @model_serializer(mode="wrap")
    def _leave_out_no_reason(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("reason") is None:
            data.pop("reason", None)
        return data


class RecordReply(BaseModel):
    spent_usd: float
    remaining_usd: float


class PeriodSpend(BaseModel):
    period_start: int
    period_end: int
    spent_usd: float
    records_count: int


class UsageReply(BaseModel):
    spent_usd: float
    by_period: list[PeriodSpend]
    records_count: int


class ForecastReply(BaseModel):
    projected_period_usd: float
    on_track: bool
    days_until_breach: float | None


class ExemptReply(BaseModel):
    budget_id: str
    principal_id: str
    expires_at: int


class ResetReply(BaseModel):
    budget_id: str
    previous_spent_usd: float


class AlertSetReply(BaseModel):
    alert_id: str


# ---- pure transitions --------------------------------------------------------------------------------


def roll_over(budget: Budget, now: int) -> tuple[Budget, SpendLog | None]:
    """The budget as of `now`, and the archive entry of the period that ended, if one did with activity.

    Idle periods skipped over in one jump are not archived: nothing happened in them.
    """
    if now < budget.period_resets_at:
        return budget, None
    archive = None
    if budget.records_count or budget.period_spent_usd:
        archive = SpendLog(
            budget_id=budget.id,
            period_start=budget.period_start_at,
            period_end=budget.period_resets_at,
            spent_usd=budget.period_spent_usd,
            records_count=budget.records_count,
        )
    start = period_start(budget.period, now)
    rolled = budget.model_copy(
        update={
            "spent_usd": 0.0,
            "period_spent_usd": 0.0,
            "records_count": 0,
            "period_start_at": start,
            "period_resets_at": period_end(budget.period, start),
            "alerts": [alert.model_copy(update={"last_fired_period_start": None}) for alert in budget.alerts],
            "updated_at": now,
        }
    )
    return rolled, archive


def prune_exemptions(budget: Budget, now: int) -> Budget:
    live = [exemption for exemption in budget.exemptions if exemption.expires_at > now]
    if len(live) == len(budget.exemptions):
        return budget
    return budget.model_copy(update={"exemptions": live, "updated_at": now})


def check(budget: Budget, estimated_cost_usd: float, principal_id: str | None) -> CheckReply:
    """Paused, then not enforced, then exempt (all allowed); else allowed only with room for the estimate.

    A budget with nothing left (remaining <= 0) refuses even an estimate of 0: a budget already spent
    must stop the next call, whose cost is not known yet.
    """
    remaining = money(budget.ceiling_usd - budget.spent_usd)
    if budget.paused:
        return CheckReply(allowed=True, remaining_usd=remaining, reason="paused")
    if not budget.enforced:
        return CheckReply(allowed=True, remaining_usd=remaining, reason="not_enforced")
    if principal_id is not None and any(e.principal_id == principal_id for e in budget.exemptions):
        return CheckReply(allowed=True, remaining_usd=remaining, reason="exempt")
    if remaining > 0 and remaining >= estimated_cost_usd:
        return CheckReply(allowed=True, remaining_usd=remaining)
    return CheckReply(allowed=False, remaining_usd=remaining, reason="ceiling_exceeded")


def add_spend(budget: Budget, cost_usd: float, now: int) -> list[tuple[str, dict[str, Any]]]:
    """Add `cost_usd` in place; returns the alert callbacks due now as (function id, payload)."""
    budget.spent_usd = money(budget.spent_usd + cost_usd)
    budget.period_spent_usd = money(budget.period_spent_usd + cost_usd)
    budget.records_count += 1
    budget.updated_at = now
    due: list[tuple[str, dict[str, Any]]] = []
    for alert in budget.alerts:
        if alert.last_fired_period_start == budget.period_start_at:
            continue
        if budget.spent_usd >= money(alert.threshold_pct * budget.ceiling_usd):
            alert.last_fired_period_start = budget.period_start_at
            payload = {
                **(alert.callback_payload or {}),
                "alert_id": alert.alert_id,
                "budget_id": budget.id,
                "spent_usd": budget.spent_usd,
                "ceiling_usd": budget.ceiling_usd,
                "threshold_pct": alert.threshold_pct,
            }
            due.append((alert.callback_function_id, payload))
    return due


def forecast(budget: Budget, now: int) -> ForecastReply:
    """Straight-line projection of the current period from its spend rate so far."""
    elapsed = max(now - budget.period_start_at, FORECAST_MIN_ELAPSED_MS)
    left = max(budget.period_resets_at - now, 0)
    rate = budget.spent_usd / elapsed  # USD per ms
    projected = money(budget.spent_usd + rate * left)
    headroom = budget.ceiling_usd - budget.spent_usd
    breach: float | None
    if headroom <= 0:
        breach = 0.0
    elif rate == 0 or headroom / rate > left:
        breach = None  # never at this rate, or not before the period resets
    else:
        breach = money(headroom / rate / DAY_MS)
    return ForecastReply(
        projected_period_usd=projected, on_track=projected <= budget.ceiling_usd, days_until_breach=breach
    )


# ---- the worker --------------------------------------------------------------------------------------


class _Budgets:
    """Storage through `state::*` and the per-budget locks; the functions call into it."""

    def __init__(self, worker: Worker, clock: Callable[[], float]) -> None:
        self.worker = worker
        self.clock = clock
        self._locks = KeyedLock()

    def now(self) -> int:
        return int(self.clock() * 1000)

    def locked(self, budget_id: str) -> AbstractAsyncContextManager[None]:
        """Serialize every change to one budget."""
        return self._locks.hold(budget_id)

    async def change(
        self, budget_id: str, function_id: str, apply: Callable[[Budget, int], Awaitable[T]]
    ) -> tuple[Budget, T]:
        """Load the budget, roll its period over and prune exemptions, `apply` a change, save if it differs."""
        async with self.locked(budget_id):
            now = self.now()
            stored = await self.load(budget_id, function_id)
            current, archive = roll_over(stored, now)
            current = prune_exemptions(current, now).model_copy(deep=True)
            if archive is not None:
                await self.save_log(archive)
            result = await apply(current, now)
            if current != stored:
                await self.save(current)
            return current, result

    async def load(self, budget_id: str, function_id: str) -> Budget:
        value = await self.worker.trigger("state::get", {"scope": SCOPE, "key": budget_key(budget_id)})
        if value is None:
            raise InvocationError(ErrorCode.BUDGET_NOT_FOUND, f"budget {budget_id} not found", function_id=function_id)
        return Budget.model_validate(value)

    async def save(self, budget: Budget) -> None:
        await self._set(budget_key(budget.id), budget.model_dump(mode="json"))

    async def save_log(self, entry: SpendLog) -> None:
        await self._set(spend_log_key(entry.budget_id, entry.period_start), entry.model_dump(mode="json"))

    async def _set(self, key: str, value: Any) -> None:
        await self.worker.trigger("state::set", {"scope": SCOPE, "key": key, "value": value})

    async def delete(self, key: str) -> None:
        await self.worker.trigger("state::delete", {"scope": SCOPE, "key": key})

    async def everything(self) -> tuple[list[Budget], list[SpendLog]]:
        """Every budget and spend log entry in the scope (told apart by `id` and `budget_id`)."""
        values = await self.worker.trigger("state::list", {"scope": SCOPE})
        budgets = [Budget.model_validate(v) for v in values if isinstance(v, dict) and "id" in v]
        logs = [SpendLog.model_validate(v) for v in values if isinstance(v, dict) and "budget_id" in v]
        return budgets, logs

    async def logs(self, budget_id: str) -> list[SpendLog]:
        return [entry for entry in (await self.everything())[1] if entry.budget_id == budget_id]

    async def fire(self, due: list[tuple[str, dict[str, Any]]]) -> None:
        """Alert callbacks are fire-and-forget: a failure to send is logged, never the caller's problem."""
        for function_id, payload in due:
            try:
                await self.worker.trigger(function_id, payload, action=Void())
            except Exception as exc:
                log.warning("budget alert callback %s failed: %s", function_id, exc)


def create_worker(*, clock: Callable[[], float] = time.time) -> Worker:
    """The `llm-budget` worker; `clock` (epoch seconds) is injectable so tests can move time.

    The functions that loosen or redirect a ceiling (update, delete, enforce, exempt, pause, reset,
    alert_set) are marked `human`: a worker or a model cannot lift the limit on what it spends."""
    worker = Worker(WORKER_NAME, description="USD spend ceilings per day, week or month")
    store = _Budgets(worker, clock)

    @worker.function(CreateRequest.function_id, description="Create a budget; it starts enforced and not paused")
    async def create(req: CreateRequest) -> CreateReply:
        now = store.now()
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
        await store.save(budget)
        return CreateReply(budget_id=budget.id)

    @worker.function(GetRequest.function_id, description="Read a budget, as of now")
    async def get(req: GetRequest) -> BudgetReply:
        budget, _ = await store.change(req.budget_id, req.function_id, _nothing)
        return BudgetReply(budget=budget)

    @worker.function(ListRequest.function_id, description="List budgets, newest first, optionally filtered")
    async def list_(req: ListRequest) -> BudgetList:
        now = store.now()
        budgets, _ = await store.everything()
        shown = [
            prune_exemptions(roll_over(b, now)[0], now)  # a view: the next call on the budget persists it
            for b in budgets
            if req.workspace_id in (None, b.workspace_id) and req.agent_id in (None, b.agent_id)
        ]
        shown.sort(key=lambda b: (b.created_at, b.id), reverse=True)
        return BudgetList(budgets=shown)

    @worker.function(
        UpdateRequest.function_id,
        description="Change ceiling, period, enforced, paused or name",
        metadata=mark("human"),
    )
    async def update(req: UpdateRequest) -> BudgetReply:
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
                await _change_period(store, budget, patch.period, now)
            budget.updated_at = now

        budget, _ = await store.change(req.budget_id, req.function_id, apply)
        return BudgetReply(budget=budget)

    @worker.function(DeleteRequest.function_id, description="Delete a budget and its spend log", metadata=mark("human"))
    async def delete(req: DeleteRequest) -> DeleteReply:
        async with store.locked(req.budget_id):
            try:
                await store.load(req.budget_id, req.function_id)
            except InvocationError as exc:
                if exc.code == ErrorCode.BUDGET_NOT_FOUND:
                    return DeleteReply(deleted=False)
                raise
            for entry in await store.logs(req.budget_id):
                await store.delete(spend_log_key(entry.budget_id, entry.period_start))
            await store.delete(budget_key(req.budget_id))
        return DeleteReply(deleted=True)

    @worker.function(CheckRequest.function_id, description="May a call costing about this much go ahead?")
    async def check_(req: CheckRequest) -> CheckReply:
        async def apply(budget: Budget, now: int) -> CheckReply:
            return check(budget, req.estimated_cost_usd, req.principal_id)

        return (await store.change(req.budget_id, req.function_id, apply))[1]

    @worker.function(RecordRequest.function_id, description="Add spend; fires the alerts it crosses")
    async def record(req: RecordRequest) -> RecordReply:
        async def apply(budget: Budget, now: int) -> list[tuple[str, dict[str, Any]]]:
            return add_spend(budget, req.cost_usd, now)

        budget, due = await store.change(req.budget_id, req.function_id, apply)
        await store.fire(due)
        return RecordReply(spent_usd=budget.spent_usd, remaining_usd=money(budget.ceiling_usd - budget.spent_usd))

    @worker.function(UsageRequest.function_id, description="Spend of the current period, or of every period")
    async def usage(req: UsageRequest) -> UsageReply:
        async def apply(budget: Budget, now: int) -> list[SpendLog]:
            return [] if req.window == "current" else await store.logs(budget.id)

        budget, logs = await store.change(req.budget_id, req.function_id, apply)
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

    @worker.function(ForecastRequest.function_id, description="Project this period's spend at the rate so far")
    async def forecast_(req: ForecastRequest) -> ForecastReply:
        async def apply(budget: Budget, now: int) -> ForecastReply:
            return forecast(budget, now)

        return (await store.change(req.budget_id, req.function_id, apply))[1]

    @worker.function(EnforceRequest.function_id, description="Turn enforcement on or off", metadata=mark("human"))
    async def enforce(req: EnforceRequest) -> BudgetReply:
        async def apply(budget: Budget, now: int) -> None:
            budget.enforced, budget.updated_at = req.enforced, now

        return BudgetReply(budget=(await store.change(req.budget_id, req.function_id, apply))[0])

    @worker.function(
        ExemptRequest.function_id,
        description="Let one principal past the ceiling for some hours",
        metadata=mark("human"),
    )
    async def exempt(req: ExemptRequest) -> ExemptReply:
        async def apply(budget: Budget, now: int) -> int:
            expires_at = now + round(req.hours * 3_600_000)
            others = [e for e in budget.exemptions if e.principal_id != req.principal_id]
            budget.exemptions = [
                *others,
                Exemption(principal_id=req.principal_id, reason=req.reason, expires_at=expires_at),
            ]
            budget.updated_at = now
            return expires_at

        _, expires_at = await store.change(req.budget_id, req.function_id, apply)
        return ExemptReply(budget_id=req.budget_id, principal_id=req.principal_id, expires_at=expires_at)

    @worker.function(PauseRequest.function_id, description="Pause or resume enforcement", metadata=mark("human"))
    async def pause(req: PauseRequest) -> BudgetReply:
        async def apply(budget: Budget, now: int) -> None:
            budget.paused, budget.updated_at = req.paused, now

        return BudgetReply(budget=(await store.change(req.budget_id, req.function_id, apply))[0])

    @worker.function(
        ResetRequest.function_id,
        description="Archive this period's spend and start it again at 0",
        metadata=mark("human"),
    )
    async def reset(req: ResetRequest) -> ResetReply:
        async def apply(budget: Budget, now: int) -> float:
            previous = budget.spent_usd
            await store.save_log(
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

        _, previous = await store.change(req.budget_id, req.function_id, apply)
        return ResetReply(budget_id=req.budget_id, previous_spent_usd=previous)

    @worker.function(
        AlertSetRequest.function_id,
        description="Call a function once a period at a share of the ceiling",
        metadata=mark("human"),
    )
    async def alert_set(req: AlertSetRequest) -> AlertSetReply:
        alert = Alert(
            alert_id=uuid.uuid4().hex,
            threshold_pct=req.threshold_pct,
            callback_function_id=req.callback_function_id,
            callback_payload=req.callback_payload,
        )

        async def apply(budget: Budget, now: int) -> None:
            budget.alerts.append(alert)
            budget.updated_at = now

        await store.change(req.budget_id, req.function_id, apply)
        return AlertSetReply(alert_id=alert.alert_id)

    return worker


async def _nothing(budget: Budget, now: int) -> None:
    return None


async def _change_period(store: _Budgets, budget: Budget, period: Period, now: int) -> None:
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
