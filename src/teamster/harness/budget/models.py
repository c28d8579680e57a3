"""The stored shapes: a budget, its alerts and exemptions, and the spend log of a finished period."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from teamster.harness.budget.periods import Period


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
