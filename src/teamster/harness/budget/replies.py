"""The replies of the `budget::*` functions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from teamster.harness.budget.models import Budget

CheckReason = Literal["paused", "not_enforced", "exempt", "ceiling_exceeded"]


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
