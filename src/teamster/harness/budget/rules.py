"""The pure transitions of a budget: period roll-over, exemption expiry, the check, adding spend, the forecast.

They take the time as an argument and touch no storage, so each is testable on its own.
"""

from __future__ import annotations

from typing import Any

from teamster.harness.budget.models import Budget, SpendLog
from teamster.harness.budget.money import money
from teamster.harness.budget.periods import DAY_MS, period_end, period_start
from teamster.harness.budget.replies import CheckReply, ForecastReply

FORECAST_MIN_ELAPSED_MS = 3_600_000  # a forecast extrapolates from at least one hour of elapsed period


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
