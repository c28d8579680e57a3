"""The payloads of the `budget::*` functions: lenient on unknown keys (the engine adds `_caller_worker_id`),
strict on values."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from teamster.harness.budget.periods import Period


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
